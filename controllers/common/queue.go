package common

import (
	"context"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/keyferry/keyferry/internal/fairqueue"
)

// NamespaceFairQueue is every keyferry controller's queue: namespaces (tenants) take turns,
// so one namespace's thousands of due objects delay another's by a few items at most.
// Cluster-scoped objects share the tenant "".
func NamespaceFairQueue(name string, rl workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
	return fairqueue.New(name, rl, func(r reconcile.Request) string { return r.Namespace })
}

// Waker puts objects back into a controller's queue from outside a reconcile: a fetch or
// login that ran in the background has ended, and its object can go on.
type Waker struct {
	queue atomic.Pointer[workqueue.TypedRateLimitingInterface[reconcile.Request]]
}

// Source hands the controller's queue to the waker when the controller starts.
func (w *Waker) Source() source.Source {
	return source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		w.queue.Store(&q)
		return nil
	})
}

// Wake queues key (once, however often it is woken before a worker takes it).
func (w *Waker) Wake(key types.NamespacedName) {
	if q := w.queue.Load(); q != nil {
		(*q).Add(reconcile.Request{NamespacedName: key})
	}
}

// Requests lists a request for every object of list (what a watch's map function returns).
func Requests(list client.ObjectList) []reconcile.Request {
	var reqs []reconcile.Request
	_ = meta.EachListItem(list, func(o runtime.Object) error {
		if obj, ok := o.(client.Object); ok {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
		}
		return nil
	})
	return reqs
}
