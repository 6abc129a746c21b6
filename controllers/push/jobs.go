package push

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// maxPushes bounds the pushes in flight across every SecretPush, maxPushesPerConnection
// those of one connection (a tenant whose vault hangs holds 2 slots, not all 16); a push
// waiting for a slot holds no reconcile worker.
const (
	maxPushes              = 16
	maxPushesPerConnection = 2
)

// pushTimeout bounds one push as a whole (a read and up to a thousand writes).
const pushTimeout = 10 * time.Minute

// jobs runs pushes in the background, one per SecretPush at a time, so that no reconcile
// worker waits for a vault: a pass starts a job (or finds it running) and returns; the
// job's end wakes the SecretPush, whose next pass takes the result.
type jobs struct {
	mu    sync.Mutex
	slots chan struct{}
	m     map[types.NamespacedName]*job
	// perConn holds each connection's slots (created on first use; a connection's
	// entry stays while it has jobs).
	perConn map[string]*connSlots
}

type connSlots struct {
	slots chan struct{}
	users int
}

type job struct {
	// sig is what the job was started for; a pass wanting something else replaces it.
	sig    string
	done   bool
	result pushResult
	cancel context.CancelFunc
}

func newJobs() *jobs {
	return &jobs{slots: make(chan struct{}, maxPushes), m: map[types.NamespacedName]*job{}, perConn: map[string]*connSlots{}}
}

// start returns the result of the finished job for key and sig (taking it), or starts one
// on connection conn (replacing a job for another sig) and reports it running. wake is
// called when it ends.
func (j *jobs) start(key types.NamespacedName, conn, sig string, run func(ctx context.Context) pushResult, wake func()) (pushResult, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if cur := j.m[key]; cur != nil {
		if cur.sig == sig {
			if !cur.done {
				return pushResult{}, false
			}
			delete(j.m, key)
			return cur.result, true
		}
		cur.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), pushTimeout)
	jb := &job{sig: sig, cancel: cancel}
	j.m[key] = jb
	cs := j.perConn[conn]
	if cs == nil {
		cs = &connSlots{slots: make(chan struct{}, maxPushesPerConnection)}
		j.perConn[conn] = cs
	}
	cs.users++
	go func() {
		defer cancel()
		var res pushResult
		select {
		case cs.slots <- struct{}{}:
			select {
			case j.slots <- struct{}{}:
				res = run(ctx)
				<-j.slots
			case <-ctx.Done():
				res = pushResult{err: ctx.Err()}
			}
			<-cs.slots
		case <-ctx.Done():
			res = pushResult{err: ctx.Err()}
		}
		j.mu.Lock()
		jb.result, jb.done = res, true
		current := j.m[key] == jb
		if cs.users--; cs.users == 0 {
			delete(j.perConn, conn)
		}
		j.mu.Unlock()
		if current {
			wake()
		}
	}()
	return pushResult{}, false
}

// stop cancels the job of key, if any, and forgets it.
func (j *jobs) stop(key types.NamespacedName) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if cur := j.m[key]; cur != nil {
		cur.cancel()
		delete(j.m, key)
	}
}
