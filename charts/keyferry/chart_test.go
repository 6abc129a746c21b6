// Package keyferry holds the Helm chart; this test lints it, renders it for several value
// sets and checks it against config/ (CRDs, RBAC, manager flags) so the two never disagree.
package keyferry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

func helmBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("HELM")
	if bin == "" {
		bin = filepath.Join("..", "..", "bin", "helm")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("helm not found at %s (make helm builds it): %v", bin, err)
	}
	return bin
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		return out.String(), errors.New(errOut.String())
	}
	return out.String(), nil
}

// render runs helm template with the given --set values and returns the objects by kind.
func render(t *testing.T, sets ...string) map[string][]*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", "kf", ".", "--namespace", "keyferry-system"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v", sets, err)
	}
	objs := map[string][]*unstructured.Unstructured{}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			objs[u.GetKind()] = append(objs[u.GetKind()], u)
		}
	}
	return objs
}

func TestLint(t *testing.T) {
	if out, err := helm(t, "lint", ".", "--strict"); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
}

func managerArgs(t *testing.T, objs map[string][]*unstructured.Unstructured) []string {
	t.Helper()
	deps := objs["Deployment"]
	if len(deps) != 1 {
		t.Fatalf("%d Deployments", len(deps))
	}
	containers, _, _ := unstructured.NestedSlice(deps[0].Object, "spec", "template", "spec", "containers")
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	return args
}

// managerFlags lists the flags cmd/manager defines.
func managerFlags(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "cmd", "manager", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	var flags []string
	for _, m := range regexp.MustCompile(`flag\.\w+Var\(&[\w.]+, "([a-z0-9-]+)"`).FindAllStringSubmatch(string(src), -1) {
		flags = append(flags, m[1])
	}
	if len(flags) < 10 {
		t.Fatalf("found only %d manager flags: did main.go change shape?", len(flags))
	}
	return flags
}

func TestEveryManagerFlagIsAValue(t *testing.T) {
	args := strings.Join(managerArgs(t, render(t)), " ")
	for _, f := range append(managerFlags(t), "zap-log-level") {
		if f == "shard-count" || f == "shard-index" {
			continue // sharding.shards sets them (TestSharding)
		}
		if !strings.Contains(args, "--"+f) {
			t.Errorf("the chart sets no --%s (add a value for it)", f)
		}
	}
	// Leader election is on in every shipped manifest.
	if !strings.Contains(args, "--leader-elect") {
		t.Error("the chart runs without --leader-elect")
	}
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "manager", "manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`- (--[a-z-]+)`).FindAllStringSubmatch(string(raw), -1) {
		if !strings.Contains(args, m[1]) {
			t.Errorf("config/manager sets %s, the chart does not", m[1])
		}
	}
}

func normalizedRules(rules []rbacv1.PolicyRule) []rbacv1.PolicyRule {
	out := make([]rbacv1.PolicyRule, 0, len(rules))
	for _, r := range rules {
		for _, s := range [][]string{r.APIGroups, r.Resources, r.ResourceNames, r.Verbs, r.NonResourceURLs} {
			sort.Strings(s)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		return strings.Join(out[i].APIGroups, ",")+strings.Join(out[i].Resources, ",") < strings.Join(out[j].APIGroups, ",")+strings.Join(out[j].Resources, ",")
	})
	return out
}

