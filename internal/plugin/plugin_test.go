package plugin

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/dev/testenv"
	"github.com/keyferry/keyferry/internal/webhook"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var (
	cfg *rest.Config
	k8s client.Client
	// t0 is the plugin's clock in the golden tests.
	t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
)

func TestMain(m *testing.M) {
	flag.Parse()
	env, c, cl, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg, k8s = c, cl
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// run runs the plugin with args against the test API server and returns its output and
// exit code. wrap, when set, wraps the transport (to count requests).
func run(t *testing.T, wrap func(http.RoundTripper) http.RoundTripper, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	c := rest.CopyConfig(cfg)
	c.WrapTransport = wrap
	ns := ""
	for i, a := range args {
		if a == "-n" && i+1 < len(args) {
			ns = args[i+1]
		}
	}
	flags := genericclioptions.NewConfigFlags(false)
	flags.Namespace = &ns
	no := false
	code := Main(&Options{Flags: flags, Streams: genericiooptions.IOStreams{Out: &out, ErrOut: &out}, RESTConfig: c,
		Now: func() time.Time { return t0 }, Color: &no}, args)
	return out.String(), code
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (run with -update after checking):\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func cond(typ string, status metav1.ConditionStatus, reason, msg string, at time.Time) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(at)}
}

func setStatus(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Status().Update(context.Background(), obj); err != nil {
		t.Fatalf("status of %s: %v", obj.GetName(), err)
	}
}

func mt(d time.Duration) *metav1.Time { x := metav1.NewTime(t0.Add(d)); return &x }

