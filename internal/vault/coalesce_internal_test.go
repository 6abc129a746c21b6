package vault

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// Targets nobody asks for any more are dropped: a deleted binding's environment does not
// stay in memory for the life of the connection.
func TestCoalescerDropsIdleTargets(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"A":"1"}`))
	}))
	defer hs.Close()
	clock := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	c, err := New(Config{Provider: "http", BaseURL: hs.URL, AllowInsecureHTTP: true, Auth: AuthBearer, Token: "t0ken", Clock: clock}, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, env := range []string{"a", "b", "c"} {
		if _, err := c.Fetch(ctx, Target{Vault: "v", Environment: env, Request: &PullRequest{Path: "/" + env}}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	keep := Target{Vault: "v", Environment: "a", Request: &PullRequest{Path: "/a"}}
	for i := 0; i < 11; i++ {
		clock.Step(time.Minute)
		if _, err := c.Fetch(ctx, keep, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.pulls.cached(); n != 1 {
		t.Fatalf("%d targets cached, want only the one still asked for", n)
	}
}

// A target that keeps failing is asked less and less often (the shared error hold doubles
// up to maxErrorHold), and one success starts it again from errorHold.
func TestErrorHoldGrowsWhileTheTargetFails(t *testing.T) {
	var requests, failing atomic.Int32
	failing.Store(1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		if failing.Load() == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"A":"1"}`))
	}))
	defer hs.Close()
	clock := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	c, err := New(Config{Provider: "http", BaseURL: hs.URL, AllowInsecureHTTP: true, Auth: AuthBearer, Token: "t0ken", Clock: clock}, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tgt := Target{Vault: "v", Environment: "e", Request: &PullRequest{Path: "/e"}}
	// Asked every second for 65 s: holds of 5, 10, 20, 30 s → requests at 0, 5, 15, 35, 65.
	for range 66 {
		_, _ = c.Fetch(ctx, tgt, 30*time.Second)
		clock.Step(time.Second)
	}
	if n := requests.Load(); n != 5 {
		t.Fatalf("%d requests in 65 s of failures, want 5 (a fixed 5 s hold: 14)", n)
	}
	failing.Store(0)
	clock.Step(maxErrorHold)
	if _, err := c.Fetch(ctx, tgt, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	failing.Store(1)
	clock.Step(time.Minute) // the snapshot is stale: the next ask sends
	before := requests.Load()
	for range 6 {
		_, _ = c.Fetch(ctx, tgt, 30*time.Second)
		clock.Step(time.Second)
	}
	if n := requests.Load() - before; n != 2 {
		t.Fatalf("%d requests in the 6 s after a success, want 2 (the hold starts again at %v)", n, errorHold)
	}
}
