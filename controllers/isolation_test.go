package controllers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/dev/devvault"
)

// Tenants never wait for each other: each test replays, as namespaced users would, a
// tenant whose vault hangs, and shows that other tenants are served as if it were not
// there, and that the hanging tenant is still told the truth. All traffic stays on
// loopback.

func newSilentVault(t *testing.T) *devvault.Silent {
	t.Helper()
	s, err := devvault.NewSilent()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// hangingConnection is a tenant's VaultConnection to url with requestTimeout 5m (the most
// the API allows), authenticating with provider's usual credentials.
func hangingConnection(ns, name, provider, url string) (*kf.VaultConnection, client.Object) {
	vc, cred := connectionFor(ns, name, provider)
	vc.Spec.URL = url
	vc.Spec.RequestTimeout = &metav1.Duration{Duration: 5 * time.Minute}
	return vc, cred
}

// timeToReady creates a healthy tenant's connection and binding in a namespace of its own
// and returns how long the binding took to be Synced.
func timeToReady(t *testing.T, provider string) time.Duration {
	t.Helper()
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, provider, provider)
	b := bindingFor(ns, "app", provider, provider)
	began := time.Now()
	mustCreate(t, cred, vc, b)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), b.DeepCopy()) })
	waitReason(t, b, kf.ReasonSynced)
	return time.Since(began)
}

// Items 1 and 2 of the report: a tenant with 40 bindings on a vault that accepts
// connections and never answers, and four connections whose login never answers, all
// with requestTimeout 5m. Another tenant's new bindings, on a static-credential and a
// login vault, are Ready as on an idle manager (the suite runs 4 binding and 2 connection
// workers: before, every one of them was held for up to 5 minutes).
func TestAHangingTenantDoesNotDelayOthers(t *testing.T) {
	idle := timeToReady(t, "keyway")

	dead := newSilentVault(t)
	noisy := newNamespace(t, nil)
	vc, cred := hangingConnection(noisy, "dead", "keyway", dead.URL())
	mustCreate(t, cred, vc)
	var bindings []*kf.SecretBinding
	for i := range 40 {
		b := bindingFor(noisy, fmt.Sprintf("b%d", i), "dead", "keyway")
		b.Spec.Environment = fmt.Sprintf("env-%d", i)
		bindings = append(bindings, b)
		mustCreate(t, b)
	}
	var logins []*kf.VaultConnection
	for i := range 4 {
		lc, lcred := hangingConnection(noisy, fmt.Sprintf("login%d", i), "knowledgestack", dead.URL())
		logins = append(logins, lc)
		mustCreate(t, lcred, lc)
	}
	eventually(t, 20*time.Second, "the noisy tenant's requests are hanging", func() (bool, string) {
		return dead.Open() >= 12, fmt.Sprintf("%d connections open", dead.Open())
	})

	noisyKeyway := timeToReady(t, "keyway")
	noisyLogin := timeToReady(t, "knowledgestack")
	t.Logf("healthy tenant's time to Ready: idle %s; with the noise: keyway %s, knowledgestack (login) %s",
		idle.Round(time.Millisecond), noisyKeyway.Round(time.Millisecond), noisyLogin.Round(time.Millisecond))
	// Generous against a shared machine's noise; before, these did not happen in 45 s.
	if limit := idle + 10*time.Second; noisyKeyway > limit || noisyLogin > limit {
		t.Fatalf("the healthy tenant waited on the hanging one (idle %s, with noise %s / %s)", idle, noisyKeyway, noisyLogin)
	}
	// The noise is still there: nothing above was served by the hanging requests ending.
	if got := dead.Open(); got < 12 {
		t.Fatalf("only %d hanging connections left open", got)
	}
	// At most a few requests per connection are in flight, whatever the bindings.
	if got := dead.Opened(); got > 8+4 {
		t.Fatalf("%d connections to one hanging vault, want at most 8 pulls and 4 logins", got)
	}

	// Deleting the bindings and the connections cancels their requests in flight.
	for _, b := range bindings {
		if err := k8s.Delete(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	for _, lc := range logins {
		if err := k8s.Delete(context.Background(), lc); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, "every hanging request canceled", func() (bool, string) {
		return dead.Open() == 0, fmt.Sprintf("%d of %d connections still open", dead.Open(), dead.Opened())
	})
	stillServing(t)
}

// switchVault serves the dev vault until told to hang; it counts requests and the ones
// the client gave up.
type switchVault struct {
	hang               atomic.Bool
	requests, canceled atomic.Int32
	server             *httptest.Server
}

func newSwitchVault(t *testing.T) *switchVault {
	t.Helper()
	s := &switchVault{}
	s.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if s.hang.Load() {
			<-r.Context().Done()
			s.canceled.Add(1)
			return
		}
		dev.ServeHTTP(w, r)
	}))
	t.Cleanup(s.server.Close)
	return s
}

