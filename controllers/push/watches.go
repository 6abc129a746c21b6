package push

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/keyferry/keyferry/controllers/queue"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

const (
	// sourceIndex indexes SecretPushes by their source Secret's name.
	sourceIndex = "spec.source.name"
	// connectionIndex indexes SecretPushes by their connection ("Kind/name").
	connectionIndex = "spec.connectionRef"
)

// SetupWithManager registers the reconciler and its watches: SecretPushes, their source
// Secrets (through sources, the cache of Secrets labelled keyferry.dev/push=true, so a
// change is pushed within seconds), and connections whose readiness or spec changes.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, sources cache.Cache) error {
	r.jobs = newJobs()
	r.checks = map[types.NamespacedName]checkState{}
	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(context.Background(), &kf.SecretPush{}, sourceIndex, func(o client.Object) []string {
		return []string{o.(*kf.SecretPush).Spec.Source.Name}
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(context.Background(), &kf.SecretPush{}, connectionIndex, func(o client.Object) []string {
		ref := o.(*kf.SecretPush).Spec.ConnectionRef
		return []string{string(ref.GetKind()) + "/" + ref.Name}
	}); err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("secretpush").
		For(&kf.SecretPush{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, queue.DeletionPredicate()))).
		WatchesRawSource(source.Kind(sources, client.Object(&corev1.Secret{}), handler.EnqueueRequestsFromMapFunc(r.sourceToPushes))).
		WatchesRawSource(r.waker.Source()).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Workers, 1), NewQueue: queue.NamespaceFair})
	for _, kind := range []kf.ConnectionKind{kf.ConnectionKindNamespaced, kf.ConnectionKindCluster} {
		b = b.Watches(kf.NewConnection(kind, "", ""), handler.EnqueueRequestsFromMapFunc(r.connectionToPushes(kind)),
			builder.WithPredicates(queue.ReadinessChanged()))
	}
	return b.Complete(r)
}

// sourceToPushes maps a source Secret to the SecretPushes of its namespace that push it.
func (r *Reconciler) sourceToPushes(ctx context.Context, s client.Object) []ctrl.Request {
	return r.list(ctx, client.InNamespace(s.GetNamespace()), client.MatchingFields{sourceIndex: s.GetName()})
}

// connectionToPushes maps a connection to the SecretPushes that use it.
func (r *Reconciler) connectionToPushes(kind kf.ConnectionKind) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []ctrl.Request {
		opts := []client.ListOption{client.MatchingFields{connectionIndex: string(kind) + "/" + o.GetName()}}
		if kind == kf.ConnectionKindNamespaced {
			opts = append(opts, client.InNamespace(o.GetNamespace()))
		}
		return r.list(ctx, opts...)
	}
}

func (r *Reconciler) list(ctx context.Context, opts ...client.ListOption) []ctrl.Request {
	list := &kf.SecretPushList{}
	if err := r.Client.List(ctx, list, opts...); err != nil {
		return nil
	}
	return queue.Requests(list)
}
