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
}

// coalescer keeps the last snapshot of each target and runs at most one fetch per target
// at a time.
type coalescer struct {
	c   *Client
	sf  singleflight.Group
	mu  sync.Mutex
	res map[string]*fetchResult
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
	r := f.res[key]
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
		res := &fetchResult{snap: Snapshot{Data: data, FetchedAt: at}, err: err}
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

func (f *coalescer) hook(shared bool) {
	if f.c.hooks.Fetch != nil {
		f.c.hooks.Fetch(shared)
	}
}
