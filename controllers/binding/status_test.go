package binding

import (
	"strings"
	"testing"
	"time"

	"github.com/keyferry/keyferry/controllers/conditions"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func TestNextSync(t *testing.T) {
	const interval = time.Hour
	unavailable := conditions.TransientErr(kf.ReasonProviderUnavailable, "pull: HTTP 502")
	limited := &conditions.ConditionError{Reason: kf.ReasonRateLimited, Class: conditions.ClassWaiting, RetryAt: t0.Add(90 * time.Second)}
	down := &conditions.ConditionError{Reason: kf.ReasonProviderUnavailable, Class: conditions.ClassWaiting, RetryAt: t0.Add(30 * time.Second)}
	unauthorizedSoon := &conditions.ConditionError{Reason: kf.ReasonUnauthorized, Class: conditions.ClassStalled, RetryAt: t0.Add(time.Second)}
	unauthorizedLate := &conditions.ConditionError{Reason: kf.ReasonUnauthorized, Class: conditions.ClassStalled, RetryAt: t0.Add(time.Minute)}
	for _, tc := range []struct {
		name     string
		outcome  syncOutcome
		failures int
		want     time.Time
	}{
		{"client pending: look again in a second", syncOutcome{pending: true}, 0, t0.Add(time.Second)},
		{"not due: the planned time stands", syncOutcome{skipped: true, planned: t0.Add(17 * time.Minute)}, 0, t0.Add(17 * time.Minute)},
		{"success: an interval after the fetch", syncOutcome{fetchedAt: t0.Add(-time.Minute), spread: 0.5}, 0, t0.Add(59 * time.Minute)},
		{"success, lowest jitter: -10%", syncOutcome{fetchedAt: t0, spread: 0}, 0, t0.Add(54 * time.Minute)},
		{"success, jitter three quarters up: +5%", syncOutcome{fetchedAt: t0, spread: 0.75}, 0, t0.Add(63 * time.Minute)},
		{"success from an old snapshot: never in the past", syncOutcome{fetchedAt: t0.Add(-2 * time.Hour), spread: 0.5}, 0, t0.Add(interval)},
		{"first failure backs off 5s", syncOutcome{err: unavailable}, 1, t0.Add(5 * time.Second)},
		{"third failure backs off 20s", syncOutcome{err: unavailable}, 3, t0.Add(20 * time.Second)},
		{"many failures: at most 5m", syncOutcome{err: unavailable}, 40, t0.Add(5 * time.Minute)},
		{"rate limited: at retryAfter, spread", syncOutcome{err: limited, spread: 0.5}, 7, t0.Add(90*time.Second + 2500*time.Millisecond)},
		{"5xx with Retry-After waits for it", syncOutcome{err: down}, 1, t0.Add(30 * time.Second)},
		{"a pause already over: again at once, whatever the failures", syncOutcome{err: &conditions.ConditionError{Reason: kf.ReasonRateLimited, Class: conditions.ClassWaiting, RetryAt: t0.Add(-time.Second)}, spread: 0.5}, 5, t0.Add(2500 * time.Millisecond)},
		{"stalled with a near retryAfter: the backoff is longer", syncOutcome{err: unauthorizedSoon}, 2, t0.Add(10 * time.Second)},
		{"stalled with a far retryAfter: not before it", syncOutcome{err: unauthorizedLate}, 1, t0.Add(time.Minute)},
		{"OnChange success: no schedule", syncOutcome{policy: kf.RefreshPolicyOnChange, fetchedAt: t0}, 0, time.Time{}},
		{"CreatedOnce kept: no schedule", syncOutcome{policy: kf.RefreshPolicyCreatedOnce, kept: true}, 0, time.Time{}},
		{"OnChange failure: retried as ever", syncOutcome{policy: kf.RefreshPolicyOnChange, err: unavailable}, 1, t0.Add(5 * time.Second)},
		{"Periodic spelled out: an interval after the fetch", syncOutcome{policy: kf.RefreshPolicyPeriodic, fetchedAt: t0, spread: 0.5}, 0, t0.Add(interval)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextSync(tc.outcome, tc.failures, interval, t0); !got.Equal(tc.want) {
				t.Errorf("nextSync = %s, want %s", got.Format(time.RFC3339Nano), tc.want.Format(time.RFC3339Nano))
			}
		})
	}
	// Backoff never exceeds a short refresh interval.
	if got := nextSync(syncOutcome{err: unavailable}, 10, 30*time.Second, t0); !got.Equal(t0.Add(30 * time.Second)) {
		t.Errorf("backoff beyond the interval: %s", got)
	}
}

