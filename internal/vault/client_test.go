package vault_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyferry/keyferry/internal/dev/devvault"
	"github.com/keyferry/keyferry/internal/vault"
)

var providers = []string{"keyway", "keystash", "stash", "knowledgestack", "keymint"}

func TestEveryProviderPullsAnEnvironment(t *testing.T) {
	for _, p := range providers {
		t.Run(p, func(t *testing.T) {
			f := newFixture(t, devvault.Options{})
			c := newClient(t, f.config(p))
			snap, err := c.Fetch(context.Background(), target(p, "production"), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(snap.Data, wantProduction) {
				t.Fatalf("got %q, want %q", snap.Data, wantProduction)
			}
		})
	}
}

func TestKnowledgeStackTokenFromCookie(t *testing.T) {
	f := newFixture(t, devvault.Options{KnowledgeStackCookie: true})
	c := newClient(t, f.config("knowledgestack"))
	if _, err := c.Fetch(context.Background(), target("knowledgestack", "production"), 0); err != nil {
		t.Fatal(err)
	}
	if n := f.dev.Count("knowledgestack.signin"); n != 1 {
		t.Fatalf("sign-ins = %d, want 1", n)
	}
}

func TestErrorsCarryReasonStatusAndVendorText(t *testing.T) {
	cases := []struct {
		name     string
		provider string
		env      string
		fault    *devvault.Fault
		setup    func(f *fixture, cfg *vault.Config)
		reason   vault.Reason
		status   int
		message  string
		retryIn  time.Duration
	}{
		{name: "keyway 401", provider: "keyway", env: "production",
			setup:  func(_ *fixture, cfg *vault.Config) { cfg.Token = "kw_live_wrong" },
			reason: vault.ReasonUnauthorized, status: 401, message: "Invalid or revoked API key"},
		{name: "keyway 403 no access", provider: "keyway", env: "production",
			setup:  func(_ *fixture, _ *vault.Config) {},
			reason: vault.ReasonForbidden, status: 403, message: "You do not have access to this repository"},
		{name: "keyway 404 empty environment", provider: "keyway", env: "nope",
			reason: vault.ReasonNotFound, status: 404, message: "No secrets found for environment: nope"},
		{name: "keyway over-limit 500 is a rate limit", provider: "keyway", env: "production",
			fault: &devvault.Fault{Status: 500, Body: `{"title":"Internal Server Error","detail":"Rate limit exceeded, retry later"}`,
				Header: map[string]string{"Retry-After": "120", "X-RateLimit-Remaining": "0"}},
			reason: vault.ReasonRateLimited, status: 500, message: "Rate limit exceeded", retryIn: 120 * time.Second},
		{name: "503 with retry-after is the provider being down", provider: "keyway", env: "production",
			fault: &devvault.Fault{Status: 503, Body: `{"title":"Service Unavailable","detail":"Down for maintenance"}`,
				Header: map[string]string{"Retry-After": "30"}},
			reason: vault.ReasonProviderUnavailable, status: 503, message: "Down for maintenance", retryIn: 30 * time.Second},
		{name: "keystash 429 retry-after 10", provider: "keystash", env: "production",
			fault:  &devvault.Fault{Status: 429, Header: map[string]string{"Retry-After": "10"}},
			reason: vault.ReasonRateLimited, status: 429, retryIn: 10 * time.Second},
		{name: "keymint 429 code 3", provider: "keymint", env: "production",
			fault:  &devvault.Fault{Status: 429, Body: `{"message":"Too many requests","code":3}`, Header: map[string]string{"Retry-After": "60"}},
			reason: vault.ReasonRateLimited, status: 429, message: "Too many requests", retryIn: time.Minute},
		{name: "keymint 403 scope", provider: "keymint", env: "production",
			fault:  &devvault.Fault{Status: 403, Body: `{"message":"Token is missing the licenses:read scope","code":2}`},
			reason: vault.ReasonForbidden, status: 403, message: "missing the licenses:read scope"},
		{name: "knowledgestack 403 list detail", provider: "knowledgestack", env: "production",
			fault:  &devvault.Fault{Status: 403, Body: `{"detail":[{"loc":["path"],"msg":"no permission for tenant"}]}`},
			reason: vault.ReasonForbidden, status: 403, message: "no permission for tenant"},
		{name: "keystash object error", provider: "keystash", env: "production",
			fault:  &devvault.Fault{Status: 404, Body: `{"error":{"code":"NotFound","message":"No such environment.","details":[]}}`},
			reason: vault.ReasonNotFound, status: 404, message: "NotFound: No such environment."},
		{name: "stash 403 without body", provider: "stash", env: "production",
			fault:  &devvault.Fault{Status: 403},
			reason: vault.ReasonForbidden, status: 403},
		{name: "502 html page", provider: "stash", env: "production",
			fault:  &devvault.Fault{Status: 502, Body: "<html><body><h1>502 Bad Gateway</h1></body></html>"},
			reason: vault.ReasonProviderUnavailable, status: 502},
		{name: "garbage json", provider: "keyway", env: "production",
			fault:  &devvault.Fault{Status: 200, Body: `{"data": {"content": "A=1`},
			reason: vault.ReasonInvalidResponse, status: 200, message: "not JSON"},
		{name: "wrong shape", provider: "keymint", env: "production",
			fault:  &devvault.Fault{Status: 200, Body: `{"data":{"license":[1,2]}}`},
			reason: vault.ReasonInvalidResponse, message: "found an array"},
		{name: "oversized body", provider: "keyway", env: "production",
			fault:  &devvault.Fault{Status: 200, Body: `{"data":{"content":"` + strings.Repeat("A", vault.DefaultMaxBodyBytes) + `"}}`},
			reason: vault.ReasonInvalidResponse, message: "exceeds"},
		{name: "timeout", provider: "keymint", env: "production",
			fault:  &devvault.Fault{Status: 200, Delay: 5 * time.Second},
			setup:  func(_ *fixture, cfg *vault.Config) { cfg.RequestTimeout = 100 * time.Millisecond },
			reason: vault.ReasonProviderUnavailable, message: "timed out"},
		{name: "connection refused", provider: "keymint", env: "production",
			setup: func(_ *fixture, cfg *vault.Config) {
				l := httptest.NewServer(http.NotFoundHandler())
				cfg.BaseURL = l.URL
				l.Close()
			},
			reason: vault.ReasonProviderUnavailable, message: "connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, devvault.Options{})
			cfg := f.config(tc.provider)
			tgt := target(tc.provider, tc.env)
			if tc.name == "keyway 403 no access" {
				tgt.Vault = "acme/secret"
			}
			if tc.setup != nil {
				tc.setup(f, &cfg)
			}
			c := newClient(t, cfg)
			if cfg.Auth == vault.AuthLogin {
				// Logins are not the subject here: let them succeed first.
				if _, err := c.Authenticate(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if tc.fault != nil {
				f.dev.InjectFault(tc.provider, *tc.fault)
			}
			_, err := c.Fetch(context.Background(), tgt, 0)
			ve := wantReason(t, err, tc.reason)
			if tc.status != 0 && ve.StatusCode != tc.status {
				t.Errorf("status %d, want %d", ve.StatusCode, tc.status)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("message %q does not contain %q", err, tc.message)
			}
			if tc.status != 0 && !strings.Contains(err.Error(), "HTTP "+strconv.Itoa(tc.status)) {
				t.Errorf("message %q does not name HTTP %d", err, tc.status)
			}
			if tc.retryIn != 0 {
				if !ve.RetryAt.Equal(f.clock.Now().Add(tc.retryIn)) {
					t.Errorf("retryAt %v, want now+%v", ve.RetryAt, tc.retryIn)
				}
				if want := fmt.Sprintf("HTTP %d with retry-after %ds", tc.status, int(tc.retryIn.Seconds())); !strings.Contains(err.Error(), want) {
					t.Errorf("message %q does not contain %q", err, want)
				}
				// A request held by the pause tells the same story, without being sent.
				before := f.dev.Counts()
				_, err := c.Fetch(context.Background(), target(tc.provider, "staging"), 0)
				held := wantReason(t, err, tc.reason)
				if !held.Held || held.StatusCode != tc.status || !strings.Contains(err.Error(), tc.message) || !held.RetryAt.Equal(ve.RetryAt) {
					t.Errorf("held request says %q (held %v, status %d, retryAt %v)", err, held.Held, held.StatusCode, held.RetryAt)
				}
				if after := f.dev.Counts(); !maps.Equal(before, after) {
					t.Errorf("a request left during the pause: %v -> %v", before, after)
				}
			}
			assertNoCanary(t, err.Error())
			if strings.Contains(err.Error(), "<") {
				t.Errorf("message carries markup: %q", err)
			}
		})
	}
}

func assertNoCanary(t *testing.T, s string) {
	t.Helper()
	for _, c := range []string{canaryToken, canaryKeymint, canaryStashKey, canaryPassword, canaryValue, "CANARY"} {
		if strings.Contains(s, c) {
			t.Fatalf("message leaks a credential or secret value: %q", s)
		}
	}
}

func TestCredentialsEchoedByTheProviderAreRedacted(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte("bad token: " + r.Header.Get("Authorization")))
	}))
	defer hs.Close()
	c := newClient(t, vault.Config{Provider: "http", BaseURL: hs.URL, AllowInsecureHTTP: true,
		Auth: vault.AuthBearer, Token: canaryToken})
	_, err := c.Fetch(context.Background(), vault.Target{Vault: "v", Environment: "e",
		Request: &vault.PullRequest{Path: "/x"}}, 0)
	wantReason(t, err, vault.ReasonUnauthorized)
	assertNoCanary(t, err.Error())
	if !strings.Contains(err.Error(), "[redacted]") {
		t.Fatalf("message %q", err)
	}
}

