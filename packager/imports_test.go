package packager

import (
	"os/exec"
	"strings"
	"testing"
)

// The packager imports nothing of the project but avrofile: it must write to
// any Kafka cluster, not only ours. avrofile is the container file format,
// a leaf below the packager the way log is below broker, so importing it
// keeps imports pointing down the house table.
func TestImportsOnlyAvrofile(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list imports: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/ztfbroker/ztfbroker/packager").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/ztfbroker/ztfbroker/") &&
			dep != "github.com/ztfbroker/ztfbroker/avrofile" && dep != "github.com/ztfbroker/ztfbroker/packager" {
			t.Errorf("packager imports %s", dep)
		}
	}
}
