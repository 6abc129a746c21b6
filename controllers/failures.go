package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// passMemory is what the binding reconciler remembers of each binding between passes, in
// memory: its consecutive failed passes (for backoff; after a restart backoff starts
// afresh, which costs one early retry at most) and the refresh annotation value its last
// pass handled (a pass queued before that pass's status write reaches the cache must not
// force another pull for the same value).
type passMemory struct {
	mu sync.Mutex
	m  map[types.NamespacedName]remembered
}

type remembered struct {
	failures int
	refresh  string
}

// observe records a pass and returns the consecutive failures it makes: unchanged by a
// pass that did nothing, 0 after a success.
func (p *passMemory) observe(key types.NamespacedName, o syncOutcome) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[types.NamespacedName]remembered{}
	}
	r := p.m[key]
	if o.skipped || o.pending {
		return r.failures
	}
	if o.err == nil {
		r.failures = 0
	} else {
		r.failures++
	}
	p.m[key] = r
	return r.failures
}

// refreshDone records, once the status is written, the refresh value a pass handled. A
// pending pass saw the value but did not act on it: it stays wanted.
func (p *passMemory) refreshDone(key types.NamespacedName, o syncOutcome) {
	if o.refresh == "" || o.pending || o.skipped {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[types.NamespacedName]remembered{}
	}
	r := p.m[key]
	r.refresh = o.refresh
	p.m[key] = r
}

// refreshHandled says a pass already handled this refresh annotation value.
func (p *passMemory) refreshHandled(key types.NamespacedName, value string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return value != "" && p.m[key].refresh == value
}

// forget drops a deleted binding.
func (p *passMemory) forget(key types.NamespacedName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, key)
}
