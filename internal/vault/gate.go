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
	until  time.Time
	cause  Error // the answer that set the pause
}

func newGate(c Clock, b RateBudget) *gate {
	g := &gate{clock: c, budget: b}
	if b.Requests > 0 && b.Period > 0 {
		g.sent = make([]time.Time, b.Requests)
	}
	return g
}

// take reserves one request now, or returns the time to come back and, when the
// provider paused the connection, the answer that did (nil when our own budget is spent).
func (g *gate) take() (retryAt time.Time, cause *Error, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.clock.Now()
	if now.Before(g.until) {
		c := g.cause
		return g.until, &c, false
	}
	if g.sent == nil {
		return time.Time{}, nil, true
	}
	// The oldest of the last N sends must be out of the window.
	oldest := g.sent[g.next]
	if !oldest.IsZero() && now.Sub(oldest) < g.budget.Period {
		return oldest.Add(g.budget.Period), nil, false
	}
	g.sent[g.next] = now
	g.next = (g.next + 1) % len(g.sent)
	return time.Time{}, nil, true
}

// pauseUntil stops every request until t because of cause (a later pause wins).
func (g *gate) pauseUntil(t time.Time, cause Error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t.After(g.until) {
		g.until, g.cause = t, cause
	}
}

// pausedUntil returns the end of the provider's pause, zero when none is in force.
func (g *gate) pausedUntil() time.Time {
	t, _ := g.pause()
	return t
}

// pause returns the provider's pause in force and its cause; zero and nil when none.
func (g *gate) pause() (time.Time, *Error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.clock.Now().Before(g.until) {
		c := g.cause
		return g.until, &c
	}
	return time.Time{}, nil
}
