package storage_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/storage"
	"github.com/keyferry/keyferry/internal/dev/testenv"
)

var (
	env *envtest.Environment
	k8s client.Client
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	var err error
	env, _, k8s, err = testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	return m.Run()
}

const crdName = "secretbindings.keyferry.dev"

// storedAPIVersion reads the object straight from etcd (its JSON gateway on the loopback
// address envtest gave it): the apiVersion the API server stored it at.
func storedAPIVersion(t *testing.T, ns, name string) string {
	t.Helper()
	key := fmt.Sprintf("/registry/keyferry.dev/secretbindings/%s/%s", ns, name)
	body, _ := json.Marshal(map[string]string{"key": base64.StdEncoding.EncodeToString([]byte(key))})
	u := env.ControlPlane.Etcd.URL.JoinPath("/v3/kv/range")
	resp, err := http.Post(u.String(), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out struct {
		Kvs []struct {
			Value []byte `json:"value"`
		} `json:"kvs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Kvs) != 1 {
		t.Fatalf("etcd has no %s (%v)", key, err)
	}
	var obj struct {
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(out.Kvs[0].Value, &obj); err != nil {
		t.Fatalf("%s is not JSON in etcd: %v", key, err)
	}
	return obj.APIVersion
}

func crd(t *testing.T) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	c := &apiextensionsv1.CustomResourceDefinition{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Name: crdName}, c); err != nil {
		t.Fatal(err)
	}
	return c
}

func setStorage(t *testing.T, v string) { testenv.SetStorageVersion(t, k8s, crdName, v) }

// reset makes v1alpha1 the storage and only stored version again, whatever the test
// before moved.
func reset(t *testing.T) {
	t.Helper()
	setStorage(t, "v1alpha1")
	if _, err := storage.Migrate(context.Background(), k8s, k8s, crdName); err != nil {
		t.Fatal(err)
	}
}

func binding(ns, name string) *kf.SecretBinding {
	return &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: "c"}, Vault: "acme/app", Environment: "production"}}
}

// Objects stored at the old version are rewritten at the new storage version (read in
// etcd itself) with nothing a reader sees changed, storedVersions ends with the storage
// version alone, and a second run has nothing to do.
func TestMigrationRewritesEveryObjectAtTheStorageVersion(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "migrate-"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	reset(t)
	// A release whose storage version has not moved has nothing to do.
	if res, err := storage.Migrate(ctx, k8s, k8s, crdName); err != nil || !res.NothingToDo() || res.Rewritten != 0 {
		t.Fatalf("before any move: %+v, %v", res, err)
	}
	var old []*kf.SecretBinding
	for i := range 3 {
		b := binding(ns.Name, fmt.Sprintf("old-%d", i))
		if err := k8s.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		old = append(old, b)
		if v := storedAPIVersion(t, ns.Name, b.Name); v != "keyferry.dev/v1alpha1" {
			t.Fatalf("%s stored at %s", b.Name, v)
		}
	}
	setStorage(t, "v1beta1")
	fresh := binding(ns.Name, "new")
	if err := k8s.Create(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if got := crd(t).Status.StoredVersions; !slices.Equal(got, []string{"v1alpha1", "v1beta1"}) {
		t.Fatalf("storedVersions %v after the move", got)
	}
	res, err := storage.Migrate(ctx, k8s, k8s, crdName)
	if err != nil {
		t.Fatal(err)
	}
	all := &kf.SecretBindingList{}
	if err := k8s.List(ctx, all); err != nil {
		t.Fatal(err)
	}
	if res.Rewritten != len(all.Items) || res.Storage != "v1beta1" {
		t.Errorf("migration %+v, want all %d SecretBindings rewritten at v1beta1", res, len(all.Items))
	}
	if got := crd(t).Status.StoredVersions; !slices.Equal(got, []string{"v1beta1"}) {
		t.Errorf("storedVersions %v, want [v1beta1]", got)
	}
	for _, b := range append(old, fresh) {
		if v := storedAPIVersion(t, ns.Name, b.Name); v != "keyferry.dev/v1beta1" {
			t.Errorf("%s still stored at %s", b.Name, v)
		}
		now := &kf.SecretBinding{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(b), now); err != nil {
			t.Fatal(err)
		}
		if now.Generation != b.Generation || now.ResourceVersion == b.ResourceVersion && b != fresh {
			t.Errorf("%s: generation %d→%d, resourceVersion %s→%s", b.Name, b.Generation, now.Generation, b.ResourceVersion, now.ResourceVersion)
		}
		for _, mf := range now.ManagedFields {
			if mf.Manager == storage.FieldOwner {
				t.Errorf("%s: the empty rewrite claims fields %s", b.Name, mf.FieldsV1)
			}
		}
	}
	if res, err := storage.Migrate(ctx, k8s, k8s, crdName); err != nil || !res.NothingToDo() || res.Rewritten != 0 {
		t.Errorf("a second run: %+v, %v", res, err)
	}
}

// changingClient changes the CRD once, after the first object is rewritten: as an upgrade
// that moves the storage version again would.
type changingClient struct {
	client.Client
	t    *testing.T
	done bool
}

func (c *changingClient) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
	err := c.Client.Patch(ctx, obj, p, opts...)
	if _, isCRD := obj.(*apiextensionsv1.CustomResourceDefinition); !isCRD && !c.done {
		c.done = true
		cur := crd(c.t)
		metav1.SetMetaDataAnnotation(&cur.ObjectMeta, "test/changed", time.Now().Format(time.RFC3339Nano))
		if uerr := c.Update(ctx, cur); uerr != nil {
			c.t.Fatal(uerr)
		}
	}
	return err
}

// A CRD that changed while its objects were rewritten keeps its storedVersions: the
// migration says so and runs again.
func TestMigrationKeepsStoredVersionsWhenTheCRDChanged(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "migrate-"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, binding(ns.Name, "a")); err != nil {
		t.Fatal(err)
	}
	reset(t)
	setStorage(t, "v1beta1")
	c := &changingClient{Client: k8s, t: t}
	_, err := storage.Migrate(ctx, k8s, c, crdName)
	if !errors.Is(err, storage.ErrCRDChanged) {
		t.Fatalf("err %v, want ErrCRDChanged", err)
	}
	if got := crd(t).Status.StoredVersions; !slices.Contains(got, "v1alpha1") {
		t.Errorf("storedVersions %v lost v1alpha1 though the pass may have missed objects", got)
	}
	if res, err := storage.Migrate(ctx, k8s, k8s, crdName); err != nil || !slices.Equal(crd(t).Status.StoredVersions, []string{"v1beta1"}) {
		t.Errorf("the run after: %+v, %v, storedVersions %v", res, err, crd(t).Status.StoredVersions)
	}
}

// The manager's runnable finds a CRD moved after it started (CRDs upgraded apart from
// the chart) at its next check and migrates it.
func TestRunnableMigratesACRDMovedLater(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reset(t)
	checks := make(chan storage.Result, 64)
	r := &storage.Runnable{Reader: k8s, Client: k8s, CRDs: []string{crdName}, Every: 100 * time.Millisecond,
		Done: func(res storage.Result) {
			select {
			case checks <- res:
			default:
			}
		}}
	go func() { _ = r.Start(ctx) }()
	if res := <-checks; !res.NothingToDo() {
		t.Fatalf("first check %+v", res)
	}
	setStorage(t, "v1beta1")
	deadline := time.After(20 * time.Second)
	for {
		select {
		case res := <-checks:
			if slices.Equal(crd(t).Status.StoredVersions, []string{"v1beta1"}) && res.Storage == "v1beta1" {
				return
			}
		case <-deadline:
			t.Fatalf("storedVersions still %v", crd(t).Status.StoredVersions)
		}
	}
}