func synced(gen int64, keys int32, since time.Time) kf.SecretBindingStatus {
	return kf.SecretBindingStatus{
		ObservedGeneration: gen, SyncedKeys: keys,
		LastSyncTime: conditions.TimePtr(since), NextSyncTime: conditions.TimePtr(since.Add(time.Hour)),
		Conditions: []metav1.Condition{{Type: kf.ConditionReady, Status: metav1.ConditionTrue, Reason: kf.ReasonSynced,
			Message: "3 keys synced", ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(since)}},
	}
}

func TestComputeBindingStatus(t *testing.T) {
	earlier := t0.Add(-time.Hour)
	next := t0.Add(time.Hour)
	ready := func(status metav1.ConditionStatus, reason, msg string, gen int64, since time.Time) []metav1.Condition {
		return []metav1.Condition{{Type: kf.ConditionReady, Status: status, Reason: reason, Message: msg,
			ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(since)}}
	}
	failedFrom := func(prev kf.SecretBindingStatus, gen int64, reason, msg string, retry *metav1.Time) kf.SecretBindingStatus {
		st := *prev.DeepCopy()
		st.ObservedGeneration = gen
		progress := kf.ConditionReconciling
		if gen == 2 { // the stalled cases handle the generation
			progress = kf.ConditionStalled
		}
		st.Conditions = append(ready(metav1.ConditionFalse, reason, msg, 2, t0), metav1.Condition{Type: progress,
			Status: metav1.ConditionTrue, Reason: reason, Message: msg, ObservedGeneration: 2, LastTransitionTime: metav1.NewTime(t0)})
		st.NextSyncTime = conditions.TimePtr(next)
		st.RetryAfter = retry
		return st
	}
	for _, tc := range []struct {
		name    string
		prev    kf.SecretBindingStatus
		outcome syncOutcome
		want    kf.SecretBindingStatus
	}{
		{"not due: unchanged", synced(1, 3, earlier), syncOutcome{skipped: true, generation: 1}, synced(1, 3, earlier)},
		{"client pending, first pass: unchanged (the CRD default reads InProgress)", kf.SecretBindingStatus{}, syncOutcome{pending: true, generation: 1}, kf.SecretBindingStatus{}},
		{"client pending later: unchanged", synced(1, 3, earlier), syncOutcome{pending: true, generation: 1}, synced(1, 3, earlier)},
		{"steady refresh: unchanged (no write)", synced(1, 3, earlier), syncOutcome{generation: 1, keys: 3}, synced(1, 3, earlier)},
		{"first sync", kf.SecretBindingStatus{}, syncOutcome{generation: 1, keys: 3, wrote: true}, kf.SecretBindingStatus{
			ObservedGeneration: 1, SyncedKeys: 3, LastSyncTime: conditions.TimePtr(t0), NextSyncTime: conditions.TimePtr(next),
			Conditions: ready(metav1.ConditionTrue, kf.ReasonSynced, "3 keys synced", 1, t0)}},
		{"new data keeps the transition time", synced(1, 3, earlier), syncOutcome{generation: 1, keys: 4, wrote: true}, kf.SecretBindingStatus{
			ObservedGeneration: 1, SyncedKeys: 4, LastSyncTime: conditions.TimePtr(t0), NextSyncTime: conditions.TimePtr(next),
			Conditions: ready(metav1.ConditionTrue, kf.ReasonSynced, "4 keys synced", 1, earlier)}},
		{"refresh annotation is echoed even when nothing changed", synced(1, 3, earlier), syncOutcome{generation: 1, keys: 3, refresh: "r1"}, kf.SecretBindingStatus{
			ObservedGeneration: 1, SyncedKeys: 3, LastSyncTime: conditions.TimePtr(t0), NextSyncTime: conditions.TimePtr(next), LastHandledRefresh: "r1",
			Conditions: ready(metav1.ConditionTrue, kf.ReasonSynced, "3 keys synced", 1, earlier)}},
		{"stalled failure handles the generation, keeps the last sync", synced(1, 3, earlier),
			syncOutcome{generation: 2, err: conditions.StalledErr(kf.ReasonForbidden, "pull: HTTP 403: no access")},
			failedFrom(synced(1, 3, earlier), 2, kf.ReasonForbidden, "pull: HTTP 403: no access", nil)},
		{"transient failure leaves the generation unhandled", synced(1, 3, earlier),
			syncOutcome{generation: 2, err: conditions.TransientErr(kf.ReasonProviderUnavailable, "pull: HTTP 502")},
			failedFrom(synced(1, 3, earlier), 1, kf.ReasonProviderUnavailable, "pull: HTTP 502", nil)},
		{"waiting failure shows retryAfter", synced(1, 3, earlier),
			syncOutcome{generation: 2, err: &conditions.ConditionError{Reason: kf.ReasonRateLimited, Class: conditions.ClassWaiting, Message: "pull: HTTP 429", RetryAt: t0.Add(time.Minute)}},
			failedFrom(synced(1, 3, earlier), 1, kf.ReasonRateLimited, "pull: HTTP 429", conditions.TimePtr(t0.Add(time.Minute)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := computeBindingStatus(tc.prev, tc.outcome, next, t0)
			if !equality.Semantic.DeepEqual(got, tc.want) {
				t.Errorf("status\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
	// A success after a failure clears retryAfter and flips Ready with a new transition time.
	prev := failedFrom(synced(1, 3, earlier), 1, kf.ReasonRateLimited, "pull: HTTP 429", conditions.TimePtr(t0))
	got := computeBindingStatus(prev, syncOutcome{generation: 1, keys: 3}, next, t0.Add(time.Minute))
	if got.RetryAfter != nil || !conditions.IsReady(got.Conditions) || !conditions.ReadyOf(got.Conditions).LastTransitionTime.Equal(conditions.TimePtr(t0.Add(time.Minute))) {
		t.Errorf("recovery: %+v", got)
	}
}

func TestPassMemory(t *testing.T) {
	var m passMemory
	key := types.NamespacedName{Namespace: "ns", Name: "b"}
	failed := syncOutcome{err: conditions.TransientErr(kf.ReasonProviderUnavailable, "down")}
	if m.observe(key, failed) != 1 || m.observe(key, failed) != 2 || m.observe(key, syncOutcome{skipped: true}) != 2 {
		t.Fatal("failures are not counted")
	}
	if m.observe(key, syncOutcome{}) != 0 {
		t.Fatal("a success does not reset the failures")
	}
	// A pending pass (no connection client yet) must not use up a refresh.
	m.refreshDone(key, syncOutcome{pending: true, refresh: "r1"})
	if m.refreshHandled(key, "r1") {
		t.Fatal("a pending pass marked the refresh handled: it would never be acted on")
	}
	m.refreshDone(key, syncOutcome{refresh: "r1"})
	if !m.refreshHandled(key, "r1") || m.refreshHandled(key, "r2") || m.refreshHandled(key, "") {
		t.Fatal("handled refresh values are not remembered exactly")
	}
	m.forget(key)
	if m.refreshHandled(key, "r1") {
		t.Fatal("forget keeps the binding")
	}
}

// A binding waiting for a slow answer says so once, after slowFetch, and keeps Ready as it
// was; a fast answer costs no write of its own.
func TestWaitingForASlowAnswer(t *testing.T) {
	prev := synced(3, 2, t0.Add(-time.Hour))
	timeout := &metav1.Duration{Duration: 5 * time.Minute}
	fast := syncOutcome{generation: 3, fetching: true, waitingSince: t0.Add(-time.Second), requestTimeout: timeout}
	if got := computeBindingStatus(prev, fast, t0.Add(time.Hour), t0); !equality.Semantic.DeepEqual(got, prev) {
		t.Fatalf("a fetch in flight for 1s changed the status: %+v", got)
	}
	if next := nextSync(fast, 0, time.Hour, t0); !next.Equal(t0.Add(slowFetch - time.Second)) {
		t.Fatalf("next look %s, want when the answer becomes slow", next)
	}
	slow := fast
	slow.waitingSince = t0.Add(-4 * time.Second)
	got := computeBindingStatus(prev, slow, t0.Add(time.Hour), t0)
	rc := meta.FindStatusCondition(got.Conditions, kf.ConditionReconciling)
	if rc == nil || rc.Status != metav1.ConditionTrue || !strings.Contains(rc.Message, "waiting for the vault's answer since") ||
		!strings.Contains(rc.Message, "requestTimeout 5m0s") {
		t.Fatalf("slow answer: Reconciling %+v", rc)
	}
	if r := conditions.ReadyOf(got.Conditions); r == nil || r.Status != metav1.ConditionTrue {
		t.Fatal("waiting changed Ready: the last good Secret still stands")
	}
	if again := computeBindingStatus(got, slow, t0.Add(time.Hour), t0.Add(time.Minute)); !equality.Semantic.DeepEqual(again, got) {
		t.Fatal("waiting longer rewrites the status")
	}
	if next := nextSync(slow, 0, time.Hour, t0); !next.Equal(t0.Add(fetchBackstop)) {
		t.Fatalf("next look %s, want the backstop", next)
	}
	// The answer arrives, unchanged data: Reconciling goes.
	done := computeBindingStatus(got, syncOutcome{generation: 3, keys: 2, fetchedAt: t0}, t0.Add(time.Hour), t0)
	if meta.FindStatusCondition(done.Conditions, kf.ConditionReconciling) != nil || !conditions.IsReady(done.Conditions) {
		t.Fatalf("after the answer: %+v", done.Conditions)
	}
}

func TestComputeBindingStatusRefreshPolicies(t *testing.T) {
	prev := synced(1, 3, t0.Add(-time.Hour))
	// OnChange: a new generation synced; no next sync is planned.
	st := computeBindingStatus(prev, syncOutcome{generation: 2, policy: kf.RefreshPolicyOnChange, wrote: true, keys: 3, fetchedAt: t0}, time.Time{}, t0)
	if st.NextSyncTime != nil || st.ObservedGeneration != 2 || !st.LastSyncTime.Time.Equal(t0) {
		t.Errorf("OnChange: nextSyncTime %v, observedGeneration %d, lastSyncTime %v", st.NextSyncTime, st.ObservedGeneration, st.LastSyncTime)
	}
	// CreatedOnce keeps the Secret on a new generation: handled, nothing read.
	st = computeBindingStatus(prev, syncOutcome{generation: 2, policy: kf.RefreshPolicyCreatedOnce, kept: true, keys: 3}, time.Time{}, t0)
	ready := conditions.ReadyOf(st.Conditions)
	if st.ObservedGeneration != 2 || ready.Status != metav1.ConditionTrue || !strings.Contains(ready.Message, "CreatedOnce") {
		t.Errorf("CreatedOnce: observedGeneration %d, Ready %+v", st.ObservedGeneration, ready)
	}
	if !st.LastSyncTime.Equal(prev.LastSyncTime) || st.NextSyncTime != nil {
		t.Errorf("CreatedOnce: lastSyncTime %v (was %v), nextSyncTime %v", st.LastSyncTime, prev.LastSyncTime, st.NextSyncTime)
	}
	// Kept again with nothing new: no write.
	if again := computeBindingStatus(st, syncOutcome{generation: 2, policy: kf.RefreshPolicyCreatedOnce, kept: true, keys: 3}, time.Time{}, t0.Add(time.Minute)); !equality.Semantic.DeepEqual(again, st) {
		t.Errorf("a second kept pass changed status: %+v", again)
	}
}
