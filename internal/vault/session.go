package vault

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/keyferry/keyferry/internal/backoff"
)

// loginTimeout bounds a shared login, whatever the callers' contexts. Failed logins back
// off (backoff.Default), so bad credentials never become a tight login loop.
const loginTimeout = 30 * time.Second

// session is a connection's one session token, shared by all callers.
type session struct {
	c  *Client
	sf singleflight.Group

	mu       sync.Mutex
	tok      string
	cookie   bool // the token came from a Set-Cookie
	obtained time.Time
	expires  time.Time
	lastErr  error
	failedAt time.Time
	failures int
	// A failed refresh falls back to the still-valid token; it is retried with backoff.
	refreshRetry    time.Time
	refreshFailures int
	// keeping: a background login or refresh runs; keepers are called when it ends.
	keeping bool
	keepers []func()
}

// current returns the token held now (for redaction only).
func (s *session) current() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok
}

func (s *session) fromCookie() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cookie
}

func (s *session) info() TokenInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	ti := TokenInfo{ObtainedAt: s.obtained, ExpiresAt: s.expires}
	if s.refreshable() && s.tok != "" {
		ti.RenewAt = renewAt(s.obtained, s.expires)
		if s.refreshRetry.After(ti.RenewAt) {
			ti.RenewAt = s.refreshRetry
		}
	}
	return ti
}

func (s *session) refreshable() bool { return s.c.cfg.Login.RefreshPath != "" }

// keepAlive renews a refreshable session when it is due, so that the password sign-in
// happens once and not once per lapse; it logs in when no token is held (the first time,
// or after a 401). A session that cannot be refreshed is otherwise left alone: it logs
// in again only when a request needs a token.
func (s *session) keepAlive(ctx context.Context) error {
	s.mu.Lock()
	held := s.tok != ""
	s.mu.Unlock()
	if held && !s.refreshable() {
		return nil
	}
	_, err := s.token(ctx)
	return err
}

// renewAt is when a token should be replaced: a tenth of its life before expiry, at most
// five minutes early, so that no request goes out with a token about to die. Short lives
// get at least a quarter of their life (up to 3s), so a keeper that runs a little late
// still finds the token valid to refresh.
func renewAt(obtained, expires time.Time) time.Time {
	life := expires.Sub(obtained)
	margin := min(max(life/10, min(life/4, 3*time.Second)), 5*time.Minute)
	return expires.Add(-margin)
}

// lookup returns the token to use now, or the failure that still holds (a failed login
// backs off); need says a login or refresh must run first.
func (s *session) lookup() (tok string, err error, need bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.c.cfg.Clock.Now()
	if s.tok != "" && (now.Before(renewAt(s.obtained, s.expires)) || (now.Before(s.expires) && now.Before(s.refreshRetry))) {
		return s.tok, nil, false
	}
	if s.lastErr != nil && now.Before(s.failedAt.Add(backoff.Default.After(s.failures))) {
		return "", s.lastErr, false
	}
	return "", nil, true
}

