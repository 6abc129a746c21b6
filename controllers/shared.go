package controllers

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
)

// Helpers both reconcilers use.

// connectionID keys a connection's client in the registry.
func connectionID(kind kf.ConnectionKind, namespace, name string) string {
	if kind == kf.ConnectionKindCluster {
		return string(kind) + "/" + name
	}
	return string(kind) + "/" + namespace + "/" + name
}

// connectionIDOf is connectionID for a connection object.
func connectionIDOf(c kf.Connection) string {
	return connectionID(c.ConnectionKind(), c.GetNamespace(), c.GetName())
}

// setCondition sets c, keeping lastTransitionTime when the status did not change.
func setCondition(conds *[]metav1.Condition, c metav1.Condition, now time.Time) {
	c.LastTransitionTime = metav1.NewTime(now)
	meta.SetStatusCondition(conds, c)
}

func timePtr(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t.Truncate(time.Second))
	return &mt
}

// readyOf returns the Ready condition, or nil.
func readyOf(conds []metav1.Condition) *metav1.Condition {
	return meta.FindStatusCondition(conds, kf.ConditionReady)
}

// isReady says whether the Ready condition is True.
func isReady(conds []metav1.Condition) bool {
	r := readyOf(conds)
	return r != nil && r.Status == metav1.ConditionTrue
}

// setProgress keeps kstatus' abnormal-true conditions in step with Ready: Stalled while
// only a change can help, Reconciling while keyferry works or waits, neither once Ready.
// Both are removed rather than set False, as kstatus recommends.
func setProgress(conds *[]metav1.Condition, ready metav1.Condition, isStalled bool, now time.Time) {
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
	setCondition(conds, metav1.Condition{Type: set, Status: metav1.ConditionTrue, Reason: ready.Reason,
		Message: ready.Message, ObservedGeneration: ready.ObservedGeneration}, now)
}

// deletionPredicate passes updates that mark an object for deletion.
func deletionPredicate() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return !e.ObjectNew.GetDeletionTimestamp().IsZero()
	}}
}

// readinessChanged passes connection updates that change its Ready status or reason or
// its spec (what it lends), and deletions.
func readinessChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return true },
		DeleteFunc: func(event.DeleteEvent) bool { return true },
		UpdateFunc: func(e event.UpdateEvent) bool {
			if !e.ObjectNew.GetDeletionTimestamp().IsZero() {
				return true
			}
			return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() || readyKey(e.ObjectOld) != readyKey(e.ObjectNew)
		},
	}
}

func readyKey(o client.Object) string {
	c, ok := o.(kf.Connection)
	if !ok {
		return ""
	}
	if r := readyOf(c.ConnectionStatus().Conditions); r != nil {
		return string(r.Status) + "/" + r.Reason
	}
	return ""
}
