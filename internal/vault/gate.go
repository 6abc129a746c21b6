package vault

import (
	"sync"
	"time"
)

// gate decides when a request may leave for a connection. It holds two things:
//   - a pause set by the provider (Retry-After, x-ratelimit-remaining: 0), which stops every
//     request until it ends;
//   - the client-side budget: at most Requests in any window of Period. A sliding window
//     (not a token bucket) keeps us under a provider's fixed or sliding window by
//     construction, bursts included.
type gate struct {
	mu     sync.Mutex
	clock  Clock
	budget RateBudget
	sent   []time.Time // ring of the last budget.Requests send times
	next   int
	pause  time.Time
}

func newGate(c Clock, b RateBudget) *gate {
	g := &gate{clock: c, budget: b}
	if b.Requests > 0 && b.Period > 0 {
		g.sent = make([]time.Time, b.Requests)
	}
	return g
}

// take reserves one request now, or returns the time to come back and whether the
// provider (true) or our own budget (false) is the cause.
func (g *gate) take() (retryAt time.Time, byProvider bool, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.clock.Now()
	if now.Before(g.pause) {
		return g.pause, true, false
	}
	if g.sent == nil {
		return time.Time{}, false, true
	}
	// The oldest of the last N sends must be out of the window.
	oldest := g.sent[g.next]
	if !oldest.IsZero() && now.Sub(oldest) < g.budget.Period {
		return oldest.Add(g.budget.Period), false, false
	}
	g.sent[g.next] = now
	g.next = (g.next + 1) % len(g.sent)
	return time.Time{}, false, true
}

// pauseUntil stops every request until t (a later pause wins).
func (g *gate) pauseUntil(t time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t.After(g.pause) {
		g.pause = t
	}
}

// pausedUntil returns the end of the provider's pause, zero when none is in force.
func (g *gate) pausedUntil() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.clock.Now().Before(g.pause) {
		return g.pause
	}
	return time.Time{}
}
