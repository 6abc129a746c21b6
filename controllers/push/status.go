package push

import (
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyferry/keyferry/controllers/conditions"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/backoff"
	"github.com/keyferry/keyferry/internal/vault"
)

// outcome is what one pass over a SecretPush came to.
type outcome struct {
	generation int64
	refresh    string
	// skipped: nothing due; running: the push is on its way (the object is woken when it
	// ends); pending: the connection's client is not built yet.
	skipped, running, pending bool
	// held: the connection is suspended; nothing happens, status stays.
	held bool
	// result of a finished push (nil before one), or err: a failure found before any
	// request (spec, source, connection).
	result *pushResult
	err    *conditions.ConditionError
}

func (o outcome) acted() bool { return !o.skipped && !o.running && !o.pending && !o.held }

// failure is the outcome's failure as a condition error: the pass's own, the push's
// request error, or a conflict.
func (o outcome) failure() *conditions.ConditionError {
	switch {
	case o.err != nil:
		return o.err
	case o.result == nil:
		return nil
	case o.result.err != nil:
		if ve, ok := vault.AsError(o.result.err); ok {
			return conditions.FromVault(ve)
		}
		return conditions.TransientErr(kf.ReasonProviderUnavailable, "%s", o.result.err.Error())
	case len(o.result.conflicts) > 0:
		return conditions.StalledErr(kf.ReasonConflict, "%s changed in the vault since keyferry pushed %s; left as %s (set conflictPolicy: Overwrite to overwrite, or remove %s from the source)",
			keyList(o.result.conflicts), pronoun(o.result.conflicts, "it", "them"), pronoun(o.result.conflicts, "it is", "they are"), pronoun(o.result.conflicts, "it", "them"))
	}
	return nil
}

func keyList(keys []string) string {
	word := "key"
	if len(keys) > 1 {
		word = "keys"
	}
	return word + " " + strings.Join(keys, ", ")
}

func pronoun(keys []string, one, many string) string {
	if len(keys) == 1 {
		return one
	}
	return many
}

// computeStatus derives the SecretPush's status from a pass, apart from the actions. A
// pass that found nothing new returns prev unchanged.
func computeStatus(prev kf.SecretPushStatus, o outcome, now time.Time) kf.SecretPushStatus {
	if !o.acted() {
		return prev
	}
	st := *prev.DeepCopy()
	if o.refresh != "" {
		st.LastHandledRefresh = o.refresh
	}
	st.RetryAfter = nil
	if r := o.result; r != nil {
		st.Pushed = pushedList(r.pushed)
		st.PushedKeys = int32(len(r.pushed))
		if r.wrote > 0 {
			st.LastPushTime = conditions.TimePtr(now)
		}
	}
	cond := metav1.Condition{Type: kf.ConditionReady, ObservedGeneration: o.generation}
	fail := o.failure()
	if fail == nil {
		cond.Status, cond.Reason = metav1.ConditionTrue, kf.ReasonSynced
		cond.Message = fmt.Sprintf("%d keys in the vault as in the Secret (%d written)", st.PushedKeys, o.result.wrote)
		if n := len(o.result.existing); n > 0 {
			cond.Message += fmt.Sprintf("; %s left as the vault has %s (updatePolicy IfNotExists)", keyList(o.result.existing), pronoun(o.result.existing, "it", "them"))
		}
		st.ObservedGeneration = o.generation
	} else {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, fail.Reason, fail.Message
		if fail.Class == conditions.ClassStalled {
			st.ObservedGeneration = o.generation
		}
		if !fail.RetryAt.IsZero() {
			st.RetryAfter = conditions.TimePtr(fail.RetryAt)
		}
	}
	conditions.SetCondition(&st.Conditions, cond, now)
	conditions.SetProgress(&st.Conditions, cond, fail != nil && fail.Class == conditions.ClassStalled, now)
	return st
}

// pushedList is the status form of the pushed digests, sorted by key.
func pushedList(m map[string]string) []kf.PushedKey {
	if len(m) == 0 {
		return nil
	}
	out := make([]kf.PushedKey, 0, len(m))
	for k, d := range m {
		out = append(out, kf.PushedKey{Key: k, Digest: d})
	}
	slices.SortFunc(out, func(a, b kf.PushedKey) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// pushedMap is the inverse of pushedList.
func pushedMap(l []kf.PushedKey) map[string]string {
	m := make(map[string]string, len(l))
	for _, p := range l {
		m[p.Key] = p.Digest
	}
	return m
}

const (
	clientPendingRetry = time.Second
	pushBackstop       = 5 * time.Minute
	jitterFraction     = 0.1
)

// requeueAfter is when to look again after a pass: the interval (jittered by spread in
// [0,1)) after a success or a conflict, a backoff after the failures-th failure (never
// before the provider allows), a backstop while a push runs.
func requeueAfter(o outcome, failures int, interval time.Duration, spread float64, now time.Time) time.Duration {
	switch {
	case o.pending:
		return clientPendingRetry
	case o.running:
		return pushBackstop
	}
	fail := o.failure()
	if fail == nil || fail.Class == conditions.ClassStalled && fail.Reason == kf.ReasonConflict {
		return interval + time.Duration((2*spread-1)*jitterFraction*float64(interval))
	}
	d := min(backoff.Default.After(failures), interval)
	if wait := fail.RetryAt.Sub(now); wait > d {
		d = wait
	}
	return max(d, time.Second)
}
