package vault_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyferry/keyferry/internal/dev/devvault"
	"github.com/keyferry/keyferry/internal/vault"
)

// hangingVault answers nothing until released; it counts requests that arrived, that are
// still open, and that the client gave up (canceled).
type hangingVault struct {
	arrived, open, canceled atomic.Int32
	release                 chan struct{}
	once                    sync.Once
}

func newHangingVault(t *testing.T) (*hangingVault, string) {
	h := &hangingVault{release: make(chan struct{})}
	url := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.arrived.Add(1)
		h.open.Add(1)
		defer h.open.Add(-1)
		select {
		case <-r.Context().Done():
			h.canceled.Add(1)
		case <-h.release:
			_, _ = w.Write([]byte(`{"A":"1"}`))
		}
	}))
	t.Cleanup(h.free)
	return h, url
}

func (h *hangingVault) free() { h.once.Do(func() { close(h.release) }) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hangingClient(t *testing.T, url string, timeout time.Duration) *vault.Client {
	return newClient(t, vault.Config{Provider: "http", BaseURL: url, AllowInsecureHTTP: true,
		Auth: vault.AuthBearer, Token: "t0ken", RequestTimeout: timeout})
}

func envTarget(env string) vault.Target {
	return vault.Target{Vault: "v", Environment: env, Request: &vault.PullRequest{Path: "/{environment}"}}
}

// Start never holds its caller: against a vault that never answers it returns at once,
// and the request goes on in the background, at most a few per connection however many
// environments wait.
func TestStartNeverWaitsForTheVault(t *testing.T) {
	h, url := newHangingVault(t)
	c := hangingClient(t, url, 5*time.Minute)
	t.Cleanup(func() { c.Close(context.Background()) })
	for i := range 40 {
		began := time.Now()
		_, err := c.Start(envTarget(fmt.Sprint("e", i)), vault.Want{MaxAge: time.Hour}, fmt.Sprint("b", i), func(vault.Result) {})
		if !errors.Is(err, vault.ErrPending) {
			t.Fatalf("Start: %v, want ErrPending", err)
		}
		if d := time.Since(began); d > time.Second {
			t.Fatalf("Start took %s", d)
		}
	}
	waitFor(t, "requests in flight", func() bool { return h.open.Load() >= 8 })
	time.Sleep(100 * time.Millisecond)
	if n := h.arrived.Load(); n > 8 {
		t.Fatalf("%d requests in flight on one connection, want at most 8", n)
	}
}

// A fetch nobody waits for any more is canceled; one that others still wait for is not.
func TestWithdrawCancelsARequestNobodyWaitsFor(t *testing.T) {
	h, url := newHangingVault(t)
	c := hangingClient(t, url, 5*time.Minute)
	tgt := envTarget("e")
	for _, id := range []string{"a", "b"} {
		if _, err := c.Start(tgt, vault.Want{MaxAge: time.Hour}, id, func(vault.Result) {}); !errors.Is(err, vault.ErrPending) {
			t.Fatal(err)
		}
	}
	waitFor(t, "the request", func() bool { return h.open.Load() == 1 })
	c.Withdraw(tgt, "a")
	time.Sleep(50 * time.Millisecond)
	if h.canceled.Load() != 0 {
		t.Fatal("the request was canceled while another caller still waits for it")
	}
	c.Withdraw(tgt, "b")
	waitFor(t, "the request canceled", func() bool { return h.canceled.Load() == 1 })
	if h.arrived.Load() != 1 {
		t.Fatalf("%d requests for two callers of one target", h.arrived.Load())
	}
}

// Closing a client (connection deleted or changed) cancels its requests, and whoever
// waited hears so.
func TestCloseCancelsRequestsInFlight(t *testing.T) {
	h, url := newHangingVault(t)
	c := hangingClient(t, url, 5*time.Minute)
	got := make(chan vault.Result, 1)
	if _, err := c.Start(envTarget("e"), vault.Want{MaxAge: time.Hour}, "a", func(r vault.Result) { got <- r }); !errors.Is(err, vault.ErrPending) {
		t.Fatal(err)
	}
	waitFor(t, "the request", func() bool { return h.open.Load() == 1 })
	c.Close(context.Background())
	select {
	case r := <-got:
		if !strings.Contains(fmt.Sprint(r.Err), "canceled") {
			t.Fatalf("waiter got %v, want a cancellation", r.Err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was never told")
	}
	waitFor(t, "the request canceled at the vault", func() bool { return h.canceled.Load() == 1 })
}

// A timeout is ProviderUnavailable and names the timeout.
func TestTimeoutNamesTheLimit(t *testing.T) {
	_, url := newHangingVault(t)
	c := hangingClient(t, url, 300*time.Millisecond)
	_, err := c.Fetch(context.Background(), envTarget("e"), 0)
	ve := wantReason(t, err, vault.ReasonProviderUnavailable)
	if !strings.Contains(ve.Error(), "timed out after 300ms") {
		t.Fatalf("message %q does not name the timeout", ve.Error())
	}
}

// A refresh asked for while an older request is in flight, or right after a failure,
// is answered by a request sent after it was asked for.
func TestNotBeforeIsAnsweredByALaterRequest(t *testing.T) {
	var n atomic.Int32
	gate := make(chan struct{})
	url := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		i := n.Add(1)
		if i == 1 {
			<-gate
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`first`))
			return
		}
		_, _ = fmt.Fprintf(w, `{"N":"%d"}`, i)
	}))
	c := hangingClient(t, url, 5*time.Second)
	tgt := envTarget("e")
	first := make(chan vault.Result, 1)
	if _, err := c.Start(tgt, vault.Want{MaxAge: time.Hour}, "old", func(r vault.Result) { first <- r }); !errors.Is(err, vault.ErrPending) {
		t.Fatal(err)
	}
	waitFor(t, "the first request", func() bool { return n.Load() == 1 })
	asked := time.Now()
	second := make(chan vault.Result, 1)
	if _, err := c.Start(tgt, vault.Want{MaxAge: time.Hour, NotBefore: asked}, "refresh", func(r vault.Result) { second <- r }); !errors.Is(err, vault.ErrPending) {
		t.Fatal(err)
	}
	close(gate)
	if r := <-first; r.Err == nil {
		t.Fatal("the first caller did not get the first answer")
	}
	r := <-second
	if r.Err != nil || r.Data["N"] != "2" || r.SentAt.Before(asked) {
		t.Fatalf("the refresh got %v %v (sent %s, asked %s), want the second request's answer", r.Data, r.Err, r.SentAt, asked)
	}
	// The failure is held for others, but a refresh asked after it is never answered by it.
	if _, err := c.Start(tgt, vault.Want{MaxAge: time.Hour}, "other", func(vault.Result) {}); err != nil {
		t.Fatalf("a fresh snapshot was not served: %v", err)
	}
	_, err := c.Fetch(context.Background(), tgt, 0)
	if err != nil || n.Load() != 3 {
		t.Fatalf("maxAge 0 did not send a new request (%d requests, %v)", n.Load(), err)
	}
}

