package vault_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyferry/keyferry/internal/dev/devvault"
	"github.com/keyferry/keyferry/internal/vault"
)

// A login answered with a redirect to another host must not carry the password there,
// and no 307/308 may re-send a request body.
func TestRedirectsNeverCarryCredentialsAway(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		elsewhere.Add(1)
		_, _ = w.Write([]byte(`{"token":"t","A":"1"}`))
	}))
	defer other.Close()
	for _, tc := range []struct {
		name   string
		status int
		login  bool
		msg    string
	}{
		{"login 307 to another host", http.StatusTemporaryRedirect, true, "body again"},
		{"login 302 to another host", http.StatusFound, true, "another host during login"},
		{"POST pull 308 to another host", http.StatusPermanentRedirect, false, "body again"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			elsewhere.Store(0)
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, other.URL+r.URL.Path, tc.status)
			}))
			defer origin.Close()
			cfg := vault.Config{Provider: "http", BaseURL: origin.URL, AllowInsecureHTTP: true, Auth: vault.AuthBearer, Token: canaryToken}
			if tc.login {
				cfg.Auth, cfg.Token, cfg.Username, cfg.Password = vault.AuthLogin, "", canaryUser, canaryPassword
				cfg.Login = vault.LoginConfig{Path: "/auth", Encoding: vault.EncodingForm}
			}
			c := newClient(t, cfg)
			_, err := c.Fetch(context.Background(), vault.Target{Vault: "v", Environment: "e",
				Request: &vault.PullRequest{Method: "POST", Path: "/pull", Body: `{"v":"{vault}"}`}}, 0)
			ve := wantReason(t, err, vault.ReasonNotAllowed)
			if !strings.Contains(ve.Error(), tc.msg) {
				t.Errorf("error %q, want %q", ve.Error(), tc.msg)
			}
			if n := elsewhere.Load(); n != 0 {
				t.Fatalf("the other host received %d requests", n)
			}
		})
	}
}

// A refresh that fails while the token is still valid is no failure: callers keep the
// valid token, and the refresh is tried again after a backoff.
func TestFailedRefreshKeepsTheValidToken(t *testing.T) {
	f := newFixture(t, devvault.Options{TokenTTL: 10 * time.Minute})
	c := newClient(t, f.config("knowledgestack"))
	ctx := context.Background()
	info, err := c.Authenticate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.SetTime(info.RenewAt)
	f.dev.InjectFault("knowledgestack", devvault.Fault{Status: 503, Times: 1, Body: `{"detail":"maintenance"}`})
	if _, err := c.Authenticate(ctx); err != nil {
		t.Fatalf("a failed refresh with a valid token failed the caller: %v", err)
	}
	if _, err := c.Fetch(ctx, target("knowledgestack", "production"), 0); err != nil {
		t.Fatalf("fetch after a failed refresh: %v", err)
	}
	f.clock.Step(time.Second)
	if _, err := c.Authenticate(ctx); err != nil {
		t.Fatal(err)
	}
	if r := f.dev.Count("knowledgestack.refresh"); r != 1 {
		t.Fatalf("refreshes = %d inside the backoff, want the 1 that failed", r)
	}
	f.clock.Step(5 * time.Second)
	if _, err := c.Authenticate(ctx); err != nil {
		t.Fatal(err)
	}
	if r, s := f.dev.Count("knowledgestack.refresh"), f.dev.Count("knowledgestack.signin"); r != 2 || s != 1 {
		t.Fatalf("refreshes=%d sign-ins=%d after the backoff, want 2 and 1", r, s)
	}
}

func TestEncodedCredentialsAreRedacted(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte("bad: " + url.QueryEscape(tok) + " " + base64.StdEncoding.EncodeToString([]byte(tok)) +
			" " + base64.RawURLEncoding.EncodeToString([]byte(tok)) + " " + tok))
	}))
	defer hs.Close()
	tok := canaryToken + "/+&\"é"
	c := newClient(t, vault.Config{Provider: "http", BaseURL: hs.URL, AllowInsecureHTTP: true, Auth: vault.AuthBearer, Token: tok})
	_, err := c.Fetch(context.Background(), vault.Target{Vault: "v", Environment: "e", Request: &vault.PullRequest{Path: "/x"}}, 0)
	wantReason(t, err, vault.ReasonUnauthorized)
	for _, form := range []string{tok, url.QueryEscape(tok), base64.StdEncoding.EncodeToString([]byte(tok)), base64.RawURLEncoding.EncodeToString([]byte(tok))} {
		if strings.Contains(err.Error(), form) {
			t.Fatalf("message %q carries the credential as %q", err, form)
		}
	}
	if !strings.Contains(err.Error(), "[redacted]") {
		t.Fatalf("message %q", err)
	}
}
