package webhook

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Replays remembers the calls each receiver accepted for a window, so a captured valid
// request sent again is refused. Its memory is bounded: past Max entries the oldest go
// first (a flood of distinct valid calls can only push out calls older than it).
type Replays struct {
	Window time.Duration
	Max    int

	mu    sync.Mutex
	seen  map[string]time.Time
	order []string
}

// Seen records key at now and reports whether it was already there within the window.
func (r *Replays) Seen(key string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]time.Time{}
	}
	if at, ok := r.seen[key]; ok && now.Sub(at) < r.Window {
		return true
	}
	for len(r.order) > 0 {
		oldest := r.order[0]
		if at, ok := r.seen[oldest]; ok && now.Sub(at) < r.Window && len(r.order) < r.Max {
			break
		}
		delete(r.seen, oldest)
		r.order = r.order[1:]
	}
	r.seen[key] = now
	r.order = append(r.order, key)
	return false
}

// Limits bounds what callers may ask: a rate for each source address and one for all of
// them, checked before anything else (a flood costs a map lookup per request). The sources
// it remembers are bounded too: past MaxSources the least recently seen is forgotten.
type Limits struct {
	PerSource      rate.Limit
	PerSourceBurst int
	Global         rate.Limit
	GlobalBurst    int
	MaxSources     int

	once    sync.Once
	global  *rate.Limiter
	mu      sync.Mutex
	sources map[string]*source
}

type source struct {
	limiter *rate.Limiter
	seen    time.Time
}

// Allow says whether a request from addr may be looked at now.
func (l *Limits) Allow(addr string, now time.Time) bool {
	l.once.Do(func() {
		l.global = rate.NewLimiter(l.Global, l.GlobalBurst)
		l.sources = map[string]*source{}
	})
	l.mu.Lock()
	s, ok := l.sources[addr]
	if !ok {
		if len(l.sources) >= max(l.MaxSources, 1) {
			l.evictOldest()
		}
		s = &source{limiter: rate.NewLimiter(l.PerSource, l.PerSourceBurst)}
		l.sources[addr] = s
	}
	s.seen = now
	perSource := s.limiter.AllowN(now, 1)
	l.mu.Unlock()
	// A source over its own rate spends nothing of the global one.
	return perSource && l.global.AllowN(now, 1)
}

func (l *Limits) evictOldest() {
	var oldest string
	var at time.Time
	for k, s := range l.sources {
		if oldest == "" || s.seen.Before(at) {
			oldest, at = k, s.seen
		}
	}
	delete(l.sources, oldest)
}
