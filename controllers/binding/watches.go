package binding

import (
	"context"

	"github.com/keyferry/keyferry/controllers/queue"

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

	"slices"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/consumers"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// connectionRefIndex indexes bindings by the connection they use ("Kind/name");
// templateFromIndex by the ConfigMaps they read templates from.
const (
	connectionRefIndex = "spec.connectionRef"
	templateFromIndex  = "spec.target.templateFrom"
)

func connectionRefKey(kind kf.ConnectionKind, name string) string { return string(kind) + "/" + name }

// SetupWithManager registers the reconciler, its index and its watches: bindings, the
// managed Secrets (drift), the template ConfigMaps (their own label-selected cache), the
// opted-in workloads reading the Secrets (status.consumers), and connections whose
// readiness changes. consumers.Index must be registered.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, templateConfigMaps cache.Cache) error {
	r.target = secretWriter{client: r.Client, cache: r.Secrets, live: r.APIReader, hmacKey: r.HMACKey,
		own: queue.NewOwnWrites(), wake: r.waker.Wake}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &kf.SecretBinding{}, connectionRefIndex,
		func(o client.Object) []string {
			ref := o.(*kf.SecretBinding).Spec.ConnectionRef
			return []string{connectionRefKey(ref.GetKind(), ref.Name)}
		}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &kf.SecretBinding{}, templateFromIndex,
		func(o client.Object) []string { return templateConfigMapNames(o.(*kf.SecretBinding)) }); err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("secretbinding").
		For(&kf.SecretBinding{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, queue.DeletionPredicate()))).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(secretToBinding), builder.WithPredicates(r.target.own.Predicate())).
		WatchesRawSource(r.waker.Source()).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Workers, 1), NewQueue: queue.NamespaceFair})
	if templateConfigMaps != nil {
		// A template ConfigMap's change re-renders its bindings' Secrets.
		b = b.WatchesRawSource(source.Kind(templateConfigMaps, client.Object(&corev1.ConfigMap{}),
			handler.EnqueueRequestsFromMapFunc(r.configMapToBindings)))
	}
	for _, kind := range consumers.Kinds {
		// A workload that starts or stops reading a Secret, or that keyferry restarted,
		// changes the status of the binding writing it.
		b = b.Watches(consumers.New(kind), handler.EnqueueRequestsFromMapFunc(r.workloadToBindings),
			builder.WithPredicates(consumptionChanged()))
	}
	for _, kind := range []kf.ConnectionKind{kf.ConnectionKindNamespaced, kf.ConnectionKindCluster} {
		b = b.Watches(kf.NewConnection(kind, "", ""), handler.EnqueueRequestsFromMapFunc(r.connectionToBindings(kind)),
			builder.WithPredicates(queue.ReadinessChanged()))
		if ch := r.ClientReady[kind]; ch != nil {
			b = b.WatchesRawSource(source.Channel(ch, handler.EnqueueRequestsFromMapFunc(r.connectionToBindings(kind))))
		}
	}
	return b.Complete(r)
}

// secretToBinding maps a managed Secret to the binding that writes it.
func secretToBinding(_ context.Context, o client.Object) []ctrl.Request {
	name := o.GetAnnotations()[kf.AnnotationBinding]
	if name == "" {
		name = o.GetLabels()[kf.LabelBinding]
	}
	if name == "" {
		return nil
	}
	return []ctrl.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

// connectionToBindings maps a connection to the bindings that use it (through the index).
func (r *Reconciler) connectionToBindings(kind kf.ConnectionKind) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []ctrl.Request {
		list := &kf.SecretBindingList{}
		opts := []client.ListOption{client.MatchingFields{connectionRefIndex: connectionRefKey(kind, o.GetName())}}
		if kind == kf.ConnectionKindNamespaced {
			opts = append(opts, client.InNamespace(o.GetNamespace()))
		}
		if err := r.Client.List(ctx, list, opts...); err != nil {
			return nil
		}
		return queue.Requests(list)
	}
}

// workloadToBindings maps an opted-in workload to the bindings writing the Secrets it reads.
func (r *Reconciler) workloadToBindings(ctx context.Context, w client.Object) []ctrl.Request {
	var reqs []ctrl.Request
	for _, name := range consumers.ReadSecrets(w) {
		s := &corev1.Secret{}
		if err := r.Secrets.Get(ctx, types.NamespacedName{Namespace: w.GetNamespace(), Name: name}, s); err != nil {
			continue // not a managed Secret
		}
		reqs = append(reqs, secretToBinding(ctx, s)...)
	}
	return reqs
}

// consumptionChanged passes workload events that can change a binding's consumers or
// lastRestartTime: creation, deletion (the cache holds opted-in workloads only, so
// opting out is a deletion), a change of the Secrets read, a restart by keyferry.
func consumptionChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		if e.ObjectOld.GetAnnotations()[kf.AnnotationRestartedAt] != e.ObjectNew.GetAnnotations()[kf.AnnotationRestartedAt] {
			return true
		}
		old, now := consumers.ReadSecrets(e.ObjectOld), consumers.ReadSecrets(e.ObjectNew)
		slices.Sort(old)
		slices.Sort(now)
		return !slices.Equal(old, now)
	}}
}

// configMapToBindings maps a template ConfigMap to the bindings of its namespace that read it.
func (r *Reconciler) configMapToBindings(ctx context.Context, cm client.Object) []ctrl.Request {
	list := &kf.SecretBindingList{}
	if err := r.Client.List(ctx, list, client.InNamespace(cm.GetNamespace()), client.MatchingFields{templateFromIndex: cm.GetName()}); err != nil {
		return nil
	}
	return queue.Requests(list)
}
