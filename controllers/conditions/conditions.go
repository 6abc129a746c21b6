// Package conditions is how every keyferry reconciler says what happened: kstatus
// conditions (Ready, Reconciling, Stalled), the error taxonomy that decides a failure's
// reason and whether it is retried (taxonomy.go), and the Event on a Ready transition.
package conditions

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// SetCondition sets c, keeping lastTransitionTime when the status did not change.
func SetCondition(conds *[]metav1.Condition, c metav1.Condition, now time.Time) {
	c.LastTransitionTime = metav1.NewTime(now)
	meta.SetStatusCondition(conds, c)
}

// TimePtr is t as a status time, to the second.
func TimePtr(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t.Truncate(time.Second))
	return &mt
}

// ReadyOf returns the Ready condition, or nil.
func ReadyOf(conds []metav1.Condition) *metav1.Condition {
	return meta.FindStatusCondition(conds, kf.ConditionReady)
}

// IsReady says whether the Ready condition is True.
func IsReady(conds []metav1.Condition) bool {
	r := ReadyOf(conds)
	return r != nil && r.Status == metav1.ConditionTrue
}

// SetProgress keeps kstatus' abnormal-true conditions in step with Ready: Stalled while
// only a change can help, Reconciling while keyferry works or waits, neither once Ready.
// Both are removed rather than set False, as kstatus recommends.
func SetProgress(conds *[]metav1.Condition, ready metav1.Condition, isStalled bool, now time.Time) {
	set, drop := kf.ConditionReconciling, kf.ConditionStalled
	switch {
	case ready.Status == metav1.ConditionTrue:
		meta.RemoveStatusCondition(conds, kf.ConditionReconciling)
		meta.RemoveStatusCondition(conds, kf.ConditionStalled)
		return
	case isStalled:
		set, drop = kf.ConditionStalled, kf.ConditionReconciling
	}
	meta.RemoveStatusCondition(conds, drop)
	SetCondition(conds, metav1.Condition{Type: set, Status: metav1.ConditionTrue, Reason: ready.Reason,
		Message: ready.Message, ObservedGeneration: ready.ObservedGeneration}, now)
}
