package workload

import (
	"context"
	"strings"

	"github.com/keyferry/keyferry/controllers/consumers"
	"github.com/keyferry/keyferry/controllers/queue"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
)

// SetupWithManager registers the reconciler and its watches: the opted-in workloads of
// its kind, and the managed Secrets they read (consumers.Index must be registered).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named(strings.ToLower(r.Kind)+"-restarts").
		For(consumers.New(r.Kind)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.secretToWorkloads)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2, NewQueue: queue.NamespaceFair}).
		Complete(r)
}

// secretToWorkloads maps a managed Secret to the opted-in workloads of this kind in its
// namespace that read it.
func (r *Reconciler) secretToWorkloads(ctx context.Context, s client.Object) []ctrl.Request {
	ws, err := consumers.Reading(ctx, r.Client, r.Kind, s.GetNamespace(), s.GetName())
	if err != nil {
		return nil
	}
	reqs := make([]ctrl.Request, 0, len(ws))
	for _, w := range ws {
		reqs = append(reqs, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(w)})
	}
	return reqs
}
