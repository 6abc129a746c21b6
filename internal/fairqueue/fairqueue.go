// Package fairqueue is a work queue that serves tenants in turn: one tenant with
// thousands of items ready at once delays another tenant's single item by at most one
// item per waiting tenant, not by its whole backlog.
//
// It is client-go's workqueue (de-duplication, at most one worker per item, delays, rate
// limiting, metrics) with its FIFO replaced by round robin over tenants: the ready items
// of each tenant stay in FIFO order, and Pop takes the oldest item of the next tenant in
// the ring. This is deficit round robin with a quantum of one item, as Kubernetes' API
// Priority and Fairness shares an apiserver between flows; a reconcile is the unit of
// work here, and the reconcilers keep them short (provider I/O runs outside them).
package fairqueue

import (
	"k8s.io/client-go/util/workqueue"
)

// New returns a rate-limiting work queue named name (its metrics carry the name, as
// controller-runtime's queues do) that takes turns between the tenants tenantOf names.
func New[T comparable](name string, rl workqueue.TypedRateLimiter[T], tenantOf func(T) string) workqueue.TypedRateLimitingInterface[T] {
	ready := workqueue.NewTypedWithConfig(workqueue.TypedQueueConfig[T]{Name: name, Queue: NewRing(tenantOf)})
	delaying := workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[T]{Name: name, Queue: ready})
	return workqueue.NewTypedRateLimitingQueueWithConfig(rl, workqueue.TypedRateLimitingQueueConfig[T]{Name: name, DelayingQueue: delaying})
}

// Ring is the ready items of every tenant, served in turn. It implements
// workqueue.Queue: the workqueue calls it under its own lock and never pushes an item
// that is already in it.
type Ring[T comparable] struct {
	tenantOf func(T) string
	// fifo holds each tenant's ready items, oldest first.
	fifo map[string]*list[T]
	// turn is the tenants with ready items, in the order they are served.
	turn list[string]
	n    int
}

// NewRing returns an empty ring.
func NewRing[T comparable](tenantOf func(T) string) *Ring[T] {
	return &Ring[T]{tenantOf: tenantOf, fifo: map[string]*list[T]{}}
}

// Touch is called when an item already queued is added again: it keeps its place.
func (r *Ring[T]) Touch(T) {}

// Push adds an item at the end of its tenant's FIFO; a tenant that had none joins the
// end of the turn.
func (r *Ring[T]) Push(item T) {
	t := r.tenantOf(item)
	q := r.fifo[t]
	if q == nil {
		q = &list[T]{}
		r.fifo[t] = q
		r.turn.push(t)
	}
	q.push(item)
	r.n++
}

// Len is the number of ready items.
func (r *Ring[T]) Len() int { return r.n }

// Pop takes the oldest item of the tenant whose turn it is; that tenant goes to the end
// of the turn if it has more. Only called when Len() > 0.
func (r *Ring[T]) Pop() T {
	t := r.turn.pop()
	q := r.fifo[t]
	item := q.pop()
	if q.len() == 0 {
		delete(r.fifo, t)
	} else {
		r.turn.push(t)
	}
	r.n--
	return item
}

// list is a FIFO on a slice that reuses its space: pop advances a head index, and the
// slice is compacted once half of it is popped, so a long queue costs no more than its
// items.
type list[T any] struct {
	items []T
	head  int
}

func (l *list[T]) push(v T) { l.items = append(l.items, v) }

func (l *list[T]) len() int { return len(l.items) - l.head }

func (l *list[T]) pop() T {
	var zero T
	v := l.items[l.head]
	l.items[l.head] = zero
	l.head++
	if l.head == len(l.items) {
		l.items, l.head = l.items[:0], 0
	} else if l.head > 32 && l.head*2 >= len(l.items) {
		l.items = append(l.items[:0], l.items[l.head:]...)
		l.head = 0
	}
	return v
}
