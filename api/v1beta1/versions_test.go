package v1beta1_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/dev/testenv"
)

type warnings struct {
	mu   sync.Mutex
	seen []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

// The manifests users keep at keyferry.dev/v1alpha1 (every earlier release's) still apply:
// each sample written at v1alpha1 is accepted, warned about as deprecated, and reads back
// at v1beta1 with the very same fields.
func TestV1alpha1ManifestsStillApply(t *testing.T) {
	ns := newNamespace(t)
	w := &warnings{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = w
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	objs, files := samples(t)
	for i, u := range objs {
		if u.GetAPIVersion() != kf.GroupVersion.String() {
			continue
		}
		u.SetAPIVersion("keyferry.dev/v1alpha1")
		u.SetName("old-" + u.GetName())
		if !strings.HasPrefix(u.GetKind(), "Cluster") {
			u.SetNamespace(ns)
		}
		if err := c.Create(context.Background(), u); err != nil {
			t.Errorf("%s: v1alpha1 %s refused: %v", files[i], u.GetKind(), err)
			continue
		}
		n++
		// u is what the API server answered at v1alpha1; read at v1beta1 it must be
		// the same object, field for field, apart from its apiVersion.
		beta := &unstructured.Unstructured{}
		beta.SetGroupVersionKind(kf.GroupVersion.WithKind(u.GetKind()))
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(u), beta); err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(beta.Object["spec"], u.Object["spec"]) {
			t.Errorf("%s %s: spec at v1beta1 %v, at v1alpha1 %v", u.GetKind(), u.GetName(), beta.Object["spec"], u.Object["spec"])
		}
		// And the Go types of v1beta1 read it.
		typed, err := c.Scheme().New(kf.GroupVersion.WithKind(u.GetKind()))
		if err != nil {
			t.Fatal(err)
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(beta.Object, typed); err != nil {
			t.Errorf("%s %s: %v", u.GetKind(), u.GetName(), err)
		}
		_ = c.Delete(context.Background(), beta)
	}
	if n == 0 {
		t.Fatal("no sample was sent")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	deprecated := 0
	for _, s := range w.seen {
		if strings.Contains(s, "keyferry.dev/v1alpha1") && strings.Contains(s, "deprecated") && strings.Contains(s, "v1beta1") {
			deprecated++
		}
	}
	if deprecated < n {
		t.Errorf("%d deprecation warnings for %d v1alpha1 writes: %q", deprecated, n, w.seen)
	}
}
