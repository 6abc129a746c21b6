package vault

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// errorHold is how long a failed fetch answers for everyone asking the same target, so N
// bindings on a failing environment cost one request, not N. It doubles with each
// consecutive failure of the target, up to maxErrorHold: a vault answering 503 for a
// minute gets a few requests per environment, not one every errorHold (the 60-minute
// soak measured 5.7 requests per environment per 30 s with a fixed hold).
const (
	errorHold    = 5 * time.Second
	maxErrorHold = 30 * time.Second
)

// holdAfter is how long the failures-th consecutive failure of a target answers.
func holdAfter(failures int) time.Duration {
	hold := errorHold
	for i := 1; i < failures && hold < maxErrorHold; i++ {
		hold *= 2
	}
	return min(hold, maxErrorHold)
}

// maxConcurrentPulls bounds the requests one connection has in flight: a vault that
// hangs holds at most this many sockets and goroutines in requests, whatever its
// requestTimeout and however many environments its bindings read. Further fetches wait
// for a slot (as data, not as a blocked worker).
const maxConcurrentPulls = 8

// Snapshots nobody asked for in idleFor (or three times the longest maxAge asked of them,
// if longer) are dropped, at most once per sweepEvery: a deleted binding's environment
// does not stay in memory.
const (
	idleFor    = 10 * time.Minute
	sweepEvery = time.Minute
)

// ErrPending says the answer is being fetched in the background; the caller's done
// function is called with it.
var ErrPending = errors.New("fetch in flight")

// Snapshot is an environment's secrets as fetched at FetchedAt. Data is shared between
// callers: never modify it.
type Snapshot struct {
	Data      map[string]string
	FetchedAt time.Time
}

// Want says which answer a caller accepts.
type Want struct {
	// MaxAge: a snapshot fetched at most this long ago will do.
	MaxAge time.Duration
	// NotBefore: only the answer to a request sent at or after this time will do (a
	// refresh asked for at NotBefore must not be answered by an older request, whatever
	// its age or outcome). Zero accepts any.
	NotBefore time.Time
}

// Result is the answer of one fetch, as handed to the callers that waited for it.
type Result struct {
	Snapshot
	Err error
	// SentAt is when the fetch that produced it started (its request left at or after).
	SentAt time.Time
}

// fetchResult is a target's last answer.
type fetchResult struct {
	Result
	errTill time.Time
}

// flight is one fetch of a target in progress, shared by every caller that waits for it.
type flight struct {
	startedAt time.Time
	cancel    context.CancelFunc
	waiters   map[string]waiter
}

type waiter struct {
	notBefore time.Time
	done      func(Result)
}

// entry is what the coalescer keeps of one target.
type entry struct {
	last   *fetchResult
	flight *flight
	// lastAsked and maxAge (the longest asked) decide when the entry is idle.
	lastAsked time.Time
	maxAge    time.Duration
	// failures counts the target's consecutive failed fetches (the error hold grows).
	failures int
}

// coalescer keeps the last answer of each target and runs at most one fetch per target at
// a time, in the background: no caller is ever held by a slow vault.
type coalescer struct {
	c     *Client
	slots chan struct{}
	mu    sync.Mutex
	res   map[string]*entry
	// swept is when idle entries were last dropped.
	swept time.Time
}

func newCoalescer(c *Client) *coalescer {
	return &coalescer{c: c, res: map[string]*entry{}, slots: make(chan struct{}, maxConcurrentPulls)}
}

// Start returns the secrets of t when an answer that w accepts is at hand (a snapshot, or
// a failure that still holds, or the provider's pause in force). Otherwise it starts a
// fetch in the background, or joins the one in flight, returns ErrPending, and later calls
// done once with the answer. waiter names the caller: asking again under the same name
// while a fetch is in flight replaces its wish, it does not add a second request.
func (c *Client) Start(t Target, w Want, waiter string, done func(Result)) (Snapshot, error) {
	return c.pulls.start(t, w, waiter, done)
}

// Withdraw says waiter no longer wants t's answer (its binding was deleted or now reads
// something else). A fetch nobody waits for any more is canceled.
func (c *Client) Withdraw(t Target, waiter string) { c.pulls.withdraw(t.key(), waiter) }

var syncWaiters atomic.Uint64

// Fetch returns the secrets of t no older than maxAge, waiting for them: the cached
// snapshot when it is fresh enough, else the answer of one request shared by every
// concurrent caller. maxAge 0 asks for a request sent from now on (still shared). For
// tools and tests; reconcilers use Start.
func (c *Client) Fetch(ctx context.Context, t Target, maxAge time.Duration) (Snapshot, error) {
	w := Want{MaxAge: maxAge}
	if maxAge <= 0 {
		w.NotBefore = c.cfg.Clock.Now()
	}
	ch := make(chan Result, 1)
	id := "fetch/" + strconv.FormatUint(syncWaiters.Add(1), 10)
	snap, err := c.Start(t, w, id, func(r Result) { ch <- r })
	if !errors.Is(err, ErrPending) {
		return snap, err
	}
	select {
	case r := <-ch:
		return r.Snapshot, r.Err
	case <-ctx.Done():
		c.Withdraw(t, id)
		return Snapshot{}, canceled("pull", ctx.Err())
	}
}

