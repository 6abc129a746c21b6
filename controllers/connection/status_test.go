package connection

import (
	"testing"
	"time"

	"github.com/keyferry/keyferry/controllers/conditions"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1beta1"
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

// After a restart no request has been made yet: a connection whose credentials the
// provider accepted before (and that did not change since) stays Ready; one whose
// credential Secret changed after that says it will verify them.
func TestRestartKeepsAnAcceptedConnectionReady(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	accepted := metav1.Condition{Type: kf.ConditionReady, Status: metav1.ConditionTrue, Reason: kf.ReasonAuthenticated,
		Message: "the provider accepted the credentials", ObservedGeneration: 2, LastTransitionTime: metav1.NewTime(t0)}
	prev := kf.VaultConnectionStatus{ObservedGeneration: 2, Conditions: []metav1.Condition{accepted}}
	for _, tc := range []struct {
		name      string
		changedAt time.Time
		gen       int64
		want      metav1.ConditionStatus
	}{
		{"credentials unchanged since accepted", t0.Add(-time.Hour), 2, metav1.ConditionTrue},
		{"credential Secret changed after", t0.Add(time.Minute), 2, metav1.ConditionUnknown},
		{"a new generation", t0.Add(-time.Hour), 3, metav1.ConditionUnknown},
	} {
		st := computeConnectionStatus(prev, connectionObservation{generation: tc.gen, now: t0.Add(time.Hour),
			credential: credentialFacts{known: true, changedAt: tc.changedAt}})
		r := meta.FindStatusCondition(st.Conditions, kf.ConditionReady)
		if r.Status != tc.want {
			t.Errorf("%s: Ready %s (%s), want %s", tc.name, r.Status, r.Reason, tc.want)
		}
		if tc.want == metav1.ConditionTrue && !r.LastTransitionTime.Equal(&accepted.LastTransitionTime) {
			t.Errorf("%s: lastTransitionTime moved to %v", tc.name, r.LastTransitionTime)
		}
	}
}