func TestRBACAndCRDsMatchConfig(t *testing.T) {
	objs := render(t)
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(raw, want); err != nil {
		t.Fatal(err)
	}
	var got *rbacv1.ClusterRole
	for _, u := range objs["ClusterRole"] {
		if strings.HasSuffix(u.GetName(), "-manager") {
			b, _ := yaml.Marshal(u.Object)
			got = &rbacv1.ClusterRole{}
			if err := yaml.Unmarshal(b, got); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got == nil {
		t.Fatal("no manager ClusterRole")
	}
	if !reflect.DeepEqual(normalizedRules(got.Rules), normalizedRules(want.Rules)) {
		t.Errorf("the chart's manager rules differ from config/rbac/role.yaml:\n got %+v\nwant %+v", got.Rules, want.Rules)
	}

	crds := objs["CustomResourceDefinition"]
	files, _ := filepath.Glob(filepath.Join("..", "..", "config", "crd", "bases", "*.yaml"))
	if len(crds) != len(files) || len(files) == 0 {
		t.Fatalf("%d CRDs in the chart, %d in config/crd/bases", len(crds), len(files))
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{}
		if err := yaml.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(crds, func(u *unstructured.Unstructured) bool {
			return u.GetName() == (&unstructured.Unstructured{Object: want}).GetName()
		})
		if i < 0 {
			t.Fatalf("%s is not in the chart", f)
		}
		got := crds[i].DeepCopy()
		if got.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("%s: not kept on uninstall by default", got.GetName())
		}
		unstructured.RemoveNestedField(got.Object, "metadata", "annotations", "helm.sh/resource-policy")
		if got.GetLabels()["app.kubernetes.io/instance"] != "kf" {
			t.Errorf("%s: without the chart's labels", got.GetName())
		}
		unstructured.RemoveNestedField(got.Object, "metadata", "labels")
		if !reflect.DeepEqual(got.Object, want) {
			t.Errorf("%s differs from %s (run make manifests)", got.GetName(), f)
		}
	}
}

func TestValueSets(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		objs := render(t)
		dep := objs["Deployment"][0]
		containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
		c := containers[0].(map[string]any)
		if c["image"] != "keyferry:0.1.0" {
			t.Errorf("image %v, want the appVersion tag", c["image"])
		}
		if v, _, _ := unstructured.NestedBool(c, "securityContext", "readOnlyRootFilesystem"); !v {
			t.Error("root filesystem is writable")
		}
		if v, _, _ := unstructured.NestedBool(dep.Object, "spec", "template", "spec", "securityContext", "runAsNonRoot"); !v {
			t.Error("pod may run as root")
		}
		for _, kind := range []string{"PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "ConfigMap"} {
			if len(objs[kind]) != 0 {
				t.Errorf("%s rendered although off by default", kind)
			}
		}
	})
	t.Run("everything on, three replicas", func(t *testing.T) {
		objs := render(t, "replicaCount=3", "podDisruptionBudget.enabled=true", "networkPolicy.enabled=true",
			"metrics.serviceMonitor.enabled=true", "metrics.dashboard.enabled=true", "image.tag=v9",
			"extraArgs[0]=--binding-workers=4", "manager.egressDenyCIDRs=")
		for _, kind := range []string{"PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "ConfigMap"} {
			if len(objs[kind]) != 1 {
				t.Errorf("%d %s, want 1", len(objs[kind]), kind)
			}
		}
		dep := objs["Deployment"][0]
		if r, _, _ := unstructured.NestedFieldNoCopy(dep.Object, "spec", "replicas"); fmt.Sprint(r) != "3" {
			t.Errorf("replicas %v", r)
		}
		args := managerArgs(t, objs)
		if !slices.Contains(args, "--leader-elect") || !slices.Contains(args, "--binding-workers=4") || !slices.Contains(args, "--egress-deny-cidrs=") {
			t.Errorf("args %v", args)
		}
	})
	t.Run("no CRDs, no RBAC, an existing ServiceAccount", func(t *testing.T) {
		objs := render(t, "crds.install=false", "rbac.create=false", "serviceAccount.create=false", "serviceAccount.name=ops")
		for _, kind := range []string{"CustomResourceDefinition", "ClusterRole", "Role", "ServiceAccount"} {
			if len(objs[kind]) != 0 {
				t.Errorf("%d %s rendered", len(objs[kind]), kind)
			}
		}
		sa, _, _ := unstructured.NestedString(objs["Deployment"][0].Object, "spec", "template", "spec", "serviceAccountName")
		if sa != "ops" {
			t.Errorf("serviceAccountName %q", sa)
		}
	})
	t.Run("the hook listener: TLS from a Secret, a Service, an Ingress for /hook/ only, a NetworkPolicy port", func(t *testing.T) {
		if objs := render(t); len(objs["Ingress"]) != 0 || len(objs["Service"]) != 1 {
			t.Errorf("off by default: %d Ingress, %d Services", len(objs["Ingress"]), len(objs["Service"]))
		}
		objs := render(t, "webhook.enabled=true", "webhook.tls.secretName=hooks-tls", "webhook.ingress.enabled=true",
			"webhook.ingress.host=hooks.example", "networkPolicy.enabled=true")
		args := managerArgs(t, objs)
		if !slices.Contains(args, "--webhook-cert-dir=/etc/keyferry/webhook-tls") || !slices.Contains(args, "--webhook-allow-http=false") {
			t.Errorf("args %v", args)
		}
		vols, _, _ := unstructured.NestedSlice(objs["Deployment"][0].Object, "spec", "template", "spec", "volumes")
		if len(vols) != 1 || fmt.Sprint(vols[0].(map[string]any)["secret"]) != "map[secretName:hooks-tls]" {
			t.Errorf("volumes %v", vols)
		}
		if len(objs["Service"]) != 2 || len(objs["Ingress"]) != 1 {
			t.Fatalf("%d Services, %d Ingresses", len(objs["Service"]), len(objs["Ingress"]))
		}
		paths, _, _ := unstructured.NestedSlice(objs["Ingress"][0].Object, "spec", "rules")
		if got := fmt.Sprint(paths); !strings.Contains(got, "path:/hook/") || !strings.Contains(got, "host:hooks.example") {
			t.Errorf("ingress rules %s", got)
		}
		if got := fmt.Sprint(objs["NetworkPolicy"][0].Object["spec"]); !strings.Contains(got, "port:9443") {
			t.Errorf("network policy %s", got)
		}
		// Enabled with neither TLS nor plain HTTP allowed is refused, not silently off.
		if _, err := helm(t, "template", "kf", ".", "--set", "webhook.enabled=true"); err == nil {
			t.Error("webhook.enabled without TLS or allowHTTP rendered")
		}
	})
	t.Run("a release pins the image by digest", func(t *testing.T) {
		d := "sha256:" + strings.Repeat("ab", 32)
		objs := render(t, "image.repository=registry.example/keyferry", "image.digest="+d, "image.tag=ignored")
		containers, _, _ := unstructured.NestedSlice(objs["Deployment"][0].Object, "spec", "template", "spec", "containers")
		if img := containers[0].(map[string]any)["image"]; img != "registry.example/keyferry@"+d {
			t.Errorf("image %v", img)
		}
		if _, err := helm(t, "template", "kf", ".", "--set", "image.digest=latest"); err == nil {
			t.Error("a digest that is not sha256:<hex> was accepted")
		}
	})
	t.Run("the schema refuses bad values", func(t *testing.T) {
		for _, bad := range []string{"replicaCount=-1", "image.pullPolicy=Sometimes", "manager.credentialsPollInterval=often", "unknownValue=1"} {
			if _, err := helm(t, "template", "kf", ".", "--set", bad); err == nil {
				t.Errorf("--set %s was accepted", bad)
			}
		}
	})
}

