package controllers

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
)

// syncOutcome is what one pass over a binding did.
type syncOutcome struct {
	now        time.Time
	generation int64
	// refresh is the value of the refresh annotation handled in this pass ("" if none).
	refresh string
	// skipped: nothing was due; status stays as it is.
	skipped bool
	// wrote: the Secret was written in this pass.
	wrote    bool
	keys     int32
	nextSync time.Time
	err      *conditionError
}

// permanent reasons need a change of spec, credentials or target to go away: the
// generation counts as handled.
var permanent = map[string]bool{
	kf.ReasonInvalidSpec: true, kf.ReasonTargetConflict: true, kf.ReasonTooLarge: true,
	kf.ReasonNotFound: true, kf.ReasonForbidden: true, kf.ReasonInvalidResponse: true,
}

// computeBindingStatus derives the binding's status from a pass, apart from the actions.
// A pass that found nothing new returns prev unchanged: steady state writes nothing.
func computeBindingStatus(prev kf.SecretBindingStatus, o syncOutcome) kf.SecretBindingStatus {
	if o.skipped {
		return prev
	}
	if o.err == nil {
		old := readyOf(prev.Conditions)
		steady := !o.wrote && o.refresh == "" && old != nil && old.Status == metav1.ConditionTrue &&
			old.Reason == kf.ReasonSynced && prev.ObservedGeneration == o.generation && prev.SyncedKeys == o.keys
		if steady {
			return prev
		}
	}
	st := *prev.DeepCopy()
	if o.refresh != "" {
		st.LastHandledRefresh = o.refresh
	}
	cond := metav1.Condition{Type: kf.ConditionReady, ObservedGeneration: o.generation}
	if o.err == nil {
		cond.Status, cond.Reason = metav1.ConditionTrue, kf.ReasonSynced
		cond.Message = fmt.Sprintf("%d keys synced", o.keys)
		st.ObservedGeneration = o.generation
		st.SyncedKeys = o.keys
		st.RetryAfter = nil
		st.NextSyncTime = timePtr(o.nextSync)
		st.LastSyncTime = timePtr(o.now)
	} else {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, o.err.Reason, o.err.Message
		if permanent[o.err.Reason] {
			st.ObservedGeneration = o.generation
		}
		st.RetryAfter = nil
		if !o.err.RetryAt.IsZero() {
			st.RetryAfter = timePtr(o.err.RetryAt)
		}
		st.NextSyncTime = timePtr(o.nextSync)
	}
	setCondition(&st.Conditions, cond, o.now)
	return st
}
