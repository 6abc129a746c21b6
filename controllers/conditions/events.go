package conditions

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// RecordTransition emits an Event when Ready changes status or reason, never on a pass
// that changed nothing, so steady refreshes stay silent.
func RecordTransition(rec events.EventRecorder, obj client.Object, prev, next *metav1.Condition) {
	if rec == nil || next == nil {
		return
	}
	if prev != nil && prev.Status == next.Status && prev.Reason == next.Reason {
		return
	}
	if prev == nil && next.Status == metav1.ConditionTrue {
		// A first success says nothing status does not: at scale it would be one more
		// write per object.
		return
	}
	kind := corev1.EventTypeWarning
	if next.Status == metav1.ConditionTrue {
		kind = corev1.EventTypeNormal
	}
	// The message is passed as an argument, never as a format string.
	rec.Eventf(obj, nil, kind, next.Reason, "Sync", "%s", next.Message)
}
