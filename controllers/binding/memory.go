package binding

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/keyferry/keyferry/internal/vault"
)

// passMemory is what the binding reconciler remembers of each binding between passes, in
// memory: its consecutive failed passes (for backoff; after a restart backoff starts
// afresh, which costs one early retry at most), the refresh annotation value its last
// pass handled (a pass queued before that pass's status write reaches the cache must not
// force another pull for the same value) and when the value it has yet to handle was first
// seen, and the background fetch it waits for with the answer handed to it.
type passMemory struct {
	mu sync.Mutex
	m  map[types.NamespacedName]remembered
}

type remembered struct {
	failures int
	refresh  string
	// asked is a refresh value not handled yet, first seen at askedAt: only an answer to
	// a request sent from then on handles it.
	asked   string
	askedAt time.Time
	// waiting are the fetches this binding waits for, by target key (one per source);
	// answer are their results, once delivered.
	waiting map[string]*awaited
	answer  map[string]*delivered
}

// awaited names a fetch: the connection client that runs it and the target it reads.
type awaited struct {
	client *vault.Client
	target vault.Target
	key    string
	// since is when the binding began to wait for this fetch.
	since time.Time
}

func (a *awaited) is(c *vault.Client, key string) bool {
	return a != nil && a.client == c && a.key == key
}

type delivered struct {
	awaited
	result vault.Result
}

// update runs fn on key's memory under the lock.
func (p *passMemory) update(key types.NamespacedName, fn func(r *remembered)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[types.NamespacedName]remembered{}
	}
	r := p.m[key]
	fn(&r)
	p.m[key] = r
}

// observe records a pass and returns the consecutive failures it makes: unchanged by a
// pass that did nothing, 0 after a success.
func (p *passMemory) observe(key types.NamespacedName, o syncOutcome) (failures int) {
	p.update(key, func(r *remembered) {
		switch {
		case !o.acted():
		case o.err == nil:
			r.failures = 0
		default:
			r.failures++
		}
		failures = r.failures
	})
	return failures
}

// refreshDone records, once the status is written, the refresh value a pass handled. A
// pass that did not act on it (no client yet, or its answer still on the way) leaves it
// wanted.
func (p *passMemory) refreshDone(key types.NamespacedName, o syncOutcome) {
	if o.refresh == "" || !o.acted() {
		return
	}
	p.update(key, func(r *remembered) { r.refresh, r.asked = o.refresh, "" })
}

// refreshHandled says a pass already handled this refresh annotation value.
func (p *passMemory) refreshHandled(key types.NamespacedName, value string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return value != "" && p.m[key].refresh == value
}

// refreshAsked returns when the refresh value was first seen (now, the first time).
func (p *passMemory) refreshAsked(key types.NamespacedName, value string, now time.Time) (at time.Time) {
	p.update(key, func(r *remembered) {
		if r.asked != value {
			r.asked, r.askedAt = value, now
		}
		at = r.askedAt
	})
	return at
}

// take returns the answer delivered for the fetch of key by c, once.
func (p *passMemory) take(k types.NamespacedName, c *vault.Client, key string) (res vault.Result, ok bool) {
	p.update(k, func(r *remembered) {
		if a := r.answer[key]; a != nil && a.is(c, key) {
			res, ok = a.result, true
		}
		delete(r.answer, key)
	})
	return res, ok
}

// expect records that the binding waits for a (since a.since, or since it began to wait
// for the same fetch); it returns the fetch of that target it waited for before, if run by
// another client (to be withdrawn), and since when it waits.
func (p *passMemory) expect(k types.NamespacedName, a awaited) (old *awaited, since time.Time) {
	p.update(k, func(r *remembered) {
		switch w := r.waiting[a.key]; {
		case w == nil:
		case w.is(a.client, a.key):
			a.since = w.since
		default:
			old = w
		}
		if r.waiting == nil {
			r.waiting = map[string]*awaited{}
		}
		r.waiting[a.key], since = &a, a.since
	})
	return old, since
}

// deliver hands the binding the answer of a fetch it waits for; false when it no longer
// waits for that one (it was withdrawn, or the binding reads something else).
func (p *passMemory) deliver(k types.NamespacedName, c *vault.Client, key string, res vault.Result) (ok bool) {
	p.update(k, func(r *remembered) {
		if w := r.waiting[key]; w.is(c, key) {
			if r.answer == nil {
				r.answer = map[string]*delivered{}
			}
			r.answer[key] = &delivered{awaited: *w, result: res}
			delete(r.waiting, key)
			ok = true
		}
	})
	return ok
}

// retain keeps waiting only for the targets in keys and returns the fetches dropped (to
// be withdrawn): the binding's sources changed.
func (p *passMemory) retain(k types.NamespacedName, keys map[string]bool) (old []*awaited) {
	p.update(k, func(r *remembered) {
		for key, w := range r.waiting {
			if !keys[key] {
				old = append(old, w)
				delete(r.waiting, key)
			}
		}
	})
	return old
}

// stopWaiting drops the fetches the binding waits for and returns them (to be withdrawn).
func (p *passMemory) stopWaiting(k types.NamespacedName) (old []*awaited) {
	p.update(k, func(r *remembered) {
		for _, w := range r.waiting {
			old = append(old, w)
		}
		r.waiting = nil
	})
	return old
}

// forget drops a deleted binding and returns the fetches it waited for.
func (p *passMemory) forget(key types.NamespacedName) (old []*awaited) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.m[key].waiting {
		old = append(old, w)
	}
	delete(p.m, key)
	return old
}