func (f *coalescer) start(t Target, w Want, id string, done func(Result)) (Snapshot, error) {
	key := t.key()
	now := f.c.cfg.Clock.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sweep(now)
	e := f.res[key]
	if e == nil {
		e = &entry{}
		f.res[key] = e
	}
	e.lastAsked, e.maxAge = now, max(e.maxAge, w.MaxAge)
	if r := e.last; r != nil && !r.SentAt.Before(w.NotBefore) {
		if r.Err == nil && w.MaxAge > 0 && now.Sub(r.FetchedAt) <= w.MaxAge {
			f.hook(true)
			return r.Snapshot, nil
		}
		if r.Err != nil && now.Before(r.errTill) {
			f.hook(true)
			return Snapshot{}, r.Err
		}
	}
	if held := f.c.heldByPause("pull"); held != nil {
		// The provider asked us to wait: answer at once with until when, send nothing.
		return Snapshot{}, held
	}
	if fl := e.flight; fl != nil {
		fl.waiters[id] = waiter{notBefore: w.NotBefore, done: done}
		f.hook(true)
		return Snapshot{}, ErrPending
	}
	f.launch(key, t, e, map[string]waiter{id: {notBefore: w.NotBefore, done: done}}, now)
	return Snapshot{}, ErrPending
}

// launch starts a fetch of t for waiters; f.mu is held.
func (f *coalescer) launch(key string, t Target, e *entry, waiters map[string]waiter, now time.Time) {
	ctx, cancel := context.WithCancel(f.c.ctx)
	fl := &flight{startedAt: now, cancel: cancel, waiters: waiters}
	e.flight = fl
	f.hook(false)
	go f.run(ctx, key, t, fl)
}

// run performs one flight: waits for a slot, sends, stores the answer and hands it to
// the waiters that accept it; those that asked for a later request get another flight.
func (f *coalescer) run(ctx context.Context, key string, t Target, fl *flight) {
	defer fl.cancel()
	var data map[string]string
	var err error
	select {
	case f.slots <- struct{}{}:
		data, err = f.c.pull(ctx, t)
		<-f.slots
	case <-ctx.Done():
		err = canceled("pull", ctx.Err())
	}
	at := f.c.cfg.Clock.Now()
	res := &fetchResult{Result: Result{Snapshot: Snapshot{Data: data, FetchedAt: at}, Err: err, SentAt: fl.startedAt}}
	f.mu.Lock()
	failures := 0
	if e := f.res[key]; e != nil {
		if err != nil {
			e.failures++
		} else {
			e.failures = 0
		}
		failures = e.failures
	}
	f.mu.Unlock()
	if err != nil {
		res.Snapshot = Snapshot{}
		res.errTill = at.Add(holdAfter(failures))
		if ve, ok := AsError(err); ok && !ve.RetryAt.IsZero() {
			// The provider said when to come back: exactly then, not later (a hold past
			// it answered callers with a pause already over, and they backed off).
			res.errTill = ve.RetryAt
			if minHold := at.Add(time.Second); res.errTill.Before(minHold) {
				res.errTill = minHold
			}
		}
	}

	f.mu.Lock()
	e := f.res[key]
	var deliver []waiter
	if e != nil && e.flight == fl {
		e.flight = nil
		e.last = res
		again := map[string]waiter{}
		for id, w := range fl.waiters {
			if w.notBefore.After(fl.startedAt) {
				again[id] = w
			} else {
				deliver = append(deliver, w)
			}
		}
		if len(again) > 0 {
			f.launch(key, t, e, again, at)
		}
	}
	f.mu.Unlock()
	for _, w := range deliver {
		w.done(res.Result)
	}
}

func (f *coalescer) withdraw(key, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.res[key]
	if e == nil || e.flight == nil {
		return
	}
	delete(e.flight.waiters, id)
	if len(e.flight.waiters) == 0 {
		// Nobody waits: cancel the request, and keep no answer of it.
		e.flight.cancel()
		e.flight = nil
	}
}

// sweep drops idle entries; f.mu is held.
func (f *coalescer) sweep(now time.Time) {
	if now.Sub(f.swept) < sweepEvery {
		return
	}
	f.swept = now
	for k, e := range f.res {
		if e.flight == nil && now.Sub(e.lastAsked) > max(idleFor, 3*e.maxAge) {
			delete(f.res, k)
		}
	}
}

// cached is how many targets the coalescer holds (tests).
func (f *coalescer) cached() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.res)
}

func (f *coalescer) hook(shared bool) {
	if f.c.hooks.Fetch != nil {
		f.c.hooks.Fetch(shared)
	}
}
