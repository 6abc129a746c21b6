package queue

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

var dbKey = types.NamespacedName{Namespace: "team", Name: "db"}

func secretAt(rv string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "db", ResourceVersion: rv}}
}

// Only the echo of one's own write is dropped: another version of the object, a second
// event at the same version, an object never written, and deletes all pass.
func TestOwnWritesDropOnlyTheEcho(t *testing.T) {
	w := NewOwnWrites()
	p := w.Predicate()
	if !p.Create(event.CreateEvent{Object: secretAt("5")}) {
		t.Error("an object we never wrote was dropped")
	}
	w.Begin(dbKey)
	if w.End(dbKey, secretAt("7")) {
		t.Error("a write nobody interfered with asks for another pass")
	}
	if p.Create(event.CreateEvent{Object: secretAt("7")}) {
		t.Error("the echo of our create passed")
	}
	if !p.Update(event.UpdateEvent{ObjectOld: secretAt("7"), ObjectNew: secretAt("7")}) {
		t.Error("a second event at our version was dropped (the entry must end with the first)")
	}
	w.Begin(dbKey)
	w.End(dbKey, secretAt("9"))
	if !p.Update(event.UpdateEvent{ObjectOld: secretAt("9"), ObjectNew: secretAt("10")}) {
		t.Error("another writer's version after ours was dropped")
	}
	if !p.Update(event.UpdateEvent{ObjectOld: secretAt("10"), ObjectNew: secretAt("9")}) {
		t.Error("our version, once superseded, was still dropped")
	}
	w.Begin(dbKey)
	w.End(dbKey, secretAt("11"))
	if !p.Delete(event.DeleteEvent{Object: secretAt("11")}) {
		t.Error("a delete was dropped")
	}
	if len(w.written) != 0 || len(w.inflight) != 0 {
		t.Errorf("entries left: %v %v", w.written, w.inflight)
	}
}

// Events while a write is in flight are held; End says whether one was not its echo.
func TestOwnWritesInFlight(t *testing.T) {
	w := NewOwnWrites()
	p := w.Predicate()
	// The echo beats the answer: held, and then it is the echo.
	w.Begin(dbKey)
	if p.Create(event.CreateEvent{Object: secretAt("3")}) {
		t.Error("an event during the write passed (it is held until the answer)")
	}
	if w.End(dbKey, secretAt("3")) {
		t.Error("the early echo counted as another writer")
	}
	if !p.Update(event.UpdateEvent{ObjectOld: secretAt("3"), ObjectNew: secretAt("3")}) {
		t.Error("the echo, already seen while in flight, dropped a later event")
	}
	// Someone else wrote while ours was in flight: the caller must pass again.
	w.Begin(dbKey)
	p.Update(event.UpdateEvent{ObjectOld: secretAt("3"), ObjectNew: secretAt("4")})
	if !w.End(dbKey, secretAt("5")) {
		t.Error("another writer's version during the write was lost")
	}
	// A failed write with an event held: pass again.
	w.Begin(dbKey)
	p.Update(event.UpdateEvent{ObjectOld: secretAt("5"), ObjectNew: secretAt("6")})
	if !w.End(dbKey, nil) {
		t.Error("an event during a failed write was lost")
	}
	w.Begin(dbKey)
	if w.End(dbKey, nil) {
		t.Error("a failed write with nothing held asks for another pass")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.inflight) != 0 {
		t.Errorf("in-flight entries left: %v", w.inflight)
	}
}
