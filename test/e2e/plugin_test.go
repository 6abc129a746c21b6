//go:build e2e

package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// kubectl keyferry against the demo's cluster, as kubectl runs a plugin: the binary on
// PATH, found by kubectl itself.
func TestKubectlPluginOnTheDemo(t *testing.T) {
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "kubectl-keyferry"), "./cmd/kubectl-keyferry")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	plugin := func(args ...string) (string, int) {
		cmd := exec.Command(stack.KubectlBin, append([]string{"keyferry"}, args...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+stack.Kubeconfig, "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	out, code := plugin("status", "-n", "demo")
	if code != 0 || !strings.Contains(out, "VaultConnection demo/keyway") || !strings.Contains(out, "Secret payments-env") {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	out, code = plugin("status", "-A", "--connection", "platform")
	if code != 0 || !strings.Contains(out, "ClusterVaultConnection platform") || strings.Count(out, "SecretBinding team-") != 3 {
		t.Fatalf("status -A --connection platform: exit %d\n%s", code, out)
	}
	out, code = plugin("why", "payments", "-n", "demo")
	if code != 0 || !strings.Contains(out, "What to do (Synced)") || !strings.Contains(out, "data as keyferry wrote it") {
		t.Fatalf("why: exit %d\n%s", code, out)
	}
	all := out
	out, code = plugin("refresh", "--connection", "keyway", "-n", "demo", "--wait", "--timeout", "60s")
	if code != 0 || !strings.Contains(out, "✓ demo/payments ") || strings.Contains(out, "✗") {
		t.Fatalf("refresh --wait: exit %d\n%s", code, out)
	}
	all += out
	for _, v := range []string{"demo-password-not-a-secret", "sk_test_demo", "MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAdemo"} {
		if strings.Contains(all, v) {
			t.Errorf("the plugin printed the value %q", v)
		}
	}
}
