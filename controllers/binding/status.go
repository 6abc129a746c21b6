package binding

import (
	"fmt"
	"time"

	"github.com/keyferry/keyferry/controllers/conditions"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/backoff"
)

const (
	// clientPendingRetry is how soon a binding looks again at a connection whose client
	// is still being built.
	clientPendingRetry = time.Second
	// fetchBackstop is when a binding waiting for a background fetch looks again if it
	// was not woken (it always is, when the fetch ends).
	fetchBackstop = 5 * time.Minute
	// slowFetch is how long a binding waits for the vault's answer before its status says
	// so (Reconciling): a fast answer costs no status write of its own.
	slowFetch = 3 * time.Second
	// jitterFraction spreads refreshes over ±10% of the interval.
	jitterFraction = 0.1
	// retrySpread spreads bindings released by one Retry-After, so they do not all
	// come back in the same second.
	retrySpread = 5 * time.Second
)

// syncOutcome is what one pass over a binding did.
type syncOutcome struct {
	generation int64
	policy     kf.RefreshPolicy
	// refresh is the value of the refresh annotation handled in this pass ("" if none).
	refresh string
	// skipped: nothing was due; planned (the next sync already planned) stands and the
	// status stays as it is.
	skipped bool
	planned time.Time
	// pending: the connection's client is not built yet; look again shortly, quietly.
	pending bool
	// held: the connection is suspended; nothing happens and status stays.
	held bool
	// kept: refreshPolicy CreatedOnce found the Secret it wrote and left it (keys counts
	// what it holds); nothing was read from the vault.
	kept bool
	// fetching: the vault's answer is on its way (a background fetch); the binding is
	// woken when it arrives. Nothing changes until then, unless the answer is slow (the
	// binding has waited since waitingSince, at least slowFetch): then Reconciling says so.
	fetching       bool
	waitingSince   time.Time
	requestTimeout *metav1.Duration
	// wrote: the Secret was written in this pass; keys is how many it holds.
	wrote bool
	keys  int32
	// certNotAfter is when a kubernetes.io/tls Secret's certificate expires (zero for other
	// types); sources counts the keys per source (only with spec.sources).
	certNotAfter time.Time
	sources      []kf.SourceStatus
	// fetchedAt is when the data was read from the vault (a shared snapshot may be a
	// little older than the pass).
	fetchedAt time.Time
	err       *conditions.ConditionError
	// spread is a random draw in [0,1) that jitters the schedule.
	spread float64
}

// waitingStatus is prev with Reconciling saying the vault's answer is slow; Ready (the
// last outcome, and the last good Secret) stands.
func waitingStatus(prev kf.SecretBindingStatus, o syncOutcome, now time.Time) kf.SecretBindingStatus {
	timeout := "the connection's requestTimeout"
	if o.requestTimeout != nil {
		timeout = "requestTimeout " + o.requestTimeout.Duration.String()
	}
	st := *prev.DeepCopy()
	conditions.SetCondition(&st.Conditions, metav1.Condition{Type: kf.ConditionReconciling, Status: metav1.ConditionTrue,
		Reason: kf.ReasonProgressing, ObservedGeneration: o.generation,
		Message: fmt.Sprintf("waiting for the vault's answer since %s (%s)", o.waitingSince.UTC().Format(time.RFC3339), timeout)}, now)
	return st
}

// acted says the pass reached an outcome: not skipped as not due, not waiting for the
// connection's client or for the vault's answer.
func (o syncOutcome) acted() bool { return !o.skipped && !o.pending && !o.fetching && !o.held }

// failed returns o with err as its failure when err is about the binding; any other
// error (API server trouble) is returned for the controller's backoff.
func (o syncOutcome) failed(err error) (syncOutcome, error) {
	ce, ok := conditions.AsConditionError(err)
	if !ok {
		return o, err
	}
	o.err = ce
	return o, nil
}

