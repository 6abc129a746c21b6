package plugin

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyferry/keyferry/controllers/storage"
	"github.com/keyferry/keyferry/internal/dev/testenv"
)

// check-upgrade names the tool still applying v1alpha1 manifests, exits 1 while a CRD
// may hold objects stored at a version other than its storage one, and 0 again once the
// manager's migration ran.
func TestCheckUpgrade(t *testing.T) {
	ctx := context.Background()
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "upgrade"}})
	old := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keyferry.dev/v1alpha1", "kind": "SecretBinding",
		"metadata": map[string]any{"namespace": "upgrade", "name": "from-git"},
		"spec":     map[string]any{"connectionRef": map[string]any{"name": "keyway"}, "vault": "acme/app", "environment": "production"},
	}}
	if err := k8s.Create(ctx, old, client.FieldOwner("gitops-sync")); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, nil, "check-upgrade", "-n", "upgrade")
	if code != 0 || !strings.Contains(out, "secretbindings.keyferry.dev") || !strings.Contains(out, `SecretBinding by "gitops-sync" at keyferry.dev/v1alpha1: 1 (upgrade/from-git)`) ||
		!strings.Contains(out, "v1alpha1 (deprecated)") {
		t.Fatalf("exit %d\n%s", code, out)
	}

	// The next release's CRD stores at v1beta1: until migrated, v1alpha1 may be stored.
	setStorage := func(v string) { testenv.SetStorageVersion(t, k8s, "secretbindings.keyferry.dev", v) }
	setStorage("v1beta1")
	t.Cleanup(func() { setStorage("v1alpha1") })
	out, code = run(t, nil, "check-upgrade", "-n", "upgrade")
	if code != 1 || !strings.Contains(out, "objects may be stored at v1alpha1") {
		t.Fatalf("before the migration: exit %d\n%s", code, out)
	}
	if _, err := storage.Migrate(ctx, k8s, k8s, "secretbindings.keyferry.dev"); err != nil {
		t.Fatal(err)
	}
	out, code = run(t, nil, "check-upgrade", "-n", "upgrade")
	if code != 0 || strings.Contains(out, "may be stored") {
		t.Fatalf("after the migration: exit %d\n%s", code, out)
	}
}
