package connection

import (
	"testing"
	"time"

	"github.com/keyferry/keyferry/controllers/conditions"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/vault"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func TestConnectionRequeue(t *testing.T) {
	r := &Reconciler{PollInterval: 10 * time.Second}
	for _, tc := range []struct {
		name string
		obs  connectionObservation
		want time.Duration
	}{
		{"nothing sooner: the credentials poll", connectionObservation{now: t0}, 10 * time.Second},
		{"a refreshable session due in 3s", connectionObservation{now: t0, token: vault.TokenInfo{RenewAt: t0.Add(3 * time.Second)}}, 3 * time.Second},
		{"a refreshable session overdue: at once (1s floor)", connectionObservation{now: t0, token: vault.TokenInfo{RenewAt: t0.Add(-time.Minute)}}, time.Second},
		{"a session due after the poll", connectionObservation{now: t0, token: vault.TokenInfo{RenewAt: t0.Add(time.Hour)}}, 10 * time.Second},
		{"a pause ending in 4s", connectionObservation{now: t0, pause: &vault.Error{RetryAt: t0.Add(4 * time.Second)}}, 5 * time.Second},
	} {
		if got := r.requeueAfter(tc.obs); got != tc.want {
			t.Errorf("%s: requeueAfter = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestConnectionStatusShowsThePauseCause(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pause  *vault.Error
		reason string
		msg    string
	}{
		{"503 with Retry-After", &vault.Error{Reason: vault.ReasonProviderUnavailable, Op: "pull", StatusCode: 503,
			RetryAfter: 30 * time.Second, Message: "Down for maintenance", Held: true, RetryAt: t0.Add(30 * time.Second)},
			kf.ReasonProviderUnavailable, "pull: HTTP 503 with retry-after 30s: Down for maintenance"},
		{"keyway over limit", &vault.Error{Reason: vault.ReasonRateLimited, Op: "pull", StatusCode: 500,
			RetryAfter: 873 * time.Second, Message: "Rate limit exceeded", Held: true, RetryAt: t0.Add(873 * time.Second)},
			kf.ReasonRateLimited, "pull: HTTP 500 with retry-after 873s: Rate limit exceeded"},
	} {
		st := computeConnectionStatus(kf.VaultConnectionStatus{}, connectionObservation{generation: 1, now: t0, pause: tc.pause})
		ready := conditions.ReadyOf(st.Conditions)
		if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != tc.reason || ready.Message != tc.msg {
			t.Errorf("%s: Ready %+v, want %s %q", tc.name, ready, tc.reason, tc.msg)
		}
		if st.RetryAfter == nil || !st.RetryAfter.Time.Equal(tc.pause.RetryAt) {
			t.Errorf("%s: retryAfter %v", tc.name, st.RetryAfter)
		}
	}
}
