package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestShippedProgramsLinkNoDevelopmentCode keeps development tooling (the dev vault, the
// local stack and node, test environments: internal/dev/, hack/, test/) out of what
// ships: the manager and the kubectl plugin.
func TestShippedProgramsLinkNoDevelopmentCode(t *testing.T) {
	const module = "github.com/keyferry/keyferry/"
	for _, prog := range []string{"github.com/keyferry/keyferry/cmd/manager", "github.com/keyferry/keyferry/cmd/kubectl-keyferry"} {
		out, err := exec.Command("go", "list", "-deps", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", prog, err, out)
		}
		own := 0
		for _, pkg := range strings.Fields(string(out)) {
			rel, ok := strings.CutPrefix(pkg, module)
			if !ok {
				continue
			}
			own++
			for _, dev := range []string{"internal/dev/", "hack/", "test/"} {
				if strings.HasPrefix(rel+"/", dev) {
					t.Errorf("%s links development package %s", prog, pkg)
				}
			}
		}
		if own < 5 {
			t.Fatalf("go list -deps %s listed %d of keyferry's own packages: the check would see nothing", prog, own)
		}
	}
}
