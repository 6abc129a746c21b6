package webhook

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Rounds runs at most one refresh round per receiver per Interval however many valid
// hooks arrive: a hook while a round is due is merged into it, a hook right after a round
// schedules the next one at the end of the interval. Run is called outside any lock, one
// round per receiver at a time.
type Rounds struct {
	Interval time.Duration
	Clock    clock.WithDelayedExecution
	Run      func(receiver string)

	mu      sync.Mutex
	pending map[string]bool
	last    map[string]time.Time
}

// Ask asks for a round of receiver; it reports whether the call was merged into a round
// already due.
func (r *Rounds) Ask(receiver string) (merged bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending, r.last = map[string]bool{}, map[string]time.Time{}
	}
	if r.pending[receiver] {
		return true
	}
	r.pending[receiver] = true
	wait := r.last[receiver].Add(r.Interval).Sub(r.Clock.Now())
	r.Clock.AfterFunc(max(wait, 0), func() { go r.run(receiver) })
	return false
}

func (r *Rounds) run(receiver string) {
	r.mu.Lock()
	// Hooks from here on ask for the next round: this one may have listed its bindings
	// before the change they announce.
	delete(r.pending, receiver)
	r.last[receiver] = r.Clock.Now()
	r.mu.Unlock()
	r.Run(receiver)
}

// Forget drops what Rounds keeps of a deleted receiver.
func (r *Rounds) Forget(receiver string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.pending[receiver] {
		delete(r.last, receiver)
	}
}