// A login that never answers holds nobody: StartAuthenticate returns at once and calls
// back when the login has ended.
func TestStartAuthenticateDoesNotWait(t *testing.T) {
	h, url := newHangingVault(t)
	c := newClient(t, vault.Config{Provider: "knowledgestack", BaseURL: url, AllowInsecureHTTP: true,
		Auth: vault.AuthLogin, Username: canaryUser, Password: canaryPassword, RequestTimeout: 200 * time.Millisecond})
	done := make(chan struct{}, 2)
	began := time.Now()
	if _, err := c.StartAuthenticate(func() { done <- struct{}{} }); !errors.Is(err, vault.ErrPending) {
		t.Fatalf("StartAuthenticate: %v, want ErrPending", err)
	}
	if _, err := c.StartAuthenticate(func() { done <- struct{}{} }); !errors.Is(err, vault.ErrPending) {
		t.Fatalf("second StartAuthenticate: %v", err)
	}
	if d := time.Since(began); d > 100*time.Millisecond {
		t.Fatalf("StartAuthenticate took %s", d)
	}
	<-done
	<-done
	if h.arrived.Load() != 1 {
		t.Fatalf("%d logins for two callers", h.arrived.Load())
	}
	_, err := c.StartAuthenticate(func() { t.Error("called back though nothing ran") })
	ve := wantReason(t, err, vault.ReasonProviderUnavailable)
	if !strings.Contains(ve.Error(), "timed out after 200ms") {
		t.Fatalf("login failure %q does not name the timeout", ve.Error())
	}
}

