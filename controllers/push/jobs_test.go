package push

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// A connection whose vault hangs holds its own slots only: another connection's push runs.
func TestJobsBoundPerConnection(t *testing.T) {
	j := newJobs()
	release := make(chan struct{})
	var running atomic.Int32
	var peak atomic.Int32
	hang := func(context.Context) pushResult {
		n := running.Add(1)
		for {
			if p := peak.Load(); n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		running.Add(-1)
		return pushResult{}
	}
	for i := range 5 {
		j.start(types.NamespacedName{Namespace: "slow", Name: fmt.Sprint(i)}, "VaultConnection/slow/vault", "s", hang, func() {})
	}
	done := make(chan struct{})
	j.start(types.NamespacedName{Namespace: "fast", Name: "p"}, "VaultConnection/fast/vault", "s",
		func(context.Context) pushResult { close(done); return pushResult{} }, func() {})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("another connection's push waited for a hanging one")
	}
	time.Sleep(100 * time.Millisecond)
	if p := peak.Load(); p != maxPushesPerConnection {
		t.Fatalf("%d pushes of one connection ran at once, want %d", p, maxPushesPerConnection)
	}
	close(release)
	// The finished job is handed over once, then forgotten.
	key := types.NamespacedName{Namespace: "fast", Name: "p"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := j.start(key, "VaultConnection/fast/vault", "s", nil, func() {}); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the finished job's result was not handed over")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
