package vault

import (
	"context"
	"net/http"
	"net/http/httptest"
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