func TestRetryAfterPausesTheWholeConnection(t *testing.T) {
	f := newFixture(t, devvault.Options{})
	c := newClient(t, f.config("keyway"))
	f.dev.InjectFault("keyway", devvault.Fault{Status: 429, Times: 1, Header: map[string]string{
		"Retry-After": f.clock.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)}})
	_, err := c.Fetch(context.Background(), target("keyway", "production"), 0)
	ve := wantReason(t, err, vault.ReasonRateLimited)
	if !ve.RetryAt.Equal(f.clock.Now().Add(90 * time.Second)) {
		t.Fatalf("retryAt %v (HTTP date form)", ve.RetryAt)
	}
	// Another environment on the same connection waits too, without a request.
	before := f.dev.Count("keyway.pull")
	f.clock.Step(10 * time.Second)
	_, err = c.Fetch(context.Background(), target("keyway", "staging"), 0)
	ve = wantReason(t, err, vault.ReasonRateLimited)
	if got := f.dev.Count("keyway.pull"); got != before {
		t.Fatalf("a request left during the pause (%d -> %d)", before, got)
	}
	if p := c.Pause(); p == nil || !ve.RetryAt.Equal(p.RetryAt) {
		t.Fatalf("callers are not told when to come back: %v", ve.RetryAt)
	}
	f.clock.Step(81 * time.Second)
	if _, err := c.Fetch(context.Background(), target("keyway", "staging"), 0); err != nil {
		t.Fatalf("after the pause: %v", err)
	}
}

