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
//
// The window holds the send times of the requests actually sent in it, so its memory
// follows the traffic, never the configured budget (a tenant's huge budget costs nothing).
type gate struct {
	mu     sync.Mutex
	clock  Clock
	budget RateBudget
	sent   []time.Time // send times inside the window, oldest first, from head on
	head   int
	until  time.Time
	cause  Error // the answer that set the pause
}

func newGate(c Clock, b RateBudget) *gate {
	return &gate{clock: c, budget: b}
}

func (g *gate) limited() bool { return g.budget.Requests > 0 && g.budget.Period > 0 }

// take reserves one request now, or returns the time to come back and, when the
// provider paused the connection, the answer that did, as held requests report it (nil
// when our own budget is spent).
func (g *gate) take() (retryAt time.Time, cause *Error, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.clock.Now()
	if now.Before(g.until) {
		return g.until, g.held(), false
	}
	if !g.limited() {
		return time.Time{}, nil, true
	}
	for g.head < len(g.sent) && now.Sub(g.sent[g.head]) >= g.budget.Period {
		g.head++
	}
	if g.head > 0 && g.head >= len(g.sent)/2 {
		// Compact so the backing array does not keep expired sends.
		g.sent = append(g.sent[:0], g.sent[g.head:]...)
		g.head = 0
	}
	if len(g.sent)-g.head >= g.budget.Requests {
		return g.sent[g.head].Add(g.budget.Period), nil, false
	}
	g.sent = append(g.sent, now)
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
	if p := g.pause(); p != nil {
		return p.RetryAt
	}
	return time.Time{}
}

// pause returns the answer that paused the connection, as held requests report it (a
// copy, RetryAt its end); nil when no pause is in force.
func (g *gate) pause() *Error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.clock.Now().Before(g.until) {
		return g.held()
	}
	return nil
}

// held is a copy of the pause's cause ending at its end; g.mu is held.
func (g *gate) held() *Error {
	c := g.cause
	c.RetryAt = g.until
	return &c
}
