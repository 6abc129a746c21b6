// Package consumers knows the workloads that consume keyferry's Secrets: the kinds keyferry
// restarts, their pod templates, an index of opted-in workloads by the Secrets they read,
// and what a binding's status says of them (how many read its Secret, when keyferry last
// restarted one). The workload reconciler restarts them; the binding reconciler reports
// them; neither writes the other's objects.
package consumers

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/rollout"
)

// Kinds are the kinds keyferry restarts, as the metric and events name them.
var Kinds = []string{"Deployment", "StatefulSet", "DaemonSet"}

// secretIndex indexes opted-in workloads by the names of the Secrets their pod template
// reads.
const secretIndex = "keyferry.consumedSecrets"

// New returns an empty workload of kind.
func New(kind string) client.Object {
	switch kind {
	case "StatefulSet":
		return &appsv1.StatefulSet{}
	case "DaemonSet":
		return &appsv1.DaemonSet{}
	}
	return &appsv1.Deployment{}
}

// NewList returns an empty list of workloads of kind.
func NewList(kind string) client.ObjectList {
	switch kind {
	case "StatefulSet":
		return &appsv1.StatefulSetList{}
	case "DaemonSet":
		return &appsv1.DaemonSetList{}
	}
	return &appsv1.DeploymentList{}
}

// PodTemplate is the workload's pod template (nil for another kind).
func PodTemplate(o client.Object) *corev1.PodTemplateSpec {
	switch w := o.(type) {
	case *appsv1.StatefulSet:
		return &w.Spec.Template
	case *appsv1.DaemonSet:
		return &w.Spec.Template
	case *appsv1.Deployment:
		return &w.Spec.Template
	}
	return nil
}

// ReadSecrets are the names of the Secrets w's pod template reads.
func ReadSecrets(w client.Object) []string {
	t := PodTemplate(w)
	if t == nil {
		return nil
	}
	consumed := rollout.Consumed(&t.Spec)
	names := make([]string, 0, len(consumed))
	for name := range consumed {
		names = append(names, name)
	}
	return names
}

// Index registers, once per manager, the index of workloads by the Secrets they read.
func Index(mgr ctrl.Manager) error {
	for _, kind := range Kinds {
		if err := mgr.GetFieldIndexer().IndexField(context.Background(), New(kind), secretIndex, ReadSecrets); err != nil {
			return err
		}
	}
	return nil
}

// Reading lists the opted-in workloads of kind in namespace whose pod template reads
// Secret secret (through the index: the cache holds opted-in workloads only).
func Reading(ctx context.Context, c client.Reader, kind, namespace, secret string) ([]client.Object, error) {
	list := NewList(kind)
	if err := c.List(ctx, list, client.InNamespace(namespace), client.MatchingFields{secretIndex: secret}); err != nil {
		return nil, err
	}
	var out []client.Object
	err := meta.EachListItem(list, func(o runtime.Object) error {
		out = append(out, o.(client.Object))
		return nil
	})
	return out, err
}

// Report is what a binding's status says of the workloads reading its Secret.
type Report struct {
	// Count is how many opted-in workloads, of every kind, read the Secret.
	Count int32
	// LastRestart is the latest restart keyferry recorded on one of them (zero if none).
	LastRestart time.Time
}

// Of reports on the opted-in workloads of namespace that read secret.
func Of(ctx context.Context, c client.Reader, namespace, secret string) (Report, error) {
	var rep Report
	for _, kind := range Kinds {
		ws, err := Reading(ctx, c, kind, namespace, secret)
		if err != nil {
			return rep, err
		}
		for _, w := range ws {
			if w.GetLabels()[kf.LabelRestartOnChange] != "true" {
				continue
			}
			rep.Count++
			if at, err := time.Parse(time.RFC3339, w.GetAnnotations()[kf.AnnotationRestartedAt]); err == nil && at.After(rep.LastRestart) {
				rep.LastRestart = at
			}
		}
	}
	return rep, nil
}

// Apply puts the report into a binding's status: the count as it is now, the last
// restart never moving back (a deleted workload does not undo a restart).
func (rep Report) Apply(st *kf.SecretBindingStatus) {
	st.Consumers = rep.Count
	if rep.LastRestart.IsZero() {
		return
	}
	at := metav1.NewTime(rep.LastRestart.Truncate(time.Second))
	if st.LastRestartTime == nil || at.After(st.LastRestartTime.Time) {
		st.LastRestartTime = &at
	}
}
