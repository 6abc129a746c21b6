package controllers_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/dev/devvault"
)

// providerRequests reads keyferry_provider_requests_total for one connection and op.
func providerRequests(t *testing.T, connection, op string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != "keyferry_provider_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "connection") == connection && label(m, "op") == op {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// A Knowledge Stack session is refreshed before it lapses, by the connection reconciler,
// while the binding itself reads the vault only once an hour: one password sign-in for
// several token lifetimes.
func TestRefreshableSessionIsKeptAlive(t *testing.T) {
	short := devvault.New(&devvault.Data{
		Vaults: map[string]map[string]map[string]string{"acme/payments": {"production": {"A": "1"}}},
		Users:  map[string]string{canaryUser: canaryPassword},
	}, devvault.Options{TokenTTL: 8 * time.Second})
	hs := httptest.NewServer(short)
	defer hs.Close()

	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "ks", "knowledgestack")
	vc.Spec.URL = hs.URL + "/knowledgestack"
	b := bindingFor(ns, "app", "ks", "knowledgestack")
	mustCreate(t, cred, vc, b)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), b.DeepCopy()) })
	waitReason(t, b, kf.ReasonSynced)

	eventually(t, 40*time.Second, "three refreshes", func() (bool, string) {
		n := short.Count("knowledgestack.refresh")
		return n >= 3, ""
	})
	if n := short.Count("knowledgestack.signin"); n != 1 {
		t.Fatalf("sign-ins = %d over three token lifetimes, want 1 (refresh, not a new sign-in)", n)
	}
	if n := short.Count("knowledgestack.secrets"); n != 1 {
		t.Fatalf("pulls = %d, want 1: the refreshes must not come from bindings", n)
	}
	if got := providerRequests(t, "VaultConnection/"+ns+"/ks", "refresh"); got < 3 {
		t.Fatalf("keyferry_provider_requests_total{op=refresh} = %v, want >= 3", got)
	}
	got := waitConnReason(t, &kf.VaultConnection{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ks"}}, kf.ReasonAuthenticated)
	if got.Status.TokenExpiresAt == nil || time.Until(got.Status.TokenExpiresAt.Time) < -time.Second {
		t.Fatalf("tokenExpiresAt %v is not the refreshed token's", got.Status.TokenExpiresAt)
	}
}