func TestExhaustedRateLimitHeaderPauses(t *testing.T) {
	f := newFixture(t, devvault.Options{KeywayLimit: 2, KeywayWindow: time.Minute})
	c := newClient(t, f.config("keyway"))
	for i := 0; i < 2; i++ {
		if _, err := c.Fetch(context.Background(), target("keyway", "production"), 0); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	// The second answer said remaining 0: the third request must not leave.
	_, err := c.Fetch(context.Background(), target("keyway", "production"), 0)
	ve := wantReason(t, err, vault.ReasonRateLimited)
	if got := f.dev.Count("keyway.pull"); got != 2 {
		t.Fatalf("pulls = %d, want 2 (the exhausted limit must hold the third)", got)
	}
	if !ve.RetryAt.Equal(f.clock.Now().Add(time.Minute)) {
		t.Fatalf("retryAt %v, want the reset", ve.RetryAt)
	}
}

func TestClientBudgetHoldsRequests(t *testing.T) {
	f := newFixture(t, devvault.Options{})
	cfg := f.config("keyway")
	cfg.Budget = vault.RateBudget{Requests: 3, Period: time.Minute}
	c := newClient(t, cfg)
	for i := 0; i < 3; i++ {
		if _, err := c.Fetch(context.Background(), target("keyway", "production"), 0); err != nil {
			t.Fatal(err)
		}
		f.clock.Step(time.Second)
	}
	_, err := c.Fetch(context.Background(), target("keyway", "production"), 0)
	ve := wantReason(t, err, vault.ReasonRateLimited)
	if want := f.clock.Now().Add(57 * time.Second); !ve.RetryAt.Equal(want) {
		t.Fatalf("retryAt %v, want %v", ve.RetryAt, want)
	}
	if got := f.dev.Count("keyway.pull"); got != 3 {
		t.Fatalf("pulls = %d, want 3", got)
	}
	f.clock.Step(57 * time.Second)
	if _, err := c.Fetch(context.Background(), target("keyway", "production"), 0); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestLoginTokenLivesItsTTLThenRenews(t *testing.T) {
	f := newFixture(t, devvault.Options{TokenTTL: time.Hour})
	c := newClient(t, f.config("keystash"))
	info, err := c.Authenticate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !info.ExpiresAt.Equal(f.clock.Now().Add(time.Hour)) {
		t.Fatalf("expiry %v, want now+1h from the JWT exp", info.ExpiresAt)
	}
	for i := 0; i < 5; i++ {
		if _, err := c.Fetch(context.Background(), target("keystash", "production"), 0); err != nil {
			t.Fatal(err)
		}
		f.clock.Step(10 * time.Minute) // 50 minutes in all: still before the renewal margin
	}
	if n := f.dev.Count("keystash.login"); n != 1 {
		t.Fatalf("logins = %d during one token lifetime, want 1", n)
	}
	f.clock.Step(6 * time.Minute)
	if _, err := c.Fetch(context.Background(), target("keystash", "production"), 0); err != nil {
		t.Fatal(err)
	}
	if n := f.dev.Count("keystash.login"); n != 2 {
		t.Fatalf("logins = %d, want a second one before the token expired", n)
	}
}

func TestConfiguredTTLAppliesWithoutJWT(t *testing.T) {
	var logins int
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/auth" {
			logins++
			_, _ = w.Write([]byte(`{"token":"opaque-session-token"}`))
			return
		}
		_, _ = w.Write([]byte(`{"A":"1"}`))
	}))
	defer hs.Close()
	f := newFixture(t, devvault.Options{})
	c := newClient(t, vault.Config{Provider: "http", BaseURL: hs.URL, AllowInsecureHTTP: true, Clock: f.clock,
		Auth: vault.AuthLogin, Username: "u", Password: "p",
		Login: vault.LoginConfig{Path: "/auth", Encoding: vault.EncodingJSON, TTL: 20 * time.Minute}})
	info, err := c.Authenticate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !info.ExpiresAt.Equal(f.clock.Now().Add(20 * time.Minute)) {
		t.Fatalf("expiry %v, want the configured 20m", info.ExpiresAt)
	}
}

