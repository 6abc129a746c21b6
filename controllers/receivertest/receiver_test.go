package receivertest_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/dev/testenv"
	"github.com/keyferry/keyferry/internal/webhook"
)

var selectApp = metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop"}}

// pushBody is the body GitHub sends for a push, in short.
var pushBody = []byte(`{"ref":"refs/heads/main","repository":{"full_name":"acme/app"},"pusher":{"name":"ci"}}`)

func refreshedByHook(b *kf.SecretBinding) bool {
	v := b.Annotations[kf.AnnotationRefresh]
	return strings.HasPrefix(v, kf.RefreshFromHookPrefix) && b.Status.LastHandledRefresh == v
}

// Every check refuses before anything is touched: for each type, a wrong signature, a
// missing one, a stale timestamp, an oversized body, an unknown path, a GET, and the replay
// of a valid request cost no write in the namespace and no pull; then the valid request
// refreshes the binding.
func TestEveryRefusalCostsNothing(t *testing.T) {
	for _, kind := range []kf.ReceiverType{kf.ReceiverTypeGenericHMAC, kf.ReceiverTypeGitHub, kf.ReceiverTypeToken} {
		t.Run(string(kind), func(t *testing.T) {
			tn := newTenant(t)
			b := tn.bindings("app", 1, map[string]string{"app": "shop"})[0]
			rr := tn.receiver("ci", kind, selectApp)
			path := rr.Status.WebhookPath
			if !strings.HasPrefix(path, "/hook/") || len(path) != len("/hook/")+64 || strings.Contains(path, rr.Name) || strings.Contains(path, tn.ns) {
				t.Fatalf("webhookPath %q: want /hook/<sha256 hex> revealing nothing", path)
			}
			now := time.Now()
			pulls := dev.Count("keyway.pull")
			quiet(t, tn.ns, func() {
				check := func(what string, req *http.Request, want int) {
					t.Helper()
					if got := send(t, req); got != want {
						t.Errorf("%s: %d, want %d", what, got, want)
					}
				}
				check("wrong secret", signed(t, kind, path, pushBody, "not-the-secret-0123456789", now), http.StatusUnauthorized)
				unsigned := signed(t, kind, path, pushBody, canarySecret, now)
				for _, h := range []string{"X-Signature", "X-Hub-Signature-256", "Authorization"} {
					unsigned.Header.Del(h)
				}
				check("no signature", unsigned, http.StatusUnauthorized)
				if kind == kf.ReceiverTypeGenericHMAC {
					check("stale timestamp", signed(t, kind, path, pushBody, canarySecret, now.Add(-6*time.Minute)), http.StatusUnauthorized)
					check("future timestamp", signed(t, kind, path, pushBody, canarySecret, now.Add(6*time.Minute)), http.StatusUnauthorized)
					tampered := signed(t, kind, path, pushBody, canarySecret, now)
					tampered.Header.Set("X-Timestamp", fmt.Sprint(now.Unix()+1)) // the timestamp is signed too
					check("timestamp changed after signing", tampered, http.StatusUnauthorized)
				}
				big := make([]byte, webhook.MaxBody+1)
				check("oversized body", signed(t, kind, path, big, canarySecret, now), http.StatusRequestEntityTooLarge)
				check("unknown path", signed(t, kind, "/hook/"+strings.Repeat("0", 64), pushBody, canarySecret, now), http.StatusNotFound)
				check("no such route", signed(t, kind, "/metrics", pushBody, canarySecret, now), http.StatusNotFound)
				get := signed(t, kind, path, pushBody, canarySecret, now)
				get.Method = http.MethodGet
				check("GET", get, http.StatusMethodNotAllowed)
				if kind == kf.ReceiverTypeGitHub {
					ping := signed(t, kind, path, []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`), canarySecret, now)
					ping.Header.Set("X-GitHub-Event", "ping")
					check("GitHub's ping", ping, http.StatusOK)
				}
			})
			if got := dev.Count("keyway.pull"); got != pulls {
				t.Errorf("refused hooks caused %d pulls", got-pulls)
			}

			valid := signed(t, kind, path, pushBody, canarySecret, time.Now())
			if got := send(t, valid); got != http.StatusAccepted {
				t.Fatalf("valid hook: %d", got)
			}
			tn.waitBinding(b, 10*time.Second, refreshedByHook)
			got := tn.waitReceiver(rr, func(r *kf.RefreshReceiver) bool { return r.Status.LastHandled != nil })
			if got.Status.LastHandled.Refreshed != 1 {
				t.Errorf("lastHandled %+v, want 1 refreshed", got.Status.LastHandled)
			}
			if kind == kf.ReceiverTypeToken {
				return // a bearer token cannot tell one call from another (documented)
			}
			settle(t, tn.ns)
			pulls = dev.Count("keyway.pull")
			quiet(t, tn.ns, func() {
				if got := send(t, valid); got != http.StatusUnauthorized {
					t.Errorf("replay of a valid hook: %d, want 401", got)
				}
			})
			if got := dev.Count("keyway.pull"); got != pulls {
				t.Errorf("the replay caused %d pulls", got-pulls)
			}
		})
	}
}

// settle waits until nothing has been written in ns for a second (the passes a hook
// caused have ended).
func settle(t *testing.T, ns string) {
	t.Helper()
	last := ""
	stable := 0
	testenv.Eventually(t, 20*time.Second, 250*time.Millisecond, "quiet namespace", func() (bool, string) {
		v := ""
		for _, l := range []client.ObjectList{&kf.SecretBindingList{}, &kf.RefreshReceiverList{}, &corev1.SecretList{}} {
			if err := k8s.List(context.Background(), l, client.InNamespace(ns)); err != nil {
				return false, err.Error()
			}
			v += resourceVersionsOf(l)
		}
		if v == last {
			stable++
		} else {
			last, stable = v, 0
		}
		return stable >= 4, ""
	})
}

func resourceVersionsOf(l client.ObjectList) string {
	var b strings.Builder
	switch l := l.(type) {
	case *kf.SecretBindingList:
		for _, o := range l.Items {
			b.WriteString(o.ResourceVersion + ",")
		}
	case *kf.RefreshReceiverList:
		for _, o := range l.Items {
			b.WriteString(o.ResourceVersion + ",")
		}
	case *corev1.SecretList:
		for _, o := range l.Items {
			b.WriteString(o.ResourceVersion + ",")
		}
	}
	return b.String()
}

// One valid hook refreshes 20 bindings of one environment with one pull, and the new
// value reaches every Secret.
func TestOneHookTwentyBindingsOnePull(t *testing.T) {
	tn := newTenant(t)
	bs := tn.bindings("app", 20, map[string]string{"app": "shop"})
	rr := tn.receiver("ci", kf.ReceiverTypeGenericHMAC, selectApp)
	settle(t, tn.ns)
	dev.SetSecret("acme/app", "production", "API_URL", "https://changed.example")
	t.Cleanup(func() { dev.SetSecret("acme/app", "production", "API_URL", "https://api.example") })
	pulls := dev.Count("keyway.pull")
	start := time.Now()
	if got := send(t, signed(t, kf.ReceiverTypeGenericHMAC, rr.Status.WebhookPath, []byte(`{"event":"secrets.changed"}`), canarySecret, time.Now())); got != http.StatusAccepted {
		t.Fatalf("hook: %d", got)
	}
	for _, b := range bs {
		tn.waitBinding(b, 20*time.Second, refreshedByHook)
	}
	elapsed := time.Since(start)
	for _, b := range bs {
		s := &corev1.Secret{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: tn.ns, Name: b.Name}, s); err != nil {
			t.Fatal(err)
		}
		if string(s.Data["API_URL"]) != "https://changed.example" {
			t.Errorf("Secret %s API_URL = %q after the hook", b.Name, s.Data["API_URL"])
		}
	}
	if got := dev.Count("keyway.pull") - pulls; got != 1 {
		t.Errorf("one hook over 20 bindings of one environment caused %d pulls, want 1", got)
	}
	t.Logf("20 bindings refreshed %v after the hook, with %d pull", elapsed.Round(time.Millisecond), dev.Count("keyway.pull")-pulls)
}

// A flood of valid hooks (5,000 in 10 s) makes at most one round a second, and another
// namespace's binding still refreshes as usual meanwhile.
func TestFloodOfValidHooksMakesFewRounds(t *testing.T) {
	tn := newTenant(t)
	tn.bindings("app", 3, map[string]string{"app": "shop"})
	rr := tn.receiver("ci", kf.ReceiverTypeToken, selectApp)
	other := newTenant(t)
	ob := other.bindings("other", 1, nil)[0]
	key := tn.ns + "/" + rr.Name
	before := rounds.count(key)

	const total, over = 5000, 10 * time.Second
	var sent, accepted atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += 16 {
				// Paced: request i leaves at i/total of the way through.
				time.Sleep(time.Until(start.Add(time.Duration(i) * over / total)))
				resp, err := hooks.Do(signed(t, kf.ReceiverTypeToken, rr.Status.WebhookPath, pushBody, canarySecret, time.Now()))
				if err != nil {
					t.Error(err)
					return
				}
				_ = resp.Body.Close()
				sent.Add(1)
				if resp.StatusCode == http.StatusAccepted {
					accepted.Add(1)
				}
			}
		}()
	}
	// Meanwhile the other namespace asks for a refresh the usual way.
	time.Sleep(3 * time.Second)
	asked := time.Now()
	patch := client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"annotations":{"keyferry.dev/refresh":"during-the-flood"}}}`))
	if err := k8s.Patch(context.Background(), ob.DeepCopy(), patch); err != nil {
		t.Fatal(err)
	}
	other.waitBinding(ob, 10*time.Second, func(b *kf.SecretBinding) bool { return b.Status.LastHandledRefresh == "during-the-flood" })
	otherTook := time.Since(asked)
	wg.Wait()
	took := time.Since(start)
	time.Sleep(1500 * time.Millisecond) // the last round
	n := rounds.count(key) - before
	t.Logf("%d hooks sent in %v (%d accepted), %d rounds; the other namespace's refresh took %v", sent.Load(), took.Round(time.Millisecond), accepted.Load(), n, otherTook.Round(time.Millisecond))
	if sent.Load() != total || accepted.Load() != total {
		t.Errorf("%d sent, %d accepted, want %d", sent.Load(), accepted.Load(), total)
	}
	// One round a second at most, plus the first one, at the start.
	if limit := int(took/time.Second) + 2; n > limit || n < 2 {
		t.Errorf("%d rounds over %v, want between 2 and %d", n, took, limit)
	}
}

// A tenant's receiver selecting everything refreshes its own namespace's bindings only:
// the matching bindings of another namespace see no write.
func TestSelectorNeverLeavesItsNamespace(t *testing.T) {
	victim := newTenant(t)
	victim.bindings("app", 2, map[string]string{"app": "shop"})
	settle(t, victim.ns)
	hostile := newTenant(t)
	own := hostile.bindings("app", 1, map[string]string{"app": "shop"})[0]
	rr := hostile.receiver("everything", kf.ReceiverTypeToken, metav1.LabelSelector{})
	quiet(t, victim.ns, func() {
		if got := send(t, signed(t, kf.ReceiverTypeToken, rr.Status.WebhookPath, pushBody, canarySecret, time.Now())); got != http.StatusAccepted {
			t.Errorf("hook: %d", got)
		}
		hostile.waitBinding(own, 10*time.Second, refreshedByHook)
	})
}

// A new secret moves the path: the old one answers 404 from then on, the new one works.
func TestRotatedSecretMovesThePath(t *testing.T) {
	tn := newTenant(t)
	b := tn.bindings("app", 1, map[string]string{"app": "shop"})[0]
	rr := tn.receiver("ci", kf.ReceiverTypeToken, selectApp)
	old := rr.Status.WebhookPath
	const rotated = "CANARY-rotated-hook-secret-fedcba9876543210"
	sec := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: tn.ns, Name: rr.Spec.SecretRef.Name}, sec); err != nil {
		t.Fatal(err)
	}
	sec.Data["token"] = []byte(rotated)
	if err := k8s.Update(context.Background(), sec); err != nil {
		t.Fatal(err)
	}
	moved := tn.waitReceiver(rr, func(r *kf.RefreshReceiver) bool { return r.Status.WebhookPath != old && r.Status.WebhookPath != "" })
	testenv.Eventually(t, 10*time.Second, 50*time.Millisecond, "old path gone", func() (bool, string) {
		got := send(t, signed(t, kf.ReceiverTypeToken, old, pushBody, canarySecret, time.Now()))
		return got == http.StatusNotFound, fmt.Sprint(got)
	})
	if got := send(t, signed(t, kf.ReceiverTypeToken, moved.Status.WebhookPath, pushBody, canarySecret, time.Now())); got != http.StatusUnauthorized {
		t.Errorf("the old secret on the new path: %d, want 401", got)
	}
	if got := send(t, signed(t, kf.ReceiverTypeToken, moved.Status.WebhookPath, pushBody, rotated, time.Now())); got != http.StatusAccepted {
		t.Fatalf("the new secret on the new path: %d", got)
	}
	tn.waitBinding(b, 10*time.Second, refreshedByHook)
}

// A receiver says what is wrong with its secret, naming neither it nor any byte of it.
func TestReceiverSecretProblemsAreConditions(t *testing.T) {
	tn := newTenant(t)
	short := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tn.ns, Name: "short", Labels: map[string]string{kf.LabelCredentials: "true"}},
		StringData: map[string]string{"token": "CANARY-short"}}
	unlabelled := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tn.ns, Name: "unlabelled"},
		StringData: map[string]string{"token": canarySecret}}
	tn.create(short, unlabelled)
	for _, tc := range []struct {
		secret, reason, says string
	}{
		{"short", kf.ReasonInvalidSpec, "at least 16"},
		{"unlabelled", kf.ReasonCredentialsNotFound, "not labelled"},
		{"missing", kf.ReasonCredentialsNotFound, "not found"},
	} {
		rr := &kf.RefreshReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: tn.ns, Name: "rr-" + tc.secret}, Spec: kf.RefreshReceiverSpec{
			Type: kf.ReceiverTypeToken, SecretRef: kf.ReceiverSecretReference{Name: tc.secret}, Selector: selectApp}}
		tn.create(rr)
		got := tn.waitReceiver(rr, func(r *kf.RefreshReceiver) bool {
			c := readyOf(r.Status.Conditions)
			return c != nil && c.Reason == tc.reason
		})
		c := readyOf(got.Status.Conditions)
		if !strings.Contains(c.Message, tc.says) || strings.Contains(c.Message, "CANARY") || got.Status.WebhookPath != "" {
			t.Errorf("%s: %s %q, path %q", tc.secret, c.Reason, c.Message, got.Status.WebhookPath)
		}
	}
}
