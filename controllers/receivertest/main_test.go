// Package receivertest proves RefreshReceivers on a real API server: one manager with its
// hook listener on loopback over TLS, the dev vault counting pulls, and callers that sign
// (or fail to) as CI systems and GitHub do.
package receivertest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers"
	"github.com/keyferry/keyferry/internal/dev/devcert"
	"github.com/keyferry/keyferry/internal/dev/devvault"
	"github.com/keyferry/keyferry/internal/dev/localstack"
	"github.com/keyferry/keyferry/internal/dev/testenv"
	"github.com/keyferry/keyferry/internal/metrics"
	"github.com/keyferry/keyferry/internal/shard"
	"github.com/keyferry/keyferry/internal/vault"
	"github.com/keyferry/keyferry/internal/webhook"
)

const (
	canaryToken  = "CANARY-receiver-token-7d1f"
	canarySecret = "CANARY-hook-secret-0123456789abcdef"
	canaryValue  = "CANARY-receiver-value-55"
)

var (
	k8s      client.WithWatch
	dev      *devvault.Server
	vaultURL string
	hookURL  string
	hooks    *http.Client
	logs     testenv.LogBuffer
	rounds   roundLog
)

// roundLog records the rounds the manager ran, by receiver.
type roundLog struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *roundLog) add(key string, _ int, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[key]++
}

func (r *roundLog) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[key]
}

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	env, cfg, _, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: testenv.Scheme()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mgrCfg, key, err := testenv.PrepareForManager(ctx, k8s, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dev = devvault.New(&devvault.Data{
		Vaults: map[string]map[string]map[string]string{
			"acme/app":   {"production": {"API_URL": "https://api.example", "PASSWORD": canaryValue}},
			"acme/other": {"production": {"X": "1"}},
		},
		Tokens: []string{canaryToken},
	}, devvault.Options{})
	hs := httptest.NewServer(dev)
	defer hs.Close()
	vaultURL = hs.URL

	certDir, pool, err := serving()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(certDir) }()
	hooks = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 64}}

	ctrl.SetLogger(zap.New(zap.WriteTo(&logs), zap.Level(zapcore.DebugLevel)))
	deny, err := vault.ParseCIDRs(localstack.LocalEgressDeny)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mgr, err := ctrl.NewManager(mgrCfg, ctrl.Options{
		Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache: controllers.CacheOptions(key, shard.Shard{}), Client: controllers.ClientOptions(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	listening := make(chan net.Addr, 1)
	if err := controllers.SetupWithManager(mgr, controllers.Options{
		Registry: vault.NewRegistry(metrics.ClientHooks, deny), HMACKey: key,
		CredentialsPollInterval: time.Second, ConnectionWorkers: 2, BindingWorkers: 4,
		Webhook: controllers.WebhookOptions{Addr: "127.0.0.1:0", CertDir: certDir,
			// The flood test sends far more than a source may; the rounds are what it counts.
			Limits:   &webhook.Limits{PerSource: rate.Inf, Global: rate.Inf, MaxSources: 64},
			OnListen: func(a net.Addr) { listening <- a }, OnRound: rounds.add},
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	select {
	case a := <-listening:
		hookURL = "https://" + a.String()
	case <-time.After(time.Minute):
		fmt.Fprintln(os.Stderr, "the hook listener never started")
		return 1
	}
	code := m.Run()
	if code == 0 {
		for _, c := range []string{canaryToken, canarySecret, canaryValue, "CANARY"} {
			if strings.Contains(logs.String(), c) {
				fmt.Fprintf(os.Stderr, "the operator log contains a canary (%q)\n", c)
				return 1
			}
		}
	}
	return code
}

// serving writes a serving certificate for 127.0.0.1 into a new directory, as a mounted
// kubernetes.io/tls Secret would hold it, and returns the CA to trust.
func serving() (string, *x509.CertPool, error) {
	ca, err := devcert.NewCA("receivertest CA")
	if err != nil {
		return "", nil, err
	}
	pair, err := ca.Serving("hooks", []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "hooks-tls-")
	if err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pair.CertPEM, 0o600); err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pair.KeyPEM, 0o600); err != nil {
		return "", nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	return dir, pool, nil
}

// tenant is one namespace with a working connection to the dev vault.
type tenant struct {
	t  *testing.T
	ns string
}

func newTenant(t *testing.T) *tenant {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "hooks-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	tn := &tenant{t: t, ns: ns.Name}
	cred := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tn.ns, Name: "kw-cred", Labels: map[string]string{kf.LabelCredentials: "true"}},
		StringData: map[string]string{"token": canaryToken}}
	vc := &kf.VaultConnection{ObjectMeta: metav1.ObjectMeta{Namespace: tn.ns, Name: "kw"}, Spec: kf.VaultConnectionSpec{
		Provider: kf.ProviderKeyway, URL: vaultURL + "/keyway", AllowInsecureHTTP: true,
		Auth: kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: "kw-cred", Key: "token"}}}}}
	tn.create(cred, vc)
	return tn
}