func TestKnowledgeStackRefreshesAndSignsOut(t *testing.T) {
	f := newFixture(t, devvault.Options{TokenTTL: 30 * time.Minute})
	c := newClient(t, f.config("knowledgestack"))
	ctx := context.Background()
	if _, err := c.Fetch(ctx, target("knowledgestack", "production"), 0); err != nil {
		t.Fatal(err)
	}
	f.clock.Step(28 * time.Minute) // inside the renewal margin, token still valid
	if _, err := c.Fetch(ctx, target("knowledgestack", "production"), 0); err != nil {
		t.Fatal(err)
	}
	if s, r := f.dev.Count("knowledgestack.signin"), f.dev.Count("knowledgestack.refresh"); s != 1 || r != 1 {
		t.Fatalf("sign-ins=%d refreshes=%d, want 1 and 1 (refresh instead of a new sign-in)", s, r)
	}
	if n := f.dev.ActiveSessions(); n != 1 {
		t.Fatalf("active sessions = %d, want 1", n)
	}
	c.Close(ctx)
	if n := f.dev.ActiveSessions(); n != 0 || f.dev.Count("knowledgestack.signout") != 1 {
		t.Fatalf("after Close: active sessions = %d, signouts = %d", n, f.dev.Count("knowledgestack.signout"))
	}
}

