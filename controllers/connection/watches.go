package connection

import (
	"context"
	"strings"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/queue"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.init()
	obj := kf.NewConnection(r.Kind, "", "")
	b := ctrl.NewControllerManagedBy(mgr).
		Named(strings.ToLower(string(r.Kind))).
		For(obj, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, queue.DeletionPredicate(),
			predicate.AnnotationChangedPredicate{}))).
		WatchesRawSource(r.waker.Source()).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Workers, 1), NewQueue: queue.NamespaceFair})
	if r.Wake != nil {
		b = b.WatchesRawSource(source.Channel(r.Wake, &handler.EnqueueRequestForObject{}))
	}
	if r.CredentialsCache != nil {
		if err := mgr.GetFieldIndexer().IndexField(context.Background(), obj, credentialsIndex, credentialKeys); err != nil {
			return err
		}
		b = b.WatchesRawSource(source.Kind(r.CredentialsCache, client.Object(&corev1.Secret{}),
			handler.EnqueueRequestsFromMapFunc(r.secretToConnections)))
	}
	return b.Complete(r)
}

// secretToConnections maps a credentials Secret to the connections of this kind that
// read it.
func (r *Reconciler) secretToConnections(ctx context.Context, s client.Object) []ctrl.Request {
	list := kf.NewConnectionList(r.Kind).(client.ObjectList)
	if err := r.Client.List(ctx, list, client.MatchingFields{credentialsIndex: s.GetNamespace() + "/" + s.GetName()}); err != nil {
		return nil
	}
	var reqs []ctrl.Request
	_ = meta.EachListItem(list, func(o runtime.Object) error {
		reqs = append(reqs, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(o.(client.Object))})
		return nil
	})
	return reqs
}
