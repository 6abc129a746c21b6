package controllers_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/dev/devvault"
	"github.com/keyferry/keyferry/internal/dev/luascript"
	"github.com/keyferry/keyferry/internal/dev/testenv"
)

// The Argo CD health checks in config/argocd run on objects in each state, as the real
// API server serves them. With KEYFERRY_CAPTURE_ARGOCD=1 the objects are also written to
// the scripts' testdata/ (which health_test.yaml and config/argocd's test then replay).
func TestArgoCDHealthOnLiveObjects(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(testenv.RepoRoot(), "config", "argocd", "keyferry.dev")
	ns := newNamespace(t, nil)
	check := func(t *testing.T, kind, state string, u *unstructured.Unstructured, want string) {
		t.Helper()
		script, err := os.ReadFile(filepath.Join(dir, kind, "health.lua"))
		if err != nil {
			t.Fatal(err)
		}
		h, err := luascript.RunHealth(string(script), u.Object)
		if err != nil {
			t.Fatal(err)
		}
		if h.Status != want {
			t.Fatalf("%s %s: health %+v, want %s", kind, state, h, want)
		}
		if os.Getenv("KEYFERRY_CAPTURE_ARGOCD") != "" {
			capture(t, filepath.Join(dir, kind, "testdata", state+".yaml"), u, u.GetNamespace(), ns)
		}
	}

	// SecretBinding.
	_, b := setup(t, "keyway")
	check(t, "SecretBinding", "healthy", live(t, b, "SecretBinding"), "Healthy")
	dev.InjectFault("keyway", devvault.Fault{Status: 429, Header: map[string]string{"Retry-After": "30"}})
	refresh(t, b, "argocd-1")
	check(t, "SecretBinding", "progressing-rate-limited", live(t, waitReason(t, b, kf.ReasonRateLimited), "SecretBinding"), "Progressing")
	dev.InjectFault("keyway", devvault.Fault{})
	_, b2 := setup(t, "keyway")
	dev.InjectFault("keyway", devvault.Fault{Status: 401, Body: `{"title":"Unauthorized","status":401,"detail":"Invalid or expired token"}`})
	refresh(t, b2, "argocd-2")
	check(t, "SecretBinding", "degraded-unauthorized", live(t, waitReason(t, b2, kf.ReasonUnauthorized), "SecretBinding"), "Degraded")
	dev.InjectFault("keyway", devvault.Fault{})
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": kf.GroupVersion.String(), "kind": "SecretBinding",
		"metadata": map[string]any{"namespace": ns, "name": "new"},
		"spec":     map[string]any{"connectionRef": map[string]any{"name": "keyway"}, "vault": "acme/payments", "environment": "production"}}}
	if err := k8s.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	check(t, "SecretBinding", "progressing-new", u, "Progressing")

	// VaultConnection.
	vc := &kf.VaultConnection{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: b.Spec.ConnectionRef.Name}}
	check(t, "VaultConnection", "healthy", live(t, waitConnReason(t, vc, kf.ReasonAuthenticated), "VaultConnection"), "Healthy")
	missing, _ := connectionFor(ns, "missing", "keymint")
	mustCreate(t, missing)
	check(t, "VaultConnection", "degraded-credentials-not-found", live(t, waitConnReason(t, missing, kf.ReasonCredentialsNotFound), "VaultConnection"), "Degraded")

	// ClusterVaultConnection.
	cvc := &kf.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: "argocd-" + ns}, Spec: kf.ClusterVaultConnectionSpec{
		VaultConnectionSpec: kf.VaultConnectionSpec{Provider: kf.ProviderKeyway, URL: vaultURL + "/keyway", AllowInsecureHTTP: true,
			Auth: kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: "missing", Namespace: ns, Key: "token"}}}}}}
	mustCreate(t, cvc)
	t.Cleanup(func() { _ = k8s.Delete(ctx, cvc) })
	got := cvc.DeepCopy()
	waitCondition(t, got, func() []metav1.Condition { return got.Status.Conditions }, func() any { return got.Status }, kf.ReasonCredentialsNotFound)
	check(t, "ClusterVaultConnection", "degraded-credentials-not-found", live(t, got, "ClusterVaultConnection"), "Degraded")

	// ClusterSecretBinding: Healthy once its binding is Ready, Suspended when suspended.
	mustCreate(t, credentials(ns, "kw-ok", map[string]string{"token": canaryToken}))
	lender := &kf.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: "argocd-ok-" + ns}, Spec: kf.ClusterVaultConnectionSpec{
		VaultConnectionSpec: kf.VaultConnectionSpec{Provider: kf.ProviderKeyway, URL: vaultURL + "/keyway", AllowInsecureHTTP: true,
			Auth: kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: "kw-ok", Namespace: ns, Key: "token"}}}},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}}}
	csb := &kf.ClusterSecretBinding{ObjectMeta: metav1.ObjectMeta{Name: "argocd-" + ns}, Spec: kf.ClusterSecretBindingSpec{
		Namespaces: []string{ns}, BindingName: "fanned",
		Template: kf.BindingTemplate{Spec: kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: lender.Name, Kind: kf.ConnectionKindCluster},
			Vault: "acme/payments", Environment: "production"}}}}
	mustCreate(t, lender, csb)
	t.Cleanup(func() { _ = k8s.Delete(ctx, csb); _ = k8s.Delete(ctx, lender) })
	gotCSB := csb.DeepCopy()
	waitCondition(t, gotCSB, func() []metav1.Condition { return gotCSB.Status.Conditions }, func() any { return gotCSB.Status }, kf.ReasonSynced)
	check(t, "ClusterSecretBinding", "healthy-live", live(t, gotCSB, "ClusterSecretBinding"), "Healthy")
	if st := kstatusOf(t, live(t, gotCSB, "ClusterSecretBinding")); st != "Current" {
		t.Fatalf("kstatus of a Ready ClusterSecretBinding: %s", st)
	}
	setSuspend(t, csb, true)
	check(t, "ClusterSecretBinding", "suspended-live", live(t, getClusterBinding(t, csb.Name), "ClusterSecretBinding"), "Suspended")
}

// capture writes a live object as testdata, without the fields that change every run.
func capture(t *testing.T, path string, u *unstructured.Unstructured, namespaces ...string) {
	t.Helper()
	c := u.DeepCopy()
	for _, f := range []string{"managedFields", "uid", "resourceVersion", "creationTimestamp", "finalizers"} {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	b, err := yaml.Marshal(c.Object)
	if err != nil {
		t.Fatal(err)
	}
	// The test's random names read as a user's would.
	if u.GetKind() == "ClusterVaultConnection" {
		b = []byte(strings.ReplaceAll(string(b), u.GetName(), "shared"))
	}
	for _, ns := range namespaces {
		if ns != "" {
			b = []byte(strings.ReplaceAll(string(b), ns, "shop"))
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
