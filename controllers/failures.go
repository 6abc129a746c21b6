package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// failureCounts counts each binding's consecutive failed passes, for backoff. It lives in
// memory: after a restart backoff starts afresh, which costs one early retry at most.
type failureCounts struct {
	mu sync.Mutex
	n  map[types.NamespacedName]int
}

// observe records a pass and returns the consecutive failures it makes: unchanged by a
// pass that did nothing, 0 after a success.
func (f *failureCounts) observe(key types.NamespacedName, o syncOutcome) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case o.skipped || o.pending:
	case o.err == nil:
		delete(f.n, key)
	default:
		if f.n == nil {
			f.n = map[types.NamespacedName]int{}
		}
		f.n[key]++
	}
	return f.n[key]
}

// forget drops a deleted binding.
func (f *failureCounts) forget(key types.NamespacedName) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.n, key)
}

// handledRefreshes remembers the refresh annotation value each binding's last pass
// handled: a pass queued before that pass's status write reaches the cache must not
// force another pull for the same value.
type handledRefreshes struct {
	mu sync.Mutex
	v  map[types.NamespacedName]string
}

func (h *handledRefreshes) handled(key types.NamespacedName, value string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return value != "" && h.v[key] == value
}

func (h *handledRefreshes) record(key types.NamespacedName, value string) {
	if value == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.v == nil {
		h.v = map[types.NamespacedName]string{}
	}
	h.v[key] = value
}

func (h *handledRefreshes) forget(key types.NamespacedName) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.v, key)
}
