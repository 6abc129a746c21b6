package controllers

import (
	"context"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/keyferry/keyferry/internal/fairqueue"
)

// namespaceFairQueue is every keyferry controller's queue: namespaces (tenants) take turns,
// so one namespace's thousands of due objects delay another's by a few items at most.
// Cluster-scoped objects share the tenant "".
func namespaceFairQueue(name string, rl workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
	return fairqueue.New(name, rl, func(r reconcile.Request) string { return r.Namespace })
}

// waker puts objects back into a controller's queue from outside a reconcile: a fetch or
// login that ran in the background has ended, and its object can go on.
type waker struct {
	queue atomic.Pointer[workqueue.TypedRateLimitingInterface[reconcile.Request]]
}

// source hands the controller's queue to the waker when the controller starts.
func (w *waker) source() source.Source {
	return source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		w.queue.Store(&q)
		return nil
	})
}

// wake queues key (once, however often it is woken before a worker takes it).
func (w *waker) wake(key types.NamespacedName) {
	if q := w.queue.Load(); q != nil {
		(*q).Add(reconcile.Request{NamespacedName: key})
	}
}