func (tn *tenant) create(objs ...client.Object) {
	tn.t.Helper()
	for _, o := range objs {
		if err := k8s.Create(context.Background(), o); err != nil {
			tn.t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

// bindings creates n bindings of acme/app production labelled lbls and waits until each
// is Synced.
func (tn *tenant) bindings(prefix string, n int, lbls map[string]string) []*kf.SecretBinding {
	tn.t.Helper()
	out := make([]*kf.SecretBinding, n)
	for i := range out {
		out[i] = &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: tn.ns, Name: fmt.Sprintf("%s-%d", prefix, i), Labels: lbls},
			Spec: kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: "kw"}, Vault: "acme/app", Environment: "production"}}
		tn.create(out[i])
	}
	for _, b := range out {
		tn.waitBinding(b, 30*time.Second, func(b *kf.SecretBinding) bool {
			r := readyOf(b.Status.Conditions)
			return r != nil && r.Reason == kf.ReasonSynced
		})
	}
	return out
}

func (tn *tenant) waitBinding(b *kf.SecretBinding, timeout time.Duration, ok func(*kf.SecretBinding) bool) *kf.SecretBinding {
	tn.t.Helper()
	got := &kf.SecretBinding{}
	testenv.Eventually(tn.t, timeout, 50*time.Millisecond, "binding "+b.Name, func() (bool, string) {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(b), got); err != nil {
			return false, err.Error()
		}
		return ok(got), fmt.Sprintf("status %+v annotations %v", got.Status.Conditions, got.Annotations)
	})
	return got
}

// receiver creates a receiver of kind with its secret and waits until it is Listening;
// it returns the receiver as the API server has it.
func (tn *tenant) receiver(name string, kind kf.ReceiverType, selector metav1.LabelSelector) *kf.RefreshReceiver {
	tn.t.Helper()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tn.ns, Name: name + "-secret", Labels: map[string]string{kf.LabelCredentials: "true"}},
		StringData: map[string]string{"token": canarySecret}}
	rr := &kf.RefreshReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: tn.ns, Name: name}, Spec: kf.RefreshReceiverSpec{
		Type: kind, SecretRef: kf.ReceiverSecretReference{Name: sec.Name}, Selector: selector}}
	tn.create(sec, rr)
	return tn.waitReceiver(rr, func(r *kf.RefreshReceiver) bool {
		c := readyOf(r.Status.Conditions)
		return c != nil && c.Reason == kf.ReasonListening && r.Status.WebhookPath != ""
	})
}

func (tn *tenant) waitReceiver(rr *kf.RefreshReceiver, ok func(*kf.RefreshReceiver) bool) *kf.RefreshReceiver {
	tn.t.Helper()
	got := &kf.RefreshReceiver{}
	testenv.Eventually(tn.t, 30*time.Second, 50*time.Millisecond, "receiver "+rr.Name, func() (bool, string) {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(rr), got); err != nil {
			return false, err.Error()
		}
		return ok(got), fmt.Sprintf("status %+v", got.Status)
	})
	return got
}

func readyOf(conds []metav1.Condition) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == kf.ConditionReady {
			return &conds[i]
		}
	}
	return nil
}

// signed is a request signed as kind signs.
func signed(t *testing.T, kind kf.ReceiverType, path string, body []byte, secret string, at time.Time) *http.Request {
	t.Helper()
	req, err := webhook.NewRequest(context.Background(), webhook.Kind(kind), hookURL+path, body, []byte(secret), at)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func send(t *testing.T, req *http.Request) int {
	t.Helper()
	// A request may be sent twice (replays): its body is read again each time.
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			t.Fatal(err)
		}
		req.Body = body
	}
	resp, err := hooks.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	// A refusal says nothing but its status.
	if resp.StatusCode >= 400 && b.Len() > 0 {
		t.Errorf("a refusal (%d) came with a body: %q", resp.StatusCode, b.String())
	}
	return resp.StatusCode
}

// quiet watches the namespace's bindings, receivers and Secrets and fails the test if
// anything is written to them while during runs, or in the two seconds after.
func quiet(t *testing.T, ns string, during func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ws []watch.Interface
	for _, l := range []client.ObjectList{&kf.SecretBindingList{}, &kf.RefreshReceiverList{}, &corev1.SecretList{}} {
		// From now: a watch without a resourceVersion starts with ADDED events for what is there.
		if err := k8s.List(ctx, l, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		w, err := k8s.Watch(ctx, l, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: resourceVersionOf(l)}})
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	during()
	// Whatever a hook would cause starts within a second (a round is at most a second away).
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		for _, w := range ws {
			select {
			case ev := <-w.ResultChan():
				name := ""
				if o, ok := ev.Object.(client.Object); ok {
					name = fmt.Sprintf("%T %s", o, o.GetName())
				}
				t.Errorf("a refused hook wrote: %s %s", ev.Type, name)
			default:
			}
		}
	}
	for _, w := range ws {
		w.Stop()
	}
}

func resourceVersionOf(l client.ObjectList) string {
	return l.(interface{ GetResourceVersion() string }).GetResourceVersion()
}