// shop is a namespace in several states: a Ready binding read by a Deployment, an
// Unauthorized one with Events, a rate-limited one, one not handled yet, and a Secret
// edited by hand.
func shop(t *testing.T) {
	ctx := context.Background()
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
	vc := &kf.VaultConnection{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "keyway"}, Spec: kf.VaultConnectionSpec{
		Provider: kf.ProviderKeyway, Auth: kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: "tok", Key: "token"}}}}}
	create(t, vc)
	vc.Status.ObservedGeneration = 1
	vc.Status.Conditions = []metav1.Condition{cond(kf.ConditionReady, metav1.ConditionFalse, kf.ReasonUnauthorized, "pull: HTTP 401: Invalid or revoked API key", t0.Add(-10*time.Minute)),
		cond(kf.ConditionCredentialsHealthy, metav1.ConditionFalse, kf.ReasonCredentialExpiring, "the credential lapses at 2026-12-07T12:00:00Z (in 6d): rotate or replace it", t0.Add(-time.Hour))}
	vc.Status.CredentialExpiresAt = mt(6 * 24 * time.Hour)
	vc.Status.CredentialChangedAt = mt(-84 * 24 * time.Hour)
	vc.Status.Rotation = &kf.RotationStatus{Phase: kf.RotationStopped, CurrentKeyID: "0b1c2d3e-0000-4000-8000-000000000001",
		CurrentKeyPrefix: "kw_live_a1B2c3D4", NextRotation: mt(time.Hour),
		LastError: "creating an API key was refused (HTTP 403: API key missing required scope(s): admin:api-keys)", LastErrorReason: kf.ReasonForbidden}
	setStatus(t, vc)
	binding := func(name, env string) *kf.SecretBinding {
		b := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"team": "shop"}},
			Spec: kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: "keyway"}, Vault: "acme/" + name, Environment: env}}
		create(t, b)
		return b
	}
	payments := binding("payments", "production")
	payments.Status = kf.SecretBindingStatus{ObservedGeneration: 1, SyncedKeys: 4, LastSyncTime: mt(-5 * time.Minute), NextSyncTime: mt(55 * time.Minute),
		Conditions: []metav1.Condition{cond(kf.ConditionReady, metav1.ConditionTrue, kf.ReasonSynced, "4 keys synced", t0.Add(-2*time.Hour))}}
	setStatus(t, payments)
	denied := binding("checkout", "production")
	denied.Status = kf.SecretBindingStatus{ObservedGeneration: 1, SyncedKeys: 2, LastSyncTime: mt(-3 * time.Hour), NextSyncTime: mt(40 * time.Second),
		Conditions: []metav1.Condition{
			cond(kf.ConditionReady, metav1.ConditionFalse, kf.ReasonUnauthorized, "pull: HTTP 401: Invalid or revoked API key", t0.Add(-10*time.Minute)),
			cond(kf.ConditionStalled, metav1.ConditionTrue, kf.ReasonUnauthorized, "pull: HTTP 401: Invalid or revoked API key", t0.Add(-10*time.Minute))}}
	setStatus(t, denied)
	limited := binding("staging", "staging")
	limited.Status = kf.SecretBindingStatus{ObservedGeneration: 1, SyncedKeys: 2, LastSyncTime: mt(-20 * time.Minute), RetryAfter: mt(90 * time.Second),
		Conditions: []metav1.Condition{
			cond(kf.ConditionReady, metav1.ConditionFalse, kf.ReasonRateLimited, "pull: HTTP 429 with retry-after 120s: Rate limit exceeded", t0.Add(-30*time.Second)),
			cond(kf.ConditionReconciling, metav1.ConditionTrue, kf.ReasonRateLimited, "pull: HTTP 429 with retry-after 120s: Rate limit exceeded", t0.Add(-30*time.Second))}}
	setStatus(t, limited)
	binding("fresh", "production")
	ci := &kf.RefreshReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "ci"}, Spec: kf.RefreshReceiverSpec{
		Type: kf.ReceiverTypeGitHub, SecretRef: kf.ReceiverSecretReference{Name: "hook"}, Selector: metav1.LabelSelector{MatchLabels: map[string]string{"team": "shop"}}}}
	create(t, ci)
	ci.Status = kf.RefreshReceiverStatus{ObservedGeneration: 1, WebhookPath: "/hook/" + strings.Repeat("ab", 32),
		LastHandled: &kf.ReceiverRound{Time: *mt(-2 * time.Minute), Refreshed: 4},
		Conditions:  []metav1.Condition{cond(kf.ConditionReady, metav1.ConditionTrue, kf.ReasonListening, "POST github hooks to status.webhookPath", t0.Add(-time.Hour))}}
	setStatus(t, ci)
	off := &kf.RefreshReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "nightly"}, Spec: kf.RefreshReceiverSpec{
		Type: kf.ReceiverTypeGenericHMAC, SecretRef: kf.ReceiverSecretReference{Name: "hook"}, Selector: metav1.LabelSelector{MatchLabels: map[string]string{"team": "other"}}}}
	create(t, off)
	off.Status = kf.RefreshReceiverStatus{ObservedGeneration: 1, Conditions: []metav1.Condition{
		cond(kf.ConditionReady, metav1.ConditionFalse, kf.ReasonListenerDisabled, "this keyferry runs without its webhook listener", t0.Add(-time.Hour))}}
	setStatus(t, off)

	// The Secrets: payments' written by keyferry, checkout's then edited by hand.
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "payments"}, Data: map[string][]byte{"A": []byte("1")}})
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout"}, Data: map[string][]byte{"A": []byte("1"), "B": []byte("2")}}
	if err := k8s.Create(ctx, s, client.FieldOwner(kf.FieldManager)); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Patch(ctx, s, client.RawPatch(types.MergePatchType, []byte(`{"data":{"A":"ZWRpdGVk"}}`)), client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "shop"}
	reads := corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "payments"}}}
	tpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app", EnvFrom: []corev1.EnvFromSource{reads}}}}}
	create(t, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "shop", Labels: map[string]string{kf.LabelRestartOnChange: "true"}},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tpl}})
	create(t, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout.1"},
		InvolvedObject: corev1.ObjectReference{Kind: "SecretBinding", Namespace: "shop", Name: "checkout", UID: denied.UID},
		Type:           corev1.EventTypeWarning, Reason: kf.ReasonUnauthorized, Message: "pull: HTTP 401: Invalid or revoked API key",
		LastTimestamp: metav1.NewTime(t0.Add(-10 * time.Minute))})
	create(t, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "keyway.1"},
		InvolvedObject: corev1.ObjectReference{Kind: "VaultConnection", Namespace: "shop", Name: "keyway", UID: vc.UID},
		Type:           corev1.EventTypeWarning, Reason: kf.ReasonUnauthorized, Message: "login refused",
		LastTimestamp: metav1.NewTime(t0.Add(-11 * time.Minute))})
}

