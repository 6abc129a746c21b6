package controllers_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
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

// Canaries: credentials and secret values that must never show in status, events or logs.
const (
	canaryToken    = "kw_live_CANARYtoken0123456789abcdefghijklmnopqrst"
	canaryKeymint  = "at_CANARYkeymint0123456789"
	canaryStashKey = "stash-CANARY-key-0123456789"
	canaryUser     = "ops@example.com"
	canaryPassword = "pw-CANARY-password-42"
	canaryValue    = "CANARY-secret-value-77"
	// deniedLoopback is on the suite manager's egress deny list.
	deniedLoopback = "127.0.0.2"
)

var (
	k8s      client.Client
	dev      *devvault.Server
	vaultURL string
	logs     testenv.LogBuffer
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

	dev = devvault.New(&devvault.Data{
		Vaults: map[string]map[string]map[string]string{
			"acme/payments": {"production": {"DB_USER": "app", "DB_PASS": canaryValue, "DB_TEST": "t"}},
			"acme/shared":   {"production": {"SHARED": "1"}},
			"acme/secret":   {"production": {"X": "1"}},
		},
		Tokens:    []string{canaryToken, canaryKeymint},
		APIKeys:   []string{canaryStashKey},
		Users:     map[string]string{canaryUser: canaryPassword},
		Forbidden: []string{"acme/secret"},
	}, devvault.Options{})
	hs := httptest.NewServer(dev)
	defer hs.Close()
	vaultURL = hs.URL

	ctrl.SetLogger(zap.New(zap.WriteTo(&logs), zap.Level(zapcore.DebugLevel)))
	scheme := testenv.Scheme()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The manager runs with exactly the RBAC it ships (config/rbac/role.yaml), so a verb
	// the code needs and the role lacks fails the suite.
	mgrCfg, key, err := testenv.PrepareForManager(ctx, k8s, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The local policy (loopback allowed, for the dev vault) plus one loopback address to
	// aim the egress tests at: tests never send traffic beyond loopback.
	egressDeny, err := vault.ParseCIDRs(localstack.LocalEgressDeny + "," + deniedLoopback + "/32")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mgr, err := ctrl.NewManager(mgrCfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   controllers.CacheOptions(key, shard.Shard{}),
		Client:  controllers.ClientOptions(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := controllers.SetupWithManager(mgr, controllers.Options{
		Registry: vault.NewRegistry(metrics.ClientHooks, egressDeny), HMACKey: key,
		CredentialsPollInterval: time.Second, ConnectionWorkers: 2, BindingWorkers: 4,
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	code := m.Run()
	if path := os.Getenv("KEYFERRY_TEST_LOG"); path != "" {
		_ = os.WriteFile(path, []byte(logs.String()), 0o600)
	}
	if code == 0 {
		code = checkLogs()
	}
	return code
}

// checkLogs fails the run if the operator logged a credential or secret value.
func checkLogs() int {
	out := logs.String()
	for _, c := range []string{canaryToken, canaryKeymint, canaryStashKey, canaryPassword, canaryValue, "CANARY"} {
		if strings.Contains(out, c) {
			fmt.Fprintf(os.Stderr, "the operator log contains a canary (%q)\n", c)
			return 1
		}
	}
	if !strings.Contains(out, "Reconciler") && !strings.Contains(out, "reconcil") && len(out) == 0 {
		fmt.Fprintln(os.Stderr, "no operator log was captured: the canary check would prove nothing")
		return 1
	}
	return 0
}

// --- helpers

func newNamespace(t *testing.T, lbls map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "kf-", Labels: lbls}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func mustCreate(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func credentials(ns, name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: map[string]string{kf.LabelCredentials: "true"}}, StringData: data}
	return s
}

// connectionFor returns a working connection (and its credentials) for provider.
func connectionFor(ns, name, provider string) (*kf.VaultConnection, *corev1.Secret) {
	vc := &kf.VaultConnection{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: kf.VaultConnectionSpec{
		Provider: kf.Provider(provider), URL: vaultURL + "/" + provider, AllowInsecureHTTP: true,
		RequestTimeout: &metav1.Duration{Duration: time.Second},
	}}
	cred := name + "-cred"
	var s *corev1.Secret
	switch provider {
	case "keyway", "keymint":
		tok := canaryToken
		if provider == "keymint" {
			tok = canaryKeymint
		}
		vc.Spec.Auth.Bearer = &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: cred, Key: "token"}}
		s = credentials(ns, cred, map[string]string{"token": tok})
	case "stash":
		vc.Spec.Auth.APIKey = &kf.APIKeyAuth{SecretRef: kf.SecretKeyReference{Name: cred, Key: "apiKey"}}
		s = credentials(ns, cred, map[string]string{"apiKey": canaryStashKey})
	default:
		vc.Spec.Auth.Login = &kf.LoginAuth{SecretRef: kf.SecretReference{Name: cred}}
		s = credentials(ns, cred, map[string]string{"username": canaryUser, "password": canaryPassword})
	}
	return vc, s
}

// bindingFor returns a binding reading acme/payments production through provider.
func bindingFor(ns, name, conn, provider string) *kf.SecretBinding {
	b := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: kf.SecretBindingSpec{
		ConnectionRef: kf.ConnectionReference{Name: conn}, Vault: "acme/payments", Environment: "production",
	}}
	switch provider {
	case "keystash":
		b.Spec.Request = &kf.RequestSpec{Path: "/api/v1/secrets/view?vault={vault}&environment={environment}"}
	case "stash":
		b.Spec.Request = &kf.RequestSpec{Method: "POST", Path: "/api/v1/sdk/config",
			Body: `{"shop_handle":"{vault}","environment":"{environment}"}`, DataPath: "data"}
	case "knowledgestack":
		b.Spec.Request = &kf.RequestSpec{Path: "/v1/secrets?tenant={vault}&env={environment}", Format: kf.RequestFormatDotenv, DataPath: "content"}
	case "keymint":
		b.Spec.Request = &kf.RequestSpec{Path: "/key?productId={vault}&licenseKey={environment}", DataPath: "data.license"}
	}
	return b
}

// setup creates a connection, its credentials and a binding, and waits until it is Synced.
func setup(t *testing.T, provider string) (ns string, b *kf.SecretBinding) {
	t.Helper()
	ns = newNamespace(t, nil)
	vc, cred := connectionFor(ns, provider, provider)
	b = bindingFor(ns, "app", provider, provider)
	mustCreate(t, cred, vc, b)
	// Stop the binding when the test ends, so its retries do not count in later tests.
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), b.DeepCopy()) })
	waitReason(t, b, kf.ReasonSynced)
	return ns, b
}

