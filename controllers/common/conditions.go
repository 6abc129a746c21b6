// Package common is what keyferry's reconcilers share: condition helpers (kstatus), the
// error taxonomy, Events on Ready transitions, predicates, and the namespace-fair work
// queue with its waker.
package common

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
)

// Helpers both reconcilers use.

// ConnectionID keys a connection's client in the registry.
func ConnectionID(kind kf.ConnectionKind, namespace, name string) string {
	if kind == kf.ConnectionKindCluster {
		return string(kind) + "/" + name
	}
	return string(kind) + "/" + namespace + "/" + name
}

// ConnectionIDOf is connectionID for a connection object.
func ConnectionIDOf(c kf.Connection) string {
	return ConnectionID(c.ConnectionKind(), c.GetNamespace(), c.GetName())
}

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

// DeletionPredicate passes updates that mark an object for deletion.
func DeletionPredicate() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return !e.ObjectNew.GetDeletionTimestamp().IsZero()
	}}
}

// ReadinessChanged passes connection updates that change its Ready status or reason or
// its spec (what it lends), and deletions.
func ReadinessChanged() predicate.Predicate {
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
	if r := ReadyOf(c.ConnectionStatus().Conditions); r != nil {
		return string(r.Status) + "/" + r.Reason
	}
	return ""
}

// LabelValue is an object's name as a label value (at most 63 characters): the name, or
// for a longer one its start and a hash of the whole.
func LabelValue(name string) string {
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:50] + "-" + hex.EncodeToString(sum[:])[:12]
}
