// Package rotationtest proves key rotation on a real API server: each test runs its own
// dev vault and its own managers, which it stops and starts again (a manager "killed"
// after a step, then restarted) as the real thing would be.
package rotationtest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers"
	"github.com/keyferry/keyferry/internal/dev/devvault"
	"github.com/keyferry/keyferry/internal/dev/localstack"
	"github.com/keyferry/keyferry/internal/dev/testenv"
	"github.com/keyferry/keyferry/internal/metrics"
	"github.com/keyferry/keyferry/internal/shard"
	"github.com/keyferry/keyferry/internal/vault"
)

// canaryValue is a secret value that must never show in logs, status or events.
const canaryValue = "CANARY-rotation-value-31"

var (
	k8s     client.Client
	watcher client.WithWatch
	mgrCfg  *rest.Config
	hmacKey []byte
	logs    testenv.LogBuffer
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	env, cfg, c, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	k8s = c
	if watcher, err = client.NewWithWatch(cfg, client.Options{Scheme: testenv.Scheme()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if mgrCfg, hmacKey, err = testenv.PrepareForManager(context.Background(), k8s, cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(&logs), zap.Level(zapcore.DebugLevel)))
	code := m.Run()
	if code == 0 && strings.Contains(logs.String(), "CANARY") {
		fmt.Fprintln(os.Stderr, "the operator log contains a canary value")
		return 1
	}
	return code
}

// world is one test's dev vault and namespace.
type world struct {
	t   *testing.T
	dev *devvault.Server
	url string
	ns  string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dev := devvault.New(&devvault.Data{Vaults: map[string]map[string]map[string]string{
		"acme/app": {"production": {"API_URL": "https://api.example", "PASSWORD": canaryValue}},
	}}, devvault.Options{})
	hs := httptest.NewServer(dev)
	t.Cleanup(hs.Close)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "rot-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, dev: dev, url: hs.URL, ns: ns.Name}
	// No key of this dev vault, old or new, may reach the log.
	t.Cleanup(func() {
		out := logs.String()
		for _, vendor := range []string{"keyway", "knowledgestack"} {
			for _, k := range dev.Keys(vendor) {
				if strings.Contains(out, k.Token) {
					t.Errorf("the operator log holds the key %s (%s)", k.ID, k.Name)
				}
			}
		}
	})
	return w
}

// managerOptions tune one manager.
type managerOptions struct {
	crash func(conn kf.Connection, step string) error
	clock clock.PassiveClock
}

// startManager runs a manager until the returned stop is called (or the test ends).
func startManager(t *testing.T, o managerOptions) (stop func()) {
	t.Helper()
	deny, err := vault.ParseCIDRs(localstack.LocalEgressDeny)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(mgrCfg, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(hmacKey, shard.Shard{}),
		Client:                 controllers.ClientOptions(),
		// Managers come and go in one process: their controllers share names.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controllers.SetupWithManager(mgr, controllers.Options{
		Registry: vault.NewRegistry(metrics.ClientHooks, deny), HMACKey: hmacKey, Clock: o.clock,
		CredentialsPollInterval: time.Second, ConnectionWorkers: 2, BindingWorkers: 4,
		RotationCrash: o.crash,
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// keywayKey registers a hand-made Keyway key with scopes and returns it.
func (w *world) keywayKey(name string, scopes ...string) devvault.Key {
	if len(scopes) == 0 {
		scopes = []string{"read:secrets", "admin:api-keys"}
	}
	k := devvault.Key{Vendor: "keyway", ID: fmt.Sprintf("0b1c2d3e-0000-4000-8000-%012d", rand.Int64N(1e12)),
		Name: name, Token: "kw_live_" + randomText(40), Environment: "live", Scopes: scopes,
		CreatedAt: time.Now().Add(-24 * time.Hour)}
	w.dev.AddKey(k)
	return k
}

func randomText(n int) string {
	const letters = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return string(b)
}

// keywaySetup makes a Keyway key (named name, with scopes), its credential Secret (opted
// in to rotation or not) and a rotating connection "keyway" reading it; it creates
// nothing in the API server.
func (w *world) keywaySetup(name string, rotate bool, scopes ...string) (devvault.Key, *corev1.Secret, *kf.VaultConnection) {
	k := w.keywayKey(name, scopes...)
	cred := w.credential("keyway-cred", k.Token, rotate)
	return k, cred, w.connection("keyway", "keyway", cred.Name)
}

// credential returns a Secret holding tok, opted in as credentials and to rotation.
func (w *world) credential(name, tok string, rotate bool) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name,
		Labels: map[string]string{kf.LabelCredentials: "true"}}, Data: map[string][]byte{"token": []byte(tok)}}
	if rotate {
		s.Labels[kf.LabelRotate] = "true"
	}
	return s
}

// connection returns a VaultConnection of provider reading the Secret cred, rotating.
func (w *world) connection(name, provider, cred string) *kf.VaultConnection {
	return &kf.VaultConnection{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name}, Spec: kf.VaultConnectionSpec{
		Provider: kf.Provider(provider), URL: w.url + "/" + provider, AllowInsecureHTTP: true,
		RequestTimeout: &metav1.Duration{Duration: time.Second},
		Auth: kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: cred, Key: "token"},
			Rotation: &kf.KeyRotation{}}},
	}}
}