// nextSync is the one schedule of a binding: when to look at it again after a pass with
// outcome o, its failures-th consecutive failure (0 after a success), at now. Zero means
// never on a schedule: a success under refreshPolicy OnChange or CreatedOnce (a change of
// spec, the refresh annotation or the Secret brings the binding back).
func nextSync(o syncOutcome, failures int, interval time.Duration, now time.Time) time.Time {
	switch {
	case o.pending:
		return now.Add(clientPendingRetry)
	case o.fetching:
		// The fetch wakes the binding when it ends; this is only a backstop, or the
		// moment to say the answer is slow.
		if notice := o.waitingSince.Add(slowFetch); notice.After(now) {
			return notice
		}
		return now.Add(fetchBackstop)
	case o.skipped:
		return o.planned
	case o.err == nil && o.policy != kf.RefreshPolicyPeriodic && o.policy != "":
		return time.Time{}
	case o.err == nil:
		jitter := time.Duration((2*o.spread - 1) * jitterFraction * float64(interval))
		next := o.fetchedAt.Add(interval + jitter)
		if !next.After(now) {
			next = now.Add(interval)
		}
		return next
	}
	retry := now.Add(min(backoff.Default.After(failures), interval))
	if o.err.Class == conditions.ClassWaiting && !o.err.RetryAt.After(now) {
		// A pause that is already over: go again at once (spread), not after a backoff
		// grown by answers that only repeated the pause.
		return now.Add(max(time.Duration(o.spread*float64(retrySpread)), time.Second))
	}
	if o.err.RetryAt.After(now) {
		// Nothing succeeds before the provider allows it; a waiting failure needs no more.
		at := o.err.RetryAt.Add(time.Duration(o.spread * float64(retrySpread)))
		if o.err.Class == conditions.ClassWaiting || at.After(retry) {
			return at
		}
	}
	return retry
}

// computeBindingStatus derives the binding's status from a pass and its schedule, apart
// from the actions. A pass that found nothing new returns prev unchanged: steady state
// writes nothing.
func computeBindingStatus(prev kf.SecretBindingStatus, o syncOutcome, next, now time.Time) kf.SecretBindingStatus {
	// A pending pass (the connection's client is not built yet) or one whose answer is
	// still on its way writes nothing: a new
	// binding already reads as in progress (the CRD defaults status.observedGeneration to
	// 0), and at start-up thousands of bindings wait a moment for their clients.
	if o.fetching && now.Sub(o.waitingSince) >= slowFetch {
		return waitingStatus(prev, o, now)
	}
	if !o.acted() {
		return prev
	}
	if o.err == nil {
		old := conditions.ReadyOf(prev.Conditions)
		steady := !o.wrote && o.refresh == "" && old != nil && old.Status == metav1.ConditionTrue &&
			old.Reason == kf.ReasonSynced && prev.ObservedGeneration == o.generation && prev.SyncedKeys == o.keys &&
			meta.FindStatusCondition(prev.Conditions, kf.ConditionReconciling) == nil &&
			sameTime(prev.CertificateNotAfter, o.certNotAfter) && equality.Semantic.DeepEqual(prev.Sources, o.sources)
		if steady {
			return prev
		}
	}
	st := *prev.DeepCopy()
	if o.refresh != "" {
		st.LastHandledRefresh = o.refresh
	}
	st.RetryAfter = nil
	st.NextSyncTime = nil
	if !next.IsZero() {
		st.NextSyncTime = conditions.TimePtr(next)
	}
	cond := metav1.Condition{Type: kf.ConditionReady, ObservedGeneration: o.generation}
	if o.err == nil {
		cond.Status, cond.Reason = metav1.ConditionTrue, kf.ReasonSynced
		cond.Message = fmt.Sprintf("%d keys synced", o.keys)
		st.ObservedGeneration = o.generation
		st.SyncedKeys = o.keys
		if !o.kept {
			st.Sources = o.sources
			st.CertificateNotAfter = nil
			if !o.certNotAfter.IsZero() {
				st.CertificateNotAfter = conditions.TimePtr(o.certNotAfter)
			}
		}
		if o.kept {
			// Nothing was read: lastSyncTime stays when the Secret was written.
			cond.Message = fmt.Sprintf("%d keys written once (refreshPolicy CreatedOnce): the Secret exists and is not updated", o.keys)
		} else {
			st.LastSyncTime = conditions.TimePtr(now)
		}
	} else {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, o.err.Reason, o.err.Message
		if o.err.Class == conditions.ClassStalled {
			// Only a change can help: this generation has been handled.
			st.ObservedGeneration = o.generation
		}
		if !o.err.RetryAt.IsZero() {
			st.RetryAfter = conditions.TimePtr(o.err.RetryAt)
		}
	}
	conditions.SetCondition(&st.Conditions, cond, now)
	conditions.SetProgress(&st.Conditions, cond, o.err != nil && o.err.Class == conditions.ClassStalled, now)
	return st
}

// sameTime says status time t holds at (to the second, as status keeps it; nil is zero).
func sameTime(t *metav1.Time, at time.Time) bool {
	if t == nil {
		return at.IsZero()
	}
	return t.Time.Equal(at.Truncate(time.Second))
}