func TestAuthenticateKeepsARefreshableSessionAlive(t *testing.T) {
	f := newFixture(t, devvault.Options{TokenTTL: 10 * time.Minute})
	ctx := context.Background()
	ks := newClient(t, f.config("knowledgestack"))
	info, err := ks.Authenticate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A keeper calling at RenewAt, over five token lifetimes and no fetch at all, signs
	// in once and refreshes every lifetime.
	for i := 0; i < 5; i++ {
		if info.RenewAt.IsZero() || !info.RenewAt.Before(info.ExpiresAt) {
			t.Fatalf("renewAt %v, expiresAt %v", info.RenewAt, info.ExpiresAt)
		}
		f.clock.SetTime(info.RenewAt)
		if info, err = ks.Authenticate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s, r := f.dev.Count("knowledgestack.signin"), f.dev.Count("knowledgestack.refresh"); s != 1 || r != 5 {
		t.Fatalf("sign-ins=%d refreshes=%d, want 1 and 5", s, r)
	}
	if _, err := ks.Fetch(ctx, target("knowledgestack", "production"), 0); err != nil {
		t.Fatalf("the refreshed token does not work: %v", err)
	}

	// Keystash has no refresh endpoint: its session is renewed only when a request needs it.
	kst := newClient(t, f.config("keystash"))
	info, err = kst.Authenticate(ctx)
	if err != nil || !info.RenewAt.IsZero() {
		t.Fatalf("keystash: %v, renewAt %v (want none)", err, info.RenewAt)
	}
	f.clock.Step(2 * time.Hour)
	if _, err := kst.Authenticate(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.dev.Count("keystash.login"); n != 1 {
		t.Fatalf("keystash logins = %d with no request needing a token, want 1", n)
	}
	if _, err := kst.Fetch(ctx, target("keystash", "production"), 0); err != nil {
		t.Fatal(err)
	}
	if n := f.dev.Count("keystash.login"); n != 2 {
		t.Fatalf("keystash logins = %d after a fetch with a lapsed token, want 2", n)
	}
}

func TestUnauthorizedReloginsExactlyOnce(t *testing.T) {
	f := newFixture(t, devvault.Options{})
	c := newClient(t, f.config("keystash"))
	ctx := context.Background()
	if _, err := c.Authenticate(ctx); err != nil {
		t.Fatal(err)
	}
	// The session dies at the provider: one 401, then a re-login and a retry succeed.
	f.dev.InjectFault("keystash", devvault.Fault{Status: 401, Times: 1,
		Body: `{"error":{"code":"Unauthorized","message":"expired"}}`})
	if _, err := c.Fetch(ctx, target("keystash", "production"), 0); err != nil {
		t.Fatal(err)
	}
	if l, s := f.dev.Count("keystash.login"), f.dev.Count("keystash.secrets"); l != 2 || s != 2 {
		t.Fatalf("logins=%d secrets=%d, want 2 and 2 (one 401, one retry)", l, s)
	}
	// A provider that keeps answering 401 gets one retry, not a loop.
	f.clock.Step(time.Second) // Keystash's budget is 5 requests per second
	f.dev.InjectFault("keystash", devvault.Fault{Status: 401, Body: `{"error":{"code":"Unauthorized","message":"nope"}}`})
	_, err := c.Fetch(ctx, target("keystash", "production"), 0)
	wantReason(t, err, vault.ReasonUnauthorized)
	// The fault also answers the re-login with 401: one re-login, then the error.
	if l := f.dev.Count("keystash.login"); l != 3 {
		t.Fatalf("logins = %d, want exactly one more re-login", l)
	}
}

func TestForbiddenNeverRelogins(t *testing.T) {
	f := newFixture(t, devvault.Options{})
	c := newClient(t, f.config("keystash"))
	ctx := context.Background()
	tgt := target("keystash", "production")
	tgt.Vault = "acme/secret"
	for i := 0; i < 3; i++ {
		_, err := c.Fetch(ctx, tgt, 0)
		wantReason(t, err, vault.ReasonForbidden)
		f.clock.Step(10 * time.Second)
	}
	if n := f.dev.Count("keystash.login"); n != 1 {
		t.Fatalf("logins = %d after three 403s, want 1", n)
	}
}

func TestBadLoginIsUnauthorizedAndBacksOff(t *testing.T) {
	f := newFixture(t, devvault.Options{})
	cfg := f.config("keystash")
	cfg.Password = "wrong-password"
	c := newClient(t, cfg)
	ctx := context.Background()
	_, err := c.Authenticate(ctx)
	ve := wantReason(t, err, vault.ReasonUnauthorized)
	if ve.StatusCode != 403 || !strings.Contains(err.Error(), "credentials were not valid") {
		t.Fatalf("got %v; want Keystash's 403 credentials message as Unauthorized", err)
	}
	for i := 0; i < 10; i++ {
		_, err = c.Fetch(ctx, target("keystash", "production"), 0)
		wantReason(t, err, vault.ReasonUnauthorized)
	}
	if n := f.dev.Count("keystash.login"); n != 1 {
		t.Fatalf("logins = %d, want 1 (no tight loop)", n)
	}
	f.clock.Step(6 * time.Second)
	_, _ = c.Authenticate(ctx)
	if n := f.dev.Count("keystash.login"); n != 2 {
		t.Fatalf("logins = %d after the backoff, want 2", n)
	}
}

func TestConcurrentColdFetchesShareOneLoginAndOnePull(t *testing.T) {
	f := newFixture(t, devvault.Options{})
	c := newClient(t, f.config("keystash"))
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Fetch(context.Background(), target("keystash", "production"), time.Hour); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if l, s := f.dev.Count("keystash.login"), f.dev.Count("keystash.secrets"); l != 1 || s != 1 {
		t.Fatalf("100 concurrent fetches: logins=%d pulls=%d, want 1 and 1", l, s)
	}
}

func TestFetchServesFreshSnapshotsAndRefetchesStaleOnes(t *testing.T) {
	f := newFixture(t, devvault.Options{})
	c := newClient(t, f.config("keyway"))
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		if _, err := c.Fetch(ctx, target("keyway", "production"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.dev.Count("keyway.pull"); n != 1 {
		t.Fatalf("pulls = %d for 50 fetches within the interval, want 1", n)
	}
	f.dev.SetSecret("acme/payments", "production", "DB_USER", "changed")
	f.clock.Step(61 * time.Minute)
	snap, err := c.Fetch(ctx, target("keyway", "production"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Data["DB_USER"] != "changed" || f.dev.Count("keyway.pull") != 2 {
		t.Fatalf("a stale snapshot was not refetched")
	}
	// A failure answers every caller for a moment instead of costing a request each.
	f.dev.InjectFault("keyway", devvault.Fault{Status: 503})
	for i := 0; i < 10; i++ {
		_, err := c.Fetch(ctx, target("keyway", "staging"), 0)
		wantReason(t, err, vault.ReasonProviderUnavailable)
	}
	if n := f.dev.Count("keyway.pull"); n != 3 {
		t.Fatalf("pulls = %d, want one for ten failing fetches", n)
	}
}

func TestRedirectsNeverCarryCredentialsElsewhere(t *testing.T) {
	var got http.Header
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		_, _ = w.Write([]byte(`{"data":{"A":"1"}}`))
	}))
	defer other.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/elsewhere", http.StatusFound)
	}))
	defer origin.Close()
	for _, cfg := range []vault.Config{
		{Provider: "stash", Auth: vault.AuthAPIKey, Token: canaryStashKey},
		{Provider: "keyway", Auth: vault.AuthBearer, Token: canaryToken},
	} {
		cfg.BaseURL, cfg.AllowInsecureHTTP = strings.Replace(origin.URL, "127.0.0.1", "localhost", 1), true
		c := newClient(t, cfg)
		if _, err := c.Fetch(context.Background(), vault.Target{Vault: "v", Environment: "e",
			Request: &vault.PullRequest{Path: "/x", DataPath: "data"}}, 0); err != nil {
			t.Fatal(err)
		}
		if got.Get("Authorization") != "" || got.Get("X-Stash-Api-Key") != "" {
			t.Fatalf("%s: credentials followed the redirect to another host: %v", cfg.Provider, got)
		}
		if !strings.HasPrefix(got.Get("User-Agent"), "keyferry/") {
			t.Fatalf("User-Agent %q", got.Get("User-Agent"))
		}
	}
}

