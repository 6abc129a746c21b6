package clusterbinding

import (
	"context"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/keyferry/keyferry/controllers/queue"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// SetupWithManager registers the reconciler and its watches: ClusterSecretBindings (a new
// generation, or the refresh annotation), Namespaces (created, relabelled, terminating,
// deleted: every ClusterSecretBinding looks again) and, through bindings (the cache of
// SecretBindings labelled keyferry.dev/cluster-secret-binding), the bindings each created.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, bindings cache.Cache) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("clustersecretbinding").
		For(&kf.ClusterSecretBinding{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, queue.DeletionPredicate()))).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.everyClusterBinding), builder.WithPredicates(namespaceMembershipChanged())).
		WatchesRawSource(source.Kind(bindings, &kf.SecretBinding{}, ownerAfter(childSettle))).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Workers, 1)}).
		Complete(r)
}

// childSettle gathers the events of a ClusterSecretBinding's bindings (a thousand
// bindings becoming Ready are a thousand events) into one pass of their owner.
const childSettle = 500 * time.Millisecond

// ownerAfter queues a binding's controlling ClusterSecretBinding after delay; events within
// the delay count once (the queue holds a request only once).
func ownerAfter(delay time.Duration) handler.TypedEventHandler[*kf.SecretBinding, ctrl.Request] {
	add := func(b *kf.SecretBinding, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
		if ref := metav1.GetControllerOf(b); ref != nil && ref.Kind == "ClusterSecretBinding" && ref.APIVersion == kf.GroupVersion.String() {
			q.AddAfter(ctrl.Request{NamespacedName: types.NamespacedName{Name: ref.Name}}, delay)
		}
	}
	return handler.TypedFuncs[*kf.SecretBinding, ctrl.Request]{
		CreateFunc: func(_ context.Context, e event.TypedCreateEvent[*kf.SecretBinding], q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			add(e.Object, q)
		},
		UpdateFunc: func(_ context.Context, e event.TypedUpdateEvent[*kf.SecretBinding], q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			add(e.ObjectNew, q)
		},
		DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[*kf.SecretBinding], q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			add(e.Object, q)
		},
	}
}

// everyClusterBinding maps a Namespace to every ClusterSecretBinding: each decides whether
// it selects the namespace (they are few, and a cluster admin's).
func (r *Reconciler) everyClusterBinding(ctx context.Context, _ client.Object) []ctrl.Request {
	list := &kf.ClusterSecretBindingList{}
	if err := r.Client.List(ctx, list); err != nil {
		return nil
	}
	return queue.Requests(list)
}

// namespaceMembershipChanged passes what can change whether a namespace is selected: its
// creation and deletion, its labels, and the start of its termination.
func namespaceMembershipChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			oldNS, okOld := e.ObjectOld.(*corev1.Namespace)
			newNS, okNew := e.ObjectNew.(*corev1.Namespace)
			if !okOld || !okNew {
				return true
			}
			return !maps.Equal(oldNS.Labels, newNS.Labels) || oldNS.Status.Phase != newNS.Status.Phase ||
				oldNS.DeletionTimestamp.IsZero() != newNS.DeletionTimestamp.IsZero()
		},
	}
}