func getBinding(t *testing.T, b *kf.SecretBinding) *kf.SecretBinding {
	t.Helper()
	got := &kf.SecretBinding{}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(b), got); err != nil {
		t.Fatal(err)
	}
	return got
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testenv.Eventually(t, timeout, 50*time.Millisecond, what, cond)
}

// waitCondition waits until obj's Ready condition (read by conds after each Get) has reason,
// and checks that its status leaks nothing.
func waitCondition(t *testing.T, obj client.Object, conds func() []metav1.Condition, status func() any, reason string) {
	t.Helper()
	eventually(t, 20*time.Second, obj.GetName()+" "+reason, func() (bool, string) {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return false, err.Error()
		}
		if c := readyCondition(conds()); c != nil {
			return c.Reason == reason, c.Reason + ": " + c.Message
		}
		return false, "no Ready condition"
	})
	assertNoCanary(t, fmt.Sprintf("%+v", status()))
}

// waitReason waits until the binding's Ready condition has reason.
func waitReason(t *testing.T, b *kf.SecretBinding, reason string) *kf.SecretBinding {
	t.Helper()
	got := b.DeepCopy()
	waitCondition(t, got, func() []metav1.Condition { return got.Status.Conditions }, func() any { return got.Status }, reason)
	return got
}

func waitConnReason(t *testing.T, vc *kf.VaultConnection, reason string) *kf.VaultConnection {
	t.Helper()
	got := vc.DeepCopy()
	waitCondition(t, got, func() []metav1.Condition { return got.Status.Conditions }, func() any { return got.Status }, reason)
	return got
}

func getSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
		t.Fatalf("Secret %s/%s: %v", ns, name, err)
	}
	return s
}

func secretGone(ns, name string) bool {
	err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &corev1.Secret{})
	return apierrors.IsNotFound(err)
}

func assertNoCanary(t *testing.T, s string) {
	t.Helper()
	for _, c := range []string{canaryToken, canaryKeymint, canaryStashKey, canaryPassword, canaryValue, "CANARY"} {
		if strings.Contains(s, c) {
			t.Fatalf("leaked a canary into %q", s)
		}
	}
}

// refresh sets the refresh annotation to a new value.
func refresh(t *testing.T, b *kf.SecretBinding, value string) {
	t.Helper()
	cur := getBinding(t, b)
	base := cur.DeepCopy()
	if cur.Annotations == nil {
		cur.Annotations = map[string]string{}
	}
	cur.Annotations[kf.AnnotationRefresh] = value
	if err := k8s.Patch(context.Background(), cur, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
}

func readyCondition(conds []metav1.Condition) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == kf.ConditionReady {
			return &conds[i]
		}
	}
	return nil
}
