package vault

import (
	"sync"
	"time"
)

// Outcome is what the connection's latest request said about the connection itself:
// accepted credentials (Reason empty), or a failure that concerns every binding using it
// (401, 403, rate limits, an unreachable provider). Failures of one vault or environment
// (404, bad payloads) do not count.
type Outcome struct {
	At         time.Time
	Reason     Reason
	StatusCode int
	Message    string
}

type outcomeBox struct {
	mu sync.Mutex
	o  Outcome
}

func (b *outcomeBox) record(o Outcome) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.o = o
}

// forgetAuthFailure drops a 401 or 403 outcome (the credential that earned it is gone).
func (b *outcomeBox) forgetAuthFailure() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.o.Reason == ReasonUnauthorized || b.o.Reason == ReasonForbidden {
		b.o = Outcome{}
	}
}

func (b *outcomeBox) get() Outcome {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.o
}

// LastOutcome returns the connection-level result of the latest request; a zero At means
// no request was made yet.
func (c *Client) LastOutcome() Outcome { return c.outcome.get() }

func (c *Client) recordOutcome(err error) {
	now := c.cfg.Clock.Now()
	if err == nil {
		c.outcome.record(Outcome{At: now})
		return
	}
	ve, ok := AsError(err)
	if !ok || ve.Held {
		// Nothing was sent: the provider said nothing new (a budget hold must not replace
		// the 401 that the retries spending the budget kept getting).
		return
	}
	switch ve.Reason {
	case ReasonUnauthorized, ReasonForbidden, ReasonRateLimited, ReasonProviderUnavailable, ReasonNotAllowed:
		c.outcome.record(Outcome{At: now, Reason: ve.Reason, StatusCode: ve.StatusCode, Message: ve.Error()})
	}
}
