package vault

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// errorHold is how long a failed fetch answers for everyone asking the same target, so N
// bindings on a failing environment cost one request, not N.
const errorHold = 5 * time.Second

// Snapshots nobody asked for in idleFor (or three times the longest maxAge asked of them,
// if longer) are dropped, at most once per sweepEvery: a deleted binding's environment
// does not stay in memory.
const (
	idleFor    = 10 * time.Minute
	sweepEvery = time.Minute
)

// Snapshot is an environment's secrets as fetched at FetchedAt. Data is shared between
// callers: never modify it.
type Snapshot struct {
	Data      map[string]string
	FetchedAt time.Time
}

type fetchResult struct {
	snap    Snapshot
	err     error
	errTill time.Time
	// lastAsked and maxAge (the longest asked) decide when the entry is idle.
	lastAsked time.Time
	maxAge    time.Duration
}

// coalescer keeps the last snapshot of each target and runs at most one fetch per target
// at a time.
type coalescer struct {
	c   *Client
	sf  singleflight.Group
	mu  sync.Mutex
	res map[string]*fetchResult
	// swept is when idle entries were last dropped.
	swept time.Time
}

func newCoalescer(c *Client) *coalescer {
	return &coalescer{c: c, res: map[string]*fetchResult{}}
}

// Fetch returns the secrets of t no older than maxAge: the cached snapshot when it is
// fresh enough, else the result of one request shared by every concurrent caller.
// maxAge 0 forces a new request (still shared with any fetch in flight).
func (c *Client) Fetch(ctx context.Context, t Target, maxAge time.Duration) (Snapshot, error) {
	return c.pulls.fetch(ctx, t, maxAge)
}

func (f *coalescer) fetch(ctx context.Context, t Target, maxAge time.Duration) (Snapshot, error) {
	key := t.key()
	now := f.c.cfg.Clock.Now()
	f.mu.Lock()
	f.sweep(now)
	r := f.res[key]
	if r != nil {
		r.lastAsked, r.maxAge = now, max(r.maxAge, maxAge)
	}
	f.mu.Unlock()
	if r != nil {
		if r.err == nil && maxAge > 0 && now.Sub(r.snap.FetchedAt) <= maxAge {
			f.hook(true)
			return r.snap, nil
		}
		if r.err != nil && now.Before(r.errTill) {
			f.hook(true)
			return Snapshot{}, r.err
		}
	}
	v, err, shared := f.sf.Do(key, func() (any, error) {
		// The fetch is shared: it must not die with the first caller's context.
		data, err := f.c.pull(context.WithoutCancel(ctx), t)
		at := f.c.cfg.Clock.Now()
		res := &fetchResult{snap: Snapshot{Data: data, FetchedAt: at}, err: err, lastAsked: at, maxAge: maxAge}
		if err != nil {
			res.errTill = at.Add(errorHold)
			if ve, ok := AsError(err); ok && ve.RetryAt.After(res.errTill) {
				res.errTill = ve.RetryAt
			}
		}
		f.mu.Lock()
		f.res[key] = res
		f.mu.Unlock()
		return res.snap, err
	})
	f.hook(shared)
	if err != nil {
		return Snapshot{}, err
	}
	return v.(Snapshot), nil
}

// sweep drops idle entries; f.mu is held.
func (f *coalescer) sweep(now time.Time) {
	if now.Sub(f.swept) < sweepEvery {
		return
	}
	f.swept = now
	for k, r := range f.res {
		if now.Sub(r.lastAsked) > max(idleFor, 3*r.maxAge) {
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