// The hanging tenant is still told the truth: each attempt that times out is
// ProviderUnavailable naming the timeout, and the last good Secret stays.
func TestATimeoutIsReportedAtEachAttemptAndKeepsTheSecret(t *testing.T) {
	sv := newSwitchVault(t)
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "kw", "keyway")
	vc.Spec.URL = sv.server.URL + "/keyway"
	vc.Spec.RequestTimeout = &metav1.Duration{Duration: 2 * time.Second}
	b := bindingFor(ns, "app", "kw", "keyway")
	mustCreate(t, cred, vc, b)
	waitReason(t, b, kf.ReasonSynced)
	before := getSecret(t, ns, "app").Data

	sv.hang.Store(true)
	for i, value := range []string{"t1", "t2"} {
		sent := sv.requests.Load()
		refresh(t, b, value)
		eventually(t, 20*time.Second, "the refresh answered by a timeout", func() (bool, string) {
			got := getBinding(t, b)
			c := readyCondition(got.Status.Conditions)
			if c == nil || got.Status.LastHandledRefresh != value {
				return false, fmt.Sprintf("refresh %q not handled yet", value)
			}
			return c.Reason == kf.ReasonProviderUnavailable && strings.Contains(c.Message, "timed out after 2s"), c.Reason + ": " + c.Message
		})
		if sv.requests.Load() == sent {
			t.Fatalf("attempt %d sent no request", i+1)
		}
	}
	after := getSecret(t, ns, "app").Data
	if len(after) == 0 || string(after["DB_USER"]) != string(before["DB_USER"]) {
		t.Fatal("the last good Secret did not stay")
	}
}

// Changing a binding's spec, or deleting its connection, cancels its request in flight.
func TestChangingOrDeletingCancelsRequestsInFlight(t *testing.T) {
	sv := newSwitchVault(t)
	sv.hang.Store(true)
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "kw", "keyway")
	vc.Spec.URL = sv.server.URL + "/keyway"
	vc.Spec.RequestTimeout = &metav1.Duration{Duration: 5 * time.Minute}
	b := bindingFor(ns, "app", "kw", "keyway")
	mustCreate(t, cred, vc, b)
	eventually(t, 20*time.Second, "the request in flight", func() (bool, string) {
		return sv.requests.Load() == 1, fmt.Sprintf("%d requests", sv.requests.Load())
	})
	// Its status says what it waits for, and for how long at most.
	eventually(t, 20*time.Second, "the wait shown in status", func() (bool, string) {
		rc := meta.FindStatusCondition(getBinding(t, b).Status.Conditions, kf.ConditionReconciling)
		if rc == nil {
			return false, "no Reconciling condition"
		}
		return strings.Contains(rc.Message, "waiting for the vault's answer") && strings.Contains(rc.Message, "requestTimeout 5m0s"), rc.Message
	})

	// A patch, not a read-modify-write: keyferry writes the binding too.
	mergePatch(t, b.DeepCopy(), map[string]any{"spec": map[string]any{"environment": "staging"}})
	eventually(t, 20*time.Second, "the old request canceled, the new one sent", func() (bool, string) {
		return sv.canceled.Load() == 1 && sv.requests.Load() == 2, fmt.Sprintf("%d requests, %d canceled", sv.requests.Load(), sv.canceled.Load())
	})

	if err := k8s.Delete(context.Background(), vc); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the request canceled with its connection", func() (bool, string) {
		return sv.canceled.Load() == 2, fmt.Sprintf("%d canceled", sv.canceled.Load())
	})
}
