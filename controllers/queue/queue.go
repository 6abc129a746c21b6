// Package queue is what puts work into keyferry's controllers: the namespace-fair work
// queue every controller uses, the waker that queues an object from outside a reconcile,
// and the predicates and map helpers of their watches.
package queue

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

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/internal/fairqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// NamespaceFair is every keyferry controller's queue: namespaces (tenants) take turns,
// so one namespace's thousands of due objects delay another's by a few items at most.
// Cluster-scoped objects share the tenant "".
func NamespaceFair(name string, rl workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
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

// DeletionPredicate passes updates that mark an object for deletion.
func DeletionPredicate() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return !e.ObjectNew.GetDeletionTimestamp().IsZero()
	}}
}

// ReadinessChanged passes connection updates that change its Ready status or reason or
// its spec (what it lends), and deletions.
func ReadinessChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return true },
		DeleteFunc: func(event.DeleteEvent) bool { return true },
		UpdateFunc: func(e event.UpdateEvent) bool {
			if !e.ObjectNew.GetDeletionTimestamp().IsZero() {
				return true
			}
			return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() || readyKey(e.ObjectOld) != readyKey(e.ObjectNew)
		},
	}
}

func readyKey(o client.Object) string {
	c, ok := o.(kf.Connection)
	if !ok {
		return ""
	}
	if r := conditions.ReadyOf(c.ConnectionStatus().Conditions); r != nil {
		return string(r.Status) + "/" + r.Reason
	}
	return ""
}