// binding returns a binding of acme/app production through conn.
func (w *world) binding(name, conn, provider string) *kf.SecretBinding {
	b := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name}, Spec: kf.SecretBindingSpec{
		ConnectionRef: kf.ConnectionReference{Name: conn}, Vault: "acme/app", Environment: "production"}}
	if provider == "knowledgestack" {
		b.Spec.Request = &kf.RequestSpec{Path: "/v1/secrets?tenant={vault}&env={environment}", Format: kf.RequestFormatDotenv, DataPath: "content"}
	}
	return b
}

func (w *world) create(objs ...client.Object) {
	w.t.Helper()
	for _, o := range objs {
		if err := k8s.Create(context.Background(), o); err != nil {
			w.t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testenv.Eventually(t, timeout, 50*time.Millisecond, what, cond)
}

func get[T client.Object](t *testing.T, obj T) T {
	t.Helper()
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

func ready(conds []metav1.Condition) *metav1.Condition {
	return meta.FindStatusCondition(conds, kf.ConditionReady)
}

func waitSynced(t *testing.T, b *kf.SecretBinding) {
	t.Helper()
	eventually(t, 20*time.Second, "binding "+b.Name+" Synced", func() (bool, string) {
		c := ready(get(t, b).Status.Conditions)
		return c != nil && c.Reason == kf.ReasonSynced, fmt.Sprint(c)
	})
}

// rotateNow asks conn for a rotation now, with value v.
func rotateNow(t *testing.T, conn client.Object, v string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, kf.AnnotationRotateNow, v)
	if err := k8s.Patch(context.Background(), conn, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		t.Fatal(err)
	}
}

// waitRotationIdle waits until conn handled rotate-now value v and is idle again.
func waitRotationIdle(t *testing.T, conn *kf.VaultConnection, v string) *kf.VaultConnection {
	t.Helper()
	eventually(t, 30*time.Second, "rotation "+v+" of "+conn.Name+" done", func() (bool, string) {
		r := get(t, conn).Status.Rotation
		return r != nil && r.LastHandledRotateNow == v && r.Phase == kf.RotationIdle, fmt.Sprintf("%+v", r)
	})
	return conn
}

// watchReady records every moment one of bindings was not Ready until the returned func
// is called, which reports them.
func watchReady(t *testing.T, bindings ...*kf.SecretBinding) func() []string {
	t.Helper()
	var mu sync.Mutex
	var bad []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
			for _, b := range bindings {
				got := &kf.SecretBinding{}
				if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(b), got); err != nil {
					continue
				}
				if c := ready(got.Status.Conditions); c == nil || c.Status != metav1.ConditionTrue {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: %v", b.Name, c))
					mu.Unlock()
				}
			}
		}
	}()
	return func() []string {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return bad
	}
}

// pullDuring keeps bindings pulling (a new refresh annotation every 100ms) until the
// returned func is called: pulls happen through every step of a rotation.
func pullDuring(t *testing.T, bindings ...*kf.SecretBinding) func() {
	t.Helper()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			for _, b := range bindings {
				patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"p%d"}}}`, kf.AnnotationRefresh, i)
				_ = k8s.Patch(context.Background(), b.DeepCopy(), client.RawPatch("application/merge-patch+json", []byte(patch)))
			}
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}

// countWrites counts the writes of one Secret until the returned func is called.
func countWrites(t *testing.T, s *corev1.Secret) func() int {
	t.Helper()
	w, err := watcher.Watch(context.Background(), &corev1.SecretList{}, client.InNamespace(s.Namespace),
		client.MatchingFields{"metadata.name": s.Name})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if ev.Type == watch.Modified {
				n++
			}
		}
	}()
	return func() int {
		time.Sleep(300 * time.Millisecond) // the last event on its way
		w.Stop()
		<-done
		return n
	}
}

// answers says what the dev vault answers to tok on Keyway's pull endpoint.
func (w *world) answers(tok string) int {
	req, _ := http.NewRequest(http.MethodGet, w.url+"/keyway/v1/secrets/pull?repo=acme/app&environment=production", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// noCanary fails if a connection's status or the namespace's events show a key of the
// dev vault or the canary value.
func (w *world) noCanary(conn client.Object) {
	w.t.Helper()
	raw := fmt.Sprintf("%+v", get(w.t, conn))
	events := &corev1.EventList{}
	if err := k8s.List(context.Background(), events, client.InNamespace(w.ns)); err != nil {
		w.t.Fatal(err)
	}
	for _, e := range events.Items {
		raw += e.Message
	}
	for _, vendor := range []string{"keyway", "knowledgestack"} {
		for _, k := range w.dev.Keys(vendor) {
			if strings.Contains(raw, k.Token) {
				w.t.Errorf("status or events hold the key %s", k.ID)
			}
		}
	}
	if strings.Contains(raw, canaryValue) {
		w.t.Error("status or events hold the canary value")
	}
}