func TestCABundleIsTrusted(t *testing.T) {
	dev := devvault.New(testData(), devvault.Options{})
	hs := httptest.NewTLSServer(dev)
	defer hs.Close()
	cfg := vault.Config{Provider: "keyway", BaseURL: hs.URL + "/keyway", Auth: vault.AuthBearer, Token: canaryToken}
	_, err := newClient(t, cfg).Fetch(context.Background(), target("keyway", "production"), 0)
	if ve := wantReason(t, err, vault.ReasonProviderUnavailable); !strings.Contains(ve.Message, "TLS") {
		t.Fatalf("untrusted server: %v", err)
	}
	cfg.CABundle = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw})
	if _, err := newClient(t, cfg).Fetch(context.Background(), target("keyway", "production"), 0); err != nil {
		t.Fatalf("with the CA bundle: %v", err)
	}
}

func TestPlainHTTPNeedsOptIn(t *testing.T) {
	_, err := vault.New(vault.Config{Provider: "keyway", BaseURL: "http://127.0.0.1:1", Auth: vault.AuthBearer, Token: "t"}, vault.Hooks{})
	wantReason(t, err, vault.ReasonInvalidConfig)
}

func TestPlaceholdersAreEscaped(t *testing.T) {
	var gotPath, gotQuery, gotBody string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotQuery = r.URL.EscapedPath(), r.URL.RawQuery
		b := make([]byte, 512)
		n, _ := r.Body.Read(b)
		gotBody = string(b[:n])
		_, _ = w.Write([]byte(`{}`))
	}))
	defer hs.Close()
	c := newClient(t, vault.Config{Provider: "http", BaseURL: hs.URL + "/api", AllowInsecureHTTP: true, Auth: vault.AuthBearer, Token: "t"})
	_, err := c.Fetch(context.Background(), vault.Target{Vault: "team a/app?x", Environment: `prod&"x"`,
		Request: &vault.PullRequest{Method: "POST", Path: "/v1/{vault}/env/{environment}?e={environment}",
			Body: `{"vault":"{vault}","env":"{environment}"}`}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if gotPath != "/api/v1/team%20a/app%3Fx/env/prod&%22x%22" {
		t.Errorf("path %q", gotPath)
	}
	if gotQuery != "e=prod%26%22x%22" {
		t.Errorf("query %q", gotQuery)
	}
	if gotBody != `{"vault":"team a/app?x","env":"prod\u0026\"x\""}` {
		t.Errorf("body %q", gotBody)
	}
}

func TestRegistryReusesAndReplacesClients(t *testing.T) {
	f := newFixture(t, devvault.Options{})
	r := vault.NewRegistry(nil, nil)
	cfg := f.config("knowledgestack")
	c1, err := r.Client("ns/ks", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c2, _ := r.Client("ns/ks", cfg); c2 != c1 {
		t.Fatal("same config built a new client")
	}
	if _, err := c1.Authenticate(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg.Password = canaryPassword + "-rotated"
	f.dev.RevokeToken("")
	c3, _ := r.Client("ns/ks", cfg)
	if c3 == c1 {
		t.Fatal("rotated credentials reused the old client")
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.dev.Count("knowledgestack.signout") != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if f.dev.Count("knowledgestack.signout") != 1 {
		t.Fatal("the replaced client did not sign out")
	}
	r.Remove("ns/ks")
	if _, ok := r.Get("ns/ks"); ok {
		t.Fatal("removed client still registered")
	}
}