// token returns a valid token, logging in or refreshing once for all concurrent callers.
func (s *session) token(ctx context.Context) (string, error) {
	if tok, err, need := s.lookup(); !need {
		return tok, err
	}
	// The shared login must not die with the first caller's context; it dies with the
	// client.
	ch := s.sf.DoChan("token", func() (any, error) {
		lctx, cancel := context.WithTimeout(s.c.ctx, loginTimeout)
		defer cancel()
		return s.renew(lctx)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		// This caller gave up (its fetch was canceled); the login goes on for the others.
		return "", canceled("login", ctx.Err())
	}
}

// keepAliveAsync is keepAlive without waiting: a login or refresh that must run runs in
// the background (one at a time), ErrPending is returned and done is called when it ends.
func (s *session) keepAliveAsync(done func()) error {
	s.mu.Lock()
	held := s.tok != ""
	s.mu.Unlock()
	if held && !s.refreshable() {
		return nil
	}
	if _, err, need := s.lookup(); !need {
		return err
	}
	s.mu.Lock()
	s.keepers = append(s.keepers, done)
	running := s.keeping
	s.keeping = true
	s.mu.Unlock()
	if !running {
		go func() {
			_, _ = s.token(s.c.ctx)
			s.mu.Lock()
			keepers := s.keepers
			s.keepers, s.keeping = nil, false
			s.mu.Unlock()
			for _, k := range keepers {
				k()
			}
		}()
	}
	return ErrPending
}

// renew refreshes a still-valid token where the provider allows it, else logs in.
func (s *session) renew(ctx context.Context) (string, error) {
	s.mu.Lock()
	now := s.c.cfg.Clock.Now()
	if s.tok != "" && now.Before(renewAt(s.obtained, s.expires)) {
		tok := s.tok // another flight finished first
		s.mu.Unlock()
		return tok, nil
	}
	old, oldValid, oldCookie := s.tok, s.tok != "" && now.Before(s.expires), s.cookie
	s.mu.Unlock()

	if oldValid && s.c.cfg.Login.RefreshPath != "" {
		tok, err := s.exchange(ctx, "refresh", func() (*http.Request, error) {
			req, err := s.c.newRequest(http.MethodPost, s.c.cfg.Login.RefreshPath, nil, "")
			if err == nil {
				s.c.authorize(req, old, oldCookie)
			}
			return req, err
		})
		if err == nil {
			return tok, nil
		}
		if ReasonOf(err) != ReasonUnauthorized {
			// The old token still works for a while: keep it rather than fail callers, and
			// try the refresh again after a backoff.
			s.mu.Lock()
			s.refreshFailures++
			s.refreshRetry = s.c.cfg.Clock.Now().Add(backoff.Default.After(s.refreshFailures))
			s.mu.Unlock()
			return old, nil
		}
	}
	tok, err := s.exchange(ctx, "login", s.loginRequest)
	if err != nil {
		return "", s.fail(err)
	}
	return tok, nil
}

func (s *session) loginRequest() (*http.Request, error) {
	l := s.c.cfg.Login
	var body []byte
	var ctype string
	if l.Encoding == EncodingForm {
		body = []byte(url.Values{l.UsernameField: {s.c.cfg.Username}, l.PasswordField: {s.c.cfg.Password}}.Encode())
		ctype = "application/x-www-form-urlencoded"
	} else {
		body, _ = json.Marshal(map[string]string{l.UsernameField: s.c.cfg.Username, l.PasswordField: s.c.cfg.Password})
		ctype = "application/json"
	}
	return s.c.newRequest(http.MethodPost, l.Path, body, ctype)
}

// exchange sends a login or refresh request and stores the token it returns.
func (s *session) exchange(ctx context.Context, op string, build func() (*http.Request, error)) (string, error) {
	req, err := build()
	if err != nil {
		return "", &Error{Reason: ReasonInvalidConfig, Op: op, Message: "cannot build request: " + sanitize(err.Error())}
	}
	resp, err := s.c.send(ctx, op, req)
	if err != nil {
		if ve, ok := AsError(err); ok && op == "login" && ve.Reason == ReasonForbidden {
			// A login refused with 403 is a credentials problem, whatever the vendor's code.
			ve.Reason = ReasonUnauthorized
		}
		return "", err
	}
	tok, fromCookie, expiresIn := s.extract(resp)
	if tok == "" {
		return "", &Error{Reason: ReasonInvalidResponse, Op: op, StatusCode: resp.status,
			Message: "no token in the response (field " + s.c.cfg.Login.TokenField + cookieHint(s.c.cfg.Login.TokenCookie) + ")"}
	}
	now := s.c.cfg.Clock.Now()
	expires := now.Add(s.c.cfg.Login.TTL)
	if exp, ok := jwtExpiry(tok); ok && exp.After(now) {
		expires = exp
	} else if expiresIn > 0 {
		expires = now.Add(expiresIn)
	}
	s.mu.Lock()
	s.tok, s.cookie, s.obtained, s.expires = tok, fromCookie, now, expires
	s.lastErr, s.failures = nil, 0
	s.refreshRetry, s.refreshFailures = time.Time{}, 0
	s.mu.Unlock()
	return tok, nil
}

func cookieHint(name string) string {
	if name == "" {
		return ""
	}
	return " or cookie " + name
}

func (s *session) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr, s.failedAt = err, s.c.cfg.Clock.Now()
	s.failures++
	if ve, ok := AsError(err); ok && !ve.RetryAt.IsZero() {
		// A pause already holds every request; the backoff must not outlast it needlessly.
		s.failedAt = ve.RetryAt.Add(-backoff.Default.After(s.failures))
	}
	return err
}

// extract reads the token from the JSON field, else the cookie, and expires_in if given.
func (s *session) extract(resp *response) (tok string, fromCookie bool, expiresIn time.Duration) {
	l := s.c.cfg.Login
	var fields map[string]json.RawMessage
	if json.Unmarshal(bytes.TrimSpace(resp.body), &fields) == nil {
		if raw, ok := fields[l.TokenField]; ok {
			_ = json.Unmarshal(raw, &tok)
		}
		if raw, ok := fields["expires_in"]; ok {
			var secs float64
			if json.Unmarshal(raw, &secs) == nil && secs > 0 {
				expiresIn = time.Duration(secs * float64(time.Second))
			}
		}
	}
	if tok == "" && l.TokenCookie != "" {
		for _, ck := range (&http.Response{Header: resp.header}).Cookies() {
			if ck.Name == l.TokenCookie && ck.Value != "" {
				return ck.Value, true, expiresIn
			}
		}
	}
	return tok, false, expiresIn
}

// invalidate drops tok after a 401, unless another caller already replaced it: many
// concurrent 401s on one token cause a single re-login.
func (s *session) invalidate(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == tok {
		s.tok, s.cookie = "", false
	}
}

// signOut invalidates the session at the provider (best effort) and forgets it.
func (s *session) signOut(ctx context.Context) {
	s.mu.Lock()
	tok, fromCookie, valid := s.tok, s.cookie, s.tok != "" && s.c.cfg.Clock.Now().Before(s.expires)
	s.tok, s.cookie = "", false
	s.mu.Unlock()
	if !valid || s.c.cfg.Login.SignoutPath == "" {
		return
	}
	req, err := s.c.newRequest(http.MethodPost, s.c.cfg.Login.SignoutPath, nil, "")
	if err != nil {
		return
	}
	s.c.authorize(req, tok, fromCookie)
	_, _ = s.c.send(ctx, "signout", req)
}

// jwtExpiry reads the exp claim of a JWT without verifying it: the provider is the one
// that checks; we only want to know when to renew.
func jwtExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || len(parts[1]) > 8192 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == "" {
		return time.Time{}, false
	}
	secs, err := claims.Exp.Float64()
	if err != nil || secs <= 0 || secs > 1e11 {
		return time.Time{}, false
	}
	return time.Unix(int64(secs), 0), true
}
