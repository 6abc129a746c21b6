package vault

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestGateSlidingWindow(t *testing.T) {
	clock := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	g := newGate(clock, RateBudget{Requests: 3, Period: time.Second})
	first := clock.Now()
	for i := 0; i < 3; i++ {
		if _, _, ok := g.take(); !ok {
			t.Fatalf("request %d refused inside the budget", i)
		}
		clock.Step(100 * time.Millisecond)
	}
	retry, cause, ok := g.take()
	if ok || cause != nil || !retry.Equal(first.Add(time.Second)) {
		t.Fatalf("4th request: ok=%v cause=%v retry=%v, want refused until %v", ok, cause, retry, first.Add(time.Second))
	}
	clock.SetTime(first.Add(time.Second))
	if _, _, ok := g.take(); !ok {
		t.Fatal("the oldest send left the window, a slot must be free")
	}
	if _, _, ok := g.take(); ok {
		t.Fatal("the window still holds three sends")
	}
}

// A tenant's huge budget costs memory for the requests actually sent, not the budget.
func TestGateMemoryFollowsTraffic(t *testing.T) {
	clock := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	g := newGate(clock, RateBudget{Requests: 2147483647, Period: time.Second})
	for i := 0; i < 10_000; i++ {
		if _, _, ok := g.take(); !ok {
			t.Fatal("refused under a huge budget")
		}
		clock.Step(time.Millisecond) // ~1,000 sends stay inside each one-second window
	}
	if held := len(g.sent) - g.head; held > 1001 {
		t.Fatalf("the window holds %d sends, want at most the ~1,000 of the last second", held)
	}
	if c := cap(g.sent); c > 4096 {
		t.Fatalf("backing array of %d slots for ~1,000 live sends", c)
	}
}
