package avrofile

import (
	"os/exec"
	"strings"
	"testing"
)

// avrofile is a leaf: packager, archive and alertcat import it, and each of
// them imports nothing else of the project.
func TestImportsNothingInternal(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list imports: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/ztfbroker/ztfbroker/avrofile").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/ztfbroker/ztfbroker/") && dep != "github.com/ztfbroker/ztfbroker/avrofile" {
			t.Errorf("avrofile imports %s", dep)
		}
	}
}