// A TLS handshake that never completes is bounded on its own, and says so.
func TestHangingTLSHandshakeTimesOut(t *testing.T) {
	dead, err := devvault.NewSilent()
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	c := newClient(t, vault.Config{Provider: "http", BaseURL: strings.Replace(dead.URL(), "http://", "https://", 1),
		Auth: vault.AuthBearer, Token: "t0ken", RequestTimeout: 5 * time.Minute})
	began := time.Now()
	_, err = c.Fetch(context.Background(), envTarget("e"), 0)
	ve := wantReason(t, err, vault.ReasonProviderUnavailable)
	if !strings.Contains(ve.Error(), "TLS handshake timed out after 10s") || time.Since(began) > time.Minute {
		t.Fatalf("after %s: %q", time.Since(began), ve.Error())
	}
}

// A body that trickles in (headers at once, then a byte now and then) is bounded by the
// request timeout as a whole, and holds no caller meanwhile.
func TestTricklingBodyTimesOut(t *testing.T) {
	url := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"A":"`))
		for {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
				_, _ = w.Write([]byte("x"))
				w.(http.Flusher).Flush()
			}
		}
	}))
	c := hangingClient(t, url, 400*time.Millisecond)
	got := make(chan vault.Result, 1)
	began := time.Now()
	if _, err := c.Start(envTarget("e"), vault.Want{MaxAge: time.Hour}, "a", func(r vault.Result) { got <- r }); !errors.Is(err, vault.ErrPending) {
		t.Fatalf("Start: %v, want ErrPending", err)
	}
	if d := time.Since(began); d > 100*time.Millisecond {
		t.Fatalf("Start held its caller %s", d)
	}
	r := <-got
	ve := wantReason(t, r.Err, vault.ReasonProviderUnavailable)
	if !strings.Contains(ve.Error(), "timed out after 400ms") {
		t.Fatalf("trickling body: %q", ve.Error())
	}
}

// A budget spent by retries of a failure names that failure, and the connection's last
// outcome stays the provider's answer, not the hold.
func TestBudgetHoldNamesTheFailureThatSpentIt(t *testing.T) {
	url := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte("token revoked"))
	}))
	c := newClient(t, vault.Config{Provider: "http", BaseURL: url, AllowInsecureHTTP: true, Auth: vault.AuthBearer,
		Token: "t0ken", RequestTimeout: time.Second, Budget: vault.RateBudget{Requests: 2, Period: time.Hour}})
	for range 2 {
		_, err := c.Fetch(context.Background(), envTarget("e"), 0)
		wantReason(t, err, vault.ReasonUnauthorized)
	}
	_, err := c.Fetch(context.Background(), envTarget("e"), 0)
	ve := wantReason(t, err, vault.ReasonRateLimited)
	if !strings.Contains(ve.Error(), "budget spent") || !strings.Contains(ve.Error(), "HTTP 401") {
		t.Fatalf("hold message %q does not name the failure that spent the budget", ve.Error())
	}
	if o := c.LastOutcome(); o.Reason != vault.ReasonUnauthorized {
		t.Fatalf("last outcome %s after a hold, want the provider's Unauthorized", o.Reason)
	}
}
