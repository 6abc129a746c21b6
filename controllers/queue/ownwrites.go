package queue

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// OwnWrites keeps the watch events of a reconciler's own writes from enqueueing it again:
// the pass that wrote already knows the result, so a first sync is one pass, not two.
//
// A write is bracketed: Begin before the request, End with the API server's answer. An
// event of the object while the write is in flight is held (its echo can beat the answer
// to this process); End compares what was held with the version written, and says whether
// anything else happened, so the caller passes once more. After End, an event at the
// written version is dropped once; any other version, and every delete, passes. So nothing
// but the echo of one's own write is ever dropped.
type OwnWrites struct {
	mu       sync.Mutex
	written  map[types.NamespacedName]string   // the version our last write answered
	inflight map[types.NamespacedName][]string // versions seen while a write is in flight
}

// NewOwnWrites returns an empty tracker.
func NewOwnWrites() *OwnWrites {
	return &OwnWrites{written: map[types.NamespacedName]string{}, inflight: map[types.NamespacedName][]string{}}
}

// Begin marks a write of key as in flight.
func (w *OwnWrites) Begin(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.inflight[key]; !ok {
		w.inflight[key] = nil
	}
}

// End ends the write Begin marked: written is the object as the API server answered (nil
// when the write failed). It reports whether an event held meanwhile was not the echo of
// this write, so the caller must pass again.
func (w *OwnWrites) End(key types.NamespacedName, written client.Object) (other bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	held := w.inflight[key]
	delete(w.inflight, key)
	rv := ""
	if written != nil {
		rv = written.GetResourceVersion()
	}
	echoed := false
	for _, h := range held {
		if h == rv && rv != "" {
			echoed = true
			continue
		}
		other = true
	}
	if rv != "" && !echoed {
		w.written[key] = rv
	}
	return other
}

// pass decides on a create or update event of o.
func (w *OwnWrites) pass(o client.Object) bool {
	key := client.ObjectKeyFromObject(o)
	w.mu.Lock()
	defer w.mu.Unlock()
	if held, ok := w.inflight[key]; ok {
		w.inflight[key] = append(held, o.GetResourceVersion())
		return false
	}
	rv, ok := w.written[key]
	if !ok {
		return true
	}
	// Any event ends the entry: a later version supersedes what we wrote.
	delete(w.written, key)
	return rv != o.GetResourceVersion()
}

// Predicate drops create and update events that are the echo of one's own write.
func (w *OwnWrites) Predicate() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return w.pass(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool { return w.pass(e.ObjectNew) },
		DeleteFunc: func(e event.DeleteEvent) bool {
			w.mu.Lock()
			delete(w.written, client.ObjectKeyFromObject(e.Object))
			w.mu.Unlock()
			return true
		},
	}
}
