// Package testenv starts a real kube-apiserver and etcd (controller-runtime envtest) with
// keyferry's CRDs installed, for integration tests.
package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	keyferryv1beta1 "github.com/keyferry/keyferry/api/v1beta1"
)

// RepoRoot is the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Scheme knows the built-in kinds, keyferry's and CRDs (tests read and move keyferry's).
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(keyferryv1beta1.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	return s
}

// SetStorageVersion makes v the storage version of the CRD named name, as the CRD of a
// release that moves it does (the API server adds v to status.storedVersions).
func SetStorageVersion(t testing.TB, c client.Client, name, v string) {
	t.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.Get(context.Background(), types.NamespacedName{Name: name}, crd); err != nil {
		t.Fatal(err)
	}
	for i := range crd.Spec.Versions {
		crd.Spec.Versions[i].Storage = crd.Spec.Versions[i].Name == v
	}
	if err := c.Update(context.Background(), crd); err != nil {
		t.Fatal(err)
	}
}

// New returns an envtest environment that installs keyferry's generated CRDs. It needs
// KUBEBUILDER_ASSETS pointing at kube-apiserver, etcd and kubectl: `make test` builds them
// (hack/build-control-plane.sh) and sets it.
func New() (*envtest.Environment, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, " +
			"which builds the local control plane once and points KUBEBUILDER_ASSETS at it")
	}
	return &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		Scheme:                Scheme(),
	}, nil
}

// Eventually polls cond every interval until it holds or timeout passes, then fails the
// test with what it waited for and the last state cond reported.
func Eventually(t testing.TB, timeout, interval time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(interval)
	}
	t.Fatalf("timed out waiting for %s; last state: %s", what, last)
}

// Start starts a new environment and returns it with its config and a client that knows
// keyferry's kinds. The caller stops the environment.
func Start() (*envtest.Environment, *rest.Config, client.Client, error) {
	env, err := New()
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("starting the local control plane: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		_ = env.Stop()
		return nil, nil, nil, err
	}
	return env, cfg, c, nil
}