func TestStatusAndWhy(t *testing.T) {
	shop(t)
	out, code := run(t, nil, "status", "-n", "shop")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	golden(t, "status", out)
	out, _ = run(t, nil, "status", "-n", "shop", "-l", "team=shop", "--connection", "keyway", "-o", "wide")
	golden(t, "status-wide", out)
	out, _ = run(t, nil, "status", "-n", "shop", "-o", "json")
	if !strings.Contains(out, `"failing": 3`) || !strings.Contains(out, `"Deployment/shop (restarts)"`) {
		t.Errorf("status -o json:\n%s", out)
	}
	for _, name := range []string{"checkout", "staging", "payments", "fresh"} {
		out, code := run(t, nil, "why", name, "-n", "shop")
		if code != 0 {
			t.Fatalf("why %s: exit %d\n%s", name, code, out)
		}
		golden(t, "why-"+name, out)
	}
	if out, code := run(t, nil, "why", "nowhere", "-n", "shop"); code == 0 || !strings.Contains(out, "not found") {
		t.Errorf("why of a missing binding: exit %d\n%s", code, out)
	}
}

// countPatches counts the PATCH requests on SecretBindings (not their status).
func countPatches(n *atomic.Int32) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPatch && strings.Contains(r.URL.Path, "/secretbindings/") && !strings.HasSuffix(r.URL.Path, "/status") {
				n.Add(1)
			}
			return rt.RoundTrip(r)
		})
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// handle stands in for the operator: it answers every refresh asked of bindings in ns,
// Ready except for the names in failing.
func handle(ctx context.Context, t *testing.T, ns string, failing ...string) {
	go func() {
		for ctx.Err() == nil {
			list := &kf.SecretBindingList{}
			if err := k8s.List(ctx, list, client.InNamespace(ns)); err == nil {
				for i := range list.Items {
					b := &list.Items[i]
					v := b.Annotations[kf.AnnotationRefresh]
					if v == "" || v == b.Status.LastHandledRefresh {
						continue
					}
					b.Status.LastHandledRefresh, b.Status.ObservedGeneration = v, b.Generation
					c := cond(kf.ConditionReady, metav1.ConditionTrue, kf.ReasonSynced, "3 keys synced", t0)
					for _, f := range failing {
						if b.Name == f {
							c = cond(kf.ConditionReady, metav1.ConditionFalse, kf.ReasonForbidden, "pull: HTTP 403: You do not have access to this repository", t0)
						}
					}
					b.Status.Conditions = []metav1.Condition{c}
					_ = k8s.Status().Update(ctx, b)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
}

func TestRefreshManyAndExitCodes(t *testing.T) {
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "many"}})
	for i := range 200 {
		create(t, &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "many", Name: fmt.Sprintf("b-%03d", i), Labels: map[string]string{"team": "x"}},
			Spec: kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: "keyway"}, Vault: "acme/app", Environment: "production"}})
	}
	create(t, &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "many", Name: "other"},
		Spec: kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: "elsewhere"}, Vault: "acme/app", Environment: "production"}})

	// Without an operator answering: --wait times out, exit 1, naming what is pending.
	out, code := run(t, nil, "refresh", "other", "-n", "many", "--wait", "--timeout", "1s")
	if code != 1 || !strings.Contains(out, "many/other: refresh not handled yet") {
		t.Fatalf("timeout: exit %d\n%s", code, out)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	handle(ctx, t, "many", "b-007")
	var patches atomic.Int32
	out, code = run(t, countPatches(&patches), "refresh", "-l", "team=x", "-n", "many", "--wait", "--timeout", "60s")
	if code != 1 || !strings.Contains(out, "1 of 200 bindings not Ready") || !strings.Contains(out, "✗ many/b-007  Forbidden") {
		t.Fatalf("refresh of 200 with one failing: exit %d\n%s", code, out)
	}
	if n := strings.Count(out, "] ✓ ") + strings.Count(out, "] ✗ "); n != 200 {
		t.Fatalf("%d results printed, want 200", n)
	}
	if n := patches.Load(); n != 200 {
		t.Fatalf("%d merge patches for 200 bindings, want 200", n)
	}
	list := &kf.SecretBindingList{}
	if err := k8s.List(ctx, list, client.InNamespace("many"), client.MatchingLabels{"team": "x"}); err != nil {
		t.Fatal(err)
	}
	value := list.Items[0].Annotations[kf.AnnotationRefresh]
	for _, b := range list.Items {
		if b.Status.LastHandledRefresh != value {
			t.Fatalf("%s handled %q, want %q", b.Name, b.Status.LastHandledRefresh, value)
		}
	}

	// --connection selects by connection; all Ready: exit 0.
	if out, code := run(t, nil, "refresh", "--connection", "elsewhere", "-n", "many", "--wait", "--timeout", "30s"); code != 0 || !strings.Contains(out, "[1/1] ✓ many/other") {
		t.Fatalf("refresh --connection: exit %d\n%s", code, out)
	}
	// Nothing selected is refused; a name that does not exist is an error.
	if out, code := run(t, nil, "refresh", "-n", "many"); code == 0 || !strings.Contains(out, "--all") {
		t.Fatalf("refresh without a selection: exit %d\n%s", code, out)
	}
	if out, code := run(t, nil, "refresh", "nope", "-n", "many"); code != 1 {
		t.Fatalf("refresh of a missing binding: exit %d\n%s", code, out)
	}

	// suspend and resume.
	if out, code := run(t, nil, "suspend", "sb", "other", "-n", "many"); code != 0 || !strings.Contains(out, "secretbinding many/other suspended") {
		t.Fatalf("suspend: exit %d\n%s", code, out)
	}
	b := &kf.SecretBinding{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: "many", Name: "other"}, b); err != nil || !b.Spec.Suspend {
		t.Fatalf("after suspend: %v %v", b.Spec.Suspend, err)
	}
	if out, code := run(t, nil, "resume", "secretbindings", "other", "-n", "many"); code != 0 {
		t.Fatalf("resume: exit %d\n%s", code, out)
	}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: "many", Name: "other"}, b); err != nil || b.Spec.Suspend {
		t.Fatalf("after resume: %v %v", b.Spec.Suspend, err)
	}
	if out, code := run(t, nil, "suspend", "pods", "x"); code == 0 || !strings.Contains(out, "unknown kind") {
		t.Fatalf("suspend of an unknown kind: exit %d\n%s", code, out)
	}
}