// TestSharding: sharding.shards runs one Deployment per shard, each with its flags, its
// own selector (a rolling update of one shard never touches another) and its PDB.
func TestSharding(t *testing.T) {
	objs := render(t, "sharding.shards=3", "podDisruptionBudget.enabled=true")
	deps, pdbs := objs["Deployment"], objs["PodDisruptionBudget"]
	if len(deps) != 3 || len(pdbs) != 3 {
		t.Fatalf("%d Deployments and %d PDBs for 3 shards", len(deps), len(pdbs))
	}
	for i, d := range deps {
		containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
		args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
		joined := strings.Join(args, " ")
		if !strings.Contains(joined, "--shard-count=3") || !strings.Contains(joined, fmt.Sprintf("--shard-index=%d", i)) {
			t.Errorf("Deployment %s: args %v", d.GetName(), args)
		}
		sel, _, _ := unstructured.NestedStringMap(d.Object, "spec", "selector", "matchLabels")
		pdbSel, _, _ := unstructured.NestedStringMap(pdbs[i].Object, "spec", "selector", "matchLabels")
		if want := fmt.Sprint(i); sel["keyferry.dev/shard"] != want || pdbSel["keyferry.dev/shard"] != want || d.GetName() != fmt.Sprintf("kf-keyferry-shard-%d", i) {
			t.Errorf("Deployment %s: selector %v, PDB selector %v", d.GetName(), sel, pdbSel)
		}
	}
	// One shard keeps the unsharded names and flags (an upgrade changes nothing).
	one := render(t)
	if d := one["Deployment"]; len(d) != 1 || d[0].GetName() != "kf-keyferry" || strings.Contains(strings.Join(managerArgs(t, one), " "), "--shard") {
		t.Error("sharding.shards=1 must render the unsharded Deployment")
	}
	if _, err := helm(t, "template", "kf", ".", "--set", "sharding.shards=0"); err == nil {
		t.Error("the schema must refuse sharding.shards=0")
	}
}
