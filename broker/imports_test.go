package broker

import (
	"os/exec"
	"strings"
	"testing"
)

// Imports point down the house table: broker may use log and nothing else
// of the project (protocol in particular declares the Backend it implements).
func TestImportsOnlyLog(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list imports: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/ztfbroker/ztfbroker/broker").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/ztfbroker/ztfbroker/") &&
			dep != "github.com/ztfbroker/ztfbroker/log" && dep != "github.com/ztfbroker/ztfbroker/broker" {
			t.Errorf("broker imports %s", dep)
		}
	}
}
