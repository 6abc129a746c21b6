//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The chart installs into a fresh control plane of its own (its CRDs included), and
// uninstalls leaving nothing behind: by default only the kept CRDs, with crds.keep=false
// not even those.
func TestHelmInstallAndUninstall(t *testing.T) {
	helmBin := os.Getenv("HELM")
	if helmBin == "" {
		helmBin = filepath.Join(repoRoot(), "bin", "helm")
	}
	env := &envtest.Environment{BinaryAssetsDirectory: filepath.Dir(stack.KubectlBin)}
	if _, err := env.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	user, err := env.AddUser(envtest.User{Name: "helm-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(bin string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(context.Background(), bin, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, errOut.String())
		}
		return out.String()
	}
	chart := filepath.Join(repoRoot(), "charts", "keyferry")
	kinds := "crd,deployment,serviceaccount,service,clusterrole,clusterrolebinding,role,rolebinding"
	leftovers := func() []string {
		out := run(stack.KubectlBin, "get", kinds, "-A", "-l", "app.kubernetes.io/instance=kf", "-o", "name")
		return strings.Fields(out)
	}

	run(helmBin, "install", "kf", chart, "--namespace", "keyferry-system", "--create-namespace", "--wait=false")
	installed := leftovers()
	for _, want := range []string{"customresourcedefinition.apiextensions.k8s.io/secretbindings.keyferry.dev",
		"deployment.apps/kf-keyferry", "serviceaccount/kf-keyferry", "clusterrole.rbac.authorization.k8s.io/kf-keyferry-manager",
		"role.rbac.authorization.k8s.io/kf-keyferry-leader-election", "service/kf-keyferry-metrics"} {
		if !slices.Contains(installed, want) {
			t.Errorf("helm install did not create %s (got %v)", want, installed)
		}
	}
	run(stack.KubectlBin, "wait", "--for=condition=Established", "crd/secretbindings.keyferry.dev", "--timeout=30s")
	// The chart's CRDs serve the API: a binding can be created.
	run(stack.KubectlBin, "create", "namespace", "shop")
	binding := `{"apiVersion":"keyferry.dev/v1beta1","kind":"SecretBinding","metadata":{"name":"b","namespace":"shop"},"spec":{"connectionRef":{"name":"c"},"vault":"v","environment":"e"}}`
	cmd := exec.Command(stack.KubectlBin, "create", "-f", "-")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdin = strings.NewReader(binding)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("creating a binding on the chart's CRDs: %v\n%s", err, out)
	}
	run(stack.KubectlBin, "delete", "sb", "b", "-n", "shop")

	run(helmBin, "uninstall", "kf", "--namespace", "keyferry-system", "--wait")
	left := leftovers()
	for _, o := range left {
		if !strings.HasPrefix(o, "customresourcedefinition") {
			t.Errorf("helm uninstall left %s behind", o)
		}
	}
	crds, err := filepath.Glob(filepath.Join(repoRoot(), "config", "crd", "bases", "*.yaml"))
	if err != nil || len(crds) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v)", err)
	}
	if len(left) != len(crds) {
		t.Errorf("by default the %d CRDs stay (crds.keep); left: %v", len(crds), left)
	}

	// Reinstalled (adopting the kept CRDs) without keep, uninstall removes everything.
	run(helmBin, "install", "kf", chart, "--namespace", "keyferry-system", "--set", "crds.keep=false", "--wait=false")
	run(helmBin, "uninstall", "kf", "--namespace", "keyferry-system", "--wait")
	if left := leftovers(); len(left) != 0 {
		t.Errorf("with crds.keep=false helm uninstall left %v", left)
	}
}

// Every metric the chart's Grafana dashboard queries exists on the manager's endpoint.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(), "charts", "keyferry", "dashboards", "keyferry.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	resp := metricsText(t, stack.MetricsURL)
	names := regexp.MustCompile(`\b([a-z_]+_(total|seconds|status|bindings)|keyferry_bindings)\b`)
	seen := 0
	for _, p := range d.Panels {
		for _, target := range p.Targets {
			for _, m := range names.FindAllStringSubmatch(target.Expr, -1) {
				seen++
				if !regexp.MustCompile(`(?m)^` + m[1] + `[{ ]`).MatchString(resp) {
					t.Errorf("panel %q queries %s, which the manager does not serve", p.Title, m[1])
				}
			}
		}
	}
	if seen < 6 {
		t.Fatalf("found only %d metric names in the dashboard", seen)
	}
}