// The README's table of what to do carries exactly the plugin's advice.
func TestAdviceMatchesTheREADME(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for reason, advice := range Advice {
		if !strings.Contains(string(raw), fmt.Sprintf("| `%s` | %s |", reason, advice)) {
			t.Errorf("README lacks the row for %s: | `%s` | %s |", reason, reason, advice)
		}
	}
}

// hook signs as each receiver type verifies, reads the secret from a file (a trailing
// newline is not part of it), and exits non-zero with advice on a refusal.
func TestHookSignsAsEachTypeVerifies(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []kf.ReceiverType{kf.ReceiverTypeGenericHMAC, kf.ReceiverTypeGitHub, kf.ReceiverTypeToken} {
		var verr error
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			_, verr = webhook.Verify(webhook.Kind(kind), []byte(secret), webhook.Call{Header: r.Header, Body: body, Now: time.Now()})
			if verr != nil {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.WriteHeader(http.StatusAccepted)
		}))
		out, code := run(t, nil, "hook", srv.URL+"/hook/x", "--secret-file", file, "--type", string(kind))
		if code != 0 || verr != nil || !strings.Contains(out, "202") {
			t.Errorf("%s: exit %d, verify %v\n%s", kind, code, verr, out)
		}
		wrong := filepath.Join(t.TempDir(), "wrong")
		_ = os.WriteFile(wrong, []byte("not-the-secret-at-all"), 0o600)
		out, code = run(t, nil, "hook", srv.URL+"/hook/x", "--secret-file", wrong, "--type", string(kind))
		if code == 0 || !strings.Contains(out, "401: the signature was refused") {
			t.Errorf("%s with the wrong secret: exit %d\n%s", kind, code, out)
		}
		srv.Close()
	}
}
