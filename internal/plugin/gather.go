package plugin

import (
	"context"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/rollout"
)

// selection says which bindings a command is about.
type selection struct {
	namespace  string // "" with allNamespaces
	all        bool
	selector   string
	connection string
	names      []string
}

func (s selection) listOptions() ([]client.ListOption, error) {
	var opts []client.ListOption
	if !s.all {
		opts = append(opts, client.InNamespace(s.namespace))
	}
	if s.selector != "" {
		sel, err := labels.Parse(s.selector)
		if err != nil {
			return nil, fmt.Errorf("-l %q: %w", s.selector, err)
		}
		opts = append(opts, client.MatchingLabelsSelector{Selector: sel})
	}
	return opts, nil
}

// bindings lists the selected bindings, sorted by namespace and name.
func bindings(ctx context.Context, c client.Client, s selection) ([]kf.SecretBinding, error) {
	opts, err := s.listOptions()
	if err != nil {
		return nil, err
	}
	list := &kf.SecretBindingList{}
	if err := c.List(ctx, list, opts...); err != nil {
		return nil, err
	}
	var out []kf.SecretBinding
	for _, b := range list.Items {
		if s.connection != "" && b.Spec.ConnectionRef.Name != s.connection {
			continue
		}
		if len(s.names) > 0 && !slices.Contains(s.names, b.Name) {
			continue
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b kf.SecretBinding) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return out, nil
}

// connectionOf reads a binding's connection; nil when it does not exist.
func connectionOf(ctx context.Context, c client.Client, namespace string, ref kf.ConnectionReference) (kf.Connection, error) {
	conn := kf.NewConnection(ref.GetKind(), namespace, ref.Name)
	if err := c.Get(ctx, client.ObjectKeyFromObject(conn), conn); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return conn, nil
}

// workloadsReading maps "namespace/Secret" to the workloads of the namespaces that read
// it ("Deployment/shop", with " (restarts)" when opted in to restarts).
func workloadsReading(ctx context.Context, c client.Client, namespaces []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, ns := range namespaces {
		for _, list := range []client.ObjectList{&appsv1.DeploymentList{}, &appsv1.StatefulSetList{}, &appsv1.DaemonSetList{}} {
			if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
				if apierrors.IsForbidden(err) {
					continue // the user may not list them: show what can be shown
				}
				return nil, err
			}
			err := meta.EachListItem(list, func(o runtime.Object) error {
				w := o.(client.Object)
				spec := podSpecOf(w)
				if spec == nil {
					return nil
				}
				name := kindOf(w) + "/" + w.GetName()
				if w.GetLabels()[kf.LabelRestartOnChange] == "true" {
					name += " (restarts)"
				}
				for secret := range rollout.Consumed(spec) {
					key := ns + "/" + secret
					out[key] = append(out[key], name)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out, nil
}

func podSpecOf(o client.Object) *corev1.PodSpec {
	switch w := o.(type) {
	case *appsv1.Deployment:
		return &w.Spec.Template.Spec
	case *appsv1.StatefulSet:
		return &w.Spec.Template.Spec
	case *appsv1.DaemonSet:
		return &w.Spec.Template.Spec
	}
	return nil
}

func kindOf(o client.Object) string {
	switch o.(type) {
	case *appsv1.Deployment:
		return "Deployment"
	case *appsv1.StatefulSet:
		return "StatefulSet"
	case *appsv1.DaemonSet:
		return "DaemonSet"
	}
	return "Workload"
}

// events lists the Events about an object, oldest first (at most the last n).
func events(ctx context.Context, c client.Client, obj client.Object, kind string, n int) ([]corev1.Event, error) {
	list := &corev1.EventList{}
	ns := obj.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	err := c.List(ctx, list, client.InNamespace(ns))
	if apierrors.IsForbidden(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == obj.GetName() && (e.InvolvedObject.UID == "" || e.InvolvedObject.UID == obj.GetUID()) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b corev1.Event) int { return eventTime(a).Compare(eventTime(b).Time) })
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}

func eventTime(e corev1.Event) metav1.Time {
	switch {
	case !e.EventTime.IsZero():
		return metav1.Time{Time: e.EventTime.Time}
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp
	}
	return e.CreationTimestamp
}

// targetKey is "namespace/name" of a binding's Secret.
func targetKey(b *kf.SecretBinding) string {
	return types.NamespacedName{Namespace: b.Namespace, Name: b.GetTargetName()}.String()
}
