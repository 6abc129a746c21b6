package vault

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyferry/keyferry/internal/version"
)

// maxInlineWait is the longest a caller is held for the budget (e.g. Keystash's 5/s);
// longer waits are returned as RateLimited with the time to come back.
const maxInlineWait = time.Second

// Client talks to one vault connection. It is safe for concurrent use and meant to live as
// long as its connection's spec and credentials do.
type Client struct {
	cfg    Config
	preset *Preset
	base   *url.URL
	http   *http.Client
	gate   *gate
	// session is the login token cache; nil for static credentials.
	session *session
	pulls   *coalescer
	hooks   Hooks
	outcome outcomeBox
	// token is the static credential (bearer or API key), swapped in place when the
	// credential Secret changes: in-flight requests, the gate and shared pulls survive a
	// rotation. retired keeps the tokens it replaced, still scrubbed from messages.
	tokenMu sync.RWMutex
	token   string
	retired []string
	// ctx lives as long as the client: Close cancels it, and with it every request in
	// flight (a deleted or changed connection leaves nothing hanging).
	ctx    context.Context
	cancel context.CancelFunc

	closeOnce sync.Once
}

// Hooks observe a client's traffic (metrics); every field is optional.
type Hooks struct {
	// Request is called after each request that reached the provider (status 0 when no
	// response arrived).
	Request func(op string, status int)
	// Paused is called when a request was not sent because of a pause or the budget.
	Paused func(op string, byProvider bool, wait time.Duration)
	// Fetch is called for every coalesced fetch; shared says it was served without a
	// request of its own.
	Fetch func(shared bool)
}

// New builds a client from cfg, completing it with its provider's preset.
func New(cfg Config, hooks Hooks) (*Client, error) {
	full, preset, err := cfg.withDefaults()
	if err != nil {
		return nil, &Error{Reason: ReasonInvalidConfig, Op: "configure", Message: err.Error()}
	}
	base, _ := url.Parse(strings.TrimRight(full.BaseURL, "/"))
	hc, err := newHTTPClient(full)
	if err != nil {
		return nil, &Error{Reason: ReasonInvalidConfig, Op: "configure", Message: err.Error()}
	}
	c := &Client{cfg: full, preset: preset, base: base, http: hc, gate: newGate(full.Clock, full.Budget), hooks: hooks, token: full.Token}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if full.Auth == AuthLogin {
		c.session = &session{c: c}
	}
	c.pulls = newCoalescer(c)
	return c, nil
}

// Pause returns the provider's pause in force, with the answer that set it (RetryAt is
// its end); nil when requests may leave.
func (c *Client) Pause() *Error { return c.gate.pause() }

// Authenticate keeps the session of a client that logs in (a no-op for static
// credentials, which are checked by the first real request) and reports the token's life:
// it logs in when no token is held, and refreshes a token that is due where the provider
// has a refresh endpoint. Call it again at TokenInfo.RenewAt.
func (c *Client) Authenticate(ctx context.Context) (TokenInfo, error) {
	if c.session == nil {
		return TokenInfo{}, nil
	}
	if err := c.session.keepAlive(ctx); err != nil {
		return TokenInfo{}, err
	}
	return c.session.info(), nil
}

// TokenInfo describes the current session token, never its value.
type TokenInfo struct {
	ObtainedAt time.Time
	ExpiresAt  time.Time
	// RenewAt is when Authenticate should be called to refresh the token before it
	// lapses; zero when the provider has no refresh endpoint.
	RenewAt time.Time
}

// StartAuthenticate is Authenticate without waiting: when a login or refresh must run, it
// runs in the background, ErrPending is returned, and done is called when it has ended
// (call StartAuthenticate again then for the outcome). No caller is held by a login that
// hangs.
func (c *Client) StartAuthenticate(done func()) (TokenInfo, error) {
	if c.session == nil {
		return TokenInfo{}, nil
	}
	if err := c.session.keepAliveAsync(done); err != nil {
		return TokenInfo{}, err
	}
	return c.session.info(), nil
}

// Close cancels every request in flight, signs the session out (when the provider has a
// sign-out endpoint) and drops it. Use it when the connection is deleted or its
// credentials change.
func (c *Client) Close(ctx context.Context) {
	c.closeOnce.Do(func() {
		c.cancel()
		if c.session != nil {
			c.session.signOut(ctx)
		}
		c.http.CloseIdleConnections()
	})
}

// response is what a request brought back.
type response struct {
	status int
	header http.Header
	body   []byte
}

// send sends one request through the gate, reads the capped body, records any pause the
// provider asks for and turns a non-2xx answer into an *Error.
func (c *Client) send(ctx context.Context, op string, req *http.Request) (*response, error) {
	resp, err := c.sendOnce(ctx, op, req)
	if op != "signout" {
		c.recordOutcome(err)
	}
	return resp, err
}

func (c *Client) sendOnce(ctx context.Context, op string, req *http.Request) (*response, error) {
	if err := c.wait(ctx, op); err != nil {
		return nil, err
	}
	// The limit is the request timeout, or less when the caller's deadline comes first
	// (a login is bounded as a whole); the message of a timeout names it.
	limit := c.cfg.RequestTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < limit {
		limit = time.Until(dl)
	}
	ctx, cancel := context.WithTimeout(withOp(ctx, op), limit)
	defer cancel()
	req = req.WithContext(ctx)
	req.Header.Set("User-Agent", version.UserAgent())
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json, text/plain, */*")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.observe(op, 0)
		return nil, c.redact(transportError(op, err, ctx, limit))
	}
	defer func() { _ = resp.Body.Close() }()
	c.observe(op, resp.StatusCode)
	body, readErr := readCapped(resp.Body, DefaultMaxBodyBytes)
	now := c.cfg.Clock.Now()
	pause, asked := retryAt(resp.Header, now)
	exhausted := rateLimitExhausted(resp.Header)
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	var e *Error
	if !ok {
		reason := reasonForAnswer(resp.StatusCode, exhausted)
		if c.preset.Classify != nil {
			reason = c.preset.Classify(op, resp, body, reason)
		}
		e = c.redact(&Error{Reason: reason, Op: op, StatusCode: resp.StatusCode, RetryAfter: asked,
			Message: errorMessage(c.preset.Dialect, body)})
	}
	if !pause.IsZero() {
		c.gate.pauseUntil(pause, pauseCause(op, resp.StatusCode, asked, exhausted, e))
		if e != nil {
			e.RetryAt = c.gate.pausedUntil()
		}
	}
	if readErr != nil {
		if ctx.Err() != nil {
			return nil, transportError(op, readErr, ctx, limit)
		}
		return nil, &Error{Reason: ReasonInvalidResponse, Op: op, StatusCode: resp.StatusCode, Message: readErr.Error()}
	}
	if e != nil {
		return nil, e
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// pauseCause is what requests held by a pause report: the answer that set it. A 5xx not
// marked as over the limit keeps its ProviderUnavailable; anything else that asks to wait
// is a rate limit (a 401 that spent the last request of a window is held as RateLimited,
// not as Unauthorized).
func pauseCause(op string, status int, asked time.Duration, exhausted bool, answer *Error) Error {
	cause := Error{Reason: ReasonRateLimited, Op: op, StatusCode: status, RetryAfter: asked, Held: true}
	if answer != nil {
		cause.Message = answer.Message
		if answer.Reason == ReasonProviderUnavailable {
			cause.Reason = ReasonProviderUnavailable
		}
	}
	if exhausted && answer == nil {
		cause.Message = "rate limit exhausted (x-ratelimit-remaining: 0)"
	}
	return cause
}

// canceled is the failure of a request its caller gave up (or its client was closed).
func canceled(op string, err error) *Error {
	return &Error{Reason: ReasonProviderUnavailable, Op: op, Message: "request canceled", Err: err}
}

// heldByPause returns the answer that paused the connection, with its end, when a pause
// is in force; nil when requests may leave.
func (c *Client) heldByPause(op string) *Error {
	held := c.gate.pause()
	if held != nil && c.hooks.Paused != nil {
		c.hooks.Paused(op, true, held.RetryAt.Sub(c.cfg.Clock.Now()))
	}
	return held
}

// wait takes a slot from the gate, holding the caller for short budget waits only. A
// request held by a provider's pause fails with the answer that set the pause.
func (c *Client) wait(ctx context.Context, op string) error {
	for {
		retry, cause, ok := c.gate.take()
		if ok {
			return nil
		}
		d := retry.Sub(c.cfg.Clock.Now())
		if c.hooks.Paused != nil {
			c.hooks.Paused(op, cause != nil, d)
		}
		if cause != nil {
			return cause
		}
		if d > maxInlineWait {
			b := c.cfg.Budget
			msg := fmt.Sprintf("client-side rate budget spent (%d requests per %s)", b.Requests, b.Period)
			if last := c.outcome.get(); last.Reason != "" && last.Reason != ReasonRateLimited {
				// The budget is often spent by retries of a failure: name it, or the
				// hold hides the cause (a revoked token shows as a rate limit).
				msg += "; the last answer was " + last.Message
			}
			return &Error{Reason: ReasonRateLimited, Op: op, RetryAt: retry, Held: true, Message: msg}
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return canceled(op, ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Client) observe(op string, status int) {
	if c.hooks.Request != nil {
		c.hooks.Request(op, status)
	}
}

// redact removes any credential that a provider echoed back into its error text, as it
// is or URL-, JSON- or base64-encoded.
func (c *Client) redact(e *Error) *Error {
	secrets := c.cfg.secrets()
	c.tokenMu.RLock()
	for _, t := range append([]string{c.token}, c.retired...) {
		if len(t) >= 4 {
			secrets = append(secrets, t)
		}
	}
	c.tokenMu.RUnlock()
	if c.session != nil {
		if tok := c.session.current(); len(tok) >= 4 {
			secrets = append(secrets, tok)
		}
	}
	for _, s := range secrets {
		for _, form := range encodedForms(s) {
			e.Message = strings.ReplaceAll(e.Message, form, "[redacted]")
		}
	}
	return e
}

// encodedForms are the ways a provider may echo s: verbatim, URL query or path escaped,
// JSON escaped, base64 (standard and URL alphabets, padded or not). Longest first, so a
// form is never left half replaced.
func encodedForms(s string) []string {
	j, _ := json.Marshal(s)
	forms := []string{s, url.QueryEscape(s), url.PathEscape(s), string(j[1 : len(j)-1]),
		base64.StdEncoding.EncodeToString([]byte(s)), base64.RawStdEncoding.EncodeToString([]byte(s)),
		base64.URLEncoding.EncodeToString([]byte(s)), base64.RawURLEncoding.EncodeToString([]byte(s))}
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(forms)
}

// newRequest builds a request for path (URL text, which may hold a query) below the base
// URL.
func (c *Client) newRequest(method, path string, body []byte, contentType string) (*http.Request, error) {
	u, err := url.Parse(c.base.String() + "/" + strings.TrimLeft(path, "/"))
	if err != nil {
		return nil, err
	}
	if u.Host != c.base.Host || u.Scheme != c.base.Scheme {
		return nil, errors.New("request path must stay on the connection's host")
	}
	var r io.Reader = http.NoBody
	if body != nil {
		r = bytes.NewReader(body)
	}
	// send gives the request its real context, with the per-request timeout.
	req, err := http.NewRequestWithContext(context.Background(), method, u.String(), r)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req, nil
}

// authorize puts the credential on req.
func (c *Client) authorize(req *http.Request, tok string, fromCookie bool) {
	switch c.cfg.Auth {
	case AuthAPIKey:
		req.Header.Set(c.cfg.Header, c.staticToken())
	case AuthBearer:
		req.Header.Set("Authorization", "Bearer "+c.staticToken())
	case AuthLogin:
		req.Header.Set("Authorization", "Bearer "+tok)
		if fromCookie && c.cfg.Login.TokenCookie != "" {
			req.AddCookie(&http.Cookie{Name: c.cfg.Login.TokenCookie, Value: tok})
		}
	}
}

func (c *Client) staticToken() string {
	c.tokenMu.RLock()
	defer c.tokenMu.RUnlock()
	return c.token
}

// maxRetiredTokens bounds the replaced tokens a client keeps scrubbing.
const maxRetiredTokens = 4

// RequestTimeout is the longest any request of this client takes.
func (c *Client) RequestTimeout() time.Duration { return c.cfg.RequestTimeout }

// SetToken replaces the static credential in place (a changed Secret, a rotation whose new
// key is proven); requests already sent go on with the token they carry. A
// connection-level failure the old token earned (401, 403) no longer describes the
// connection and is forgotten; a pause the provider set stays (it was the account's).
func (c *Client) SetToken(tok string) {
	c.tokenMu.Lock()
	if tok == c.token {
		c.tokenMu.Unlock()
		return
	}
	c.retired = append([]string{c.token}, c.retired[:min(len(c.retired), maxRetiredTokens-1)]...)
	c.token = tok
	c.tokenMu.Unlock()
	c.outcome.forgetAuthFailure()
}

// doAuthorized sends an authenticated request. A 401 on a session token invalidates it and
// causes exactly one re-login and one retry; a 403 is returned as it is.
func (c *Client) doAuthorized(ctx context.Context, op string, build func() (*http.Request, error)) (*response, error) {
	for attempt := 0; ; attempt++ {
		req, err := build()
		if err != nil {
			return nil, &Error{Reason: ReasonInvalidConfig, Op: op, Message: "cannot build request: " + sanitize(err.Error())}
		}
		var tok string
		var fromCookie bool
		if c.session != nil {
			if tok, err = c.session.token(ctx); err != nil {
				return nil, err
			}
			fromCookie = c.session.fromCookie()
		}
		c.authorize(req, tok, fromCookie)
		resp, err := c.send(ctx, op, req)
		if err == nil {
			return resp, nil
		}
		if ve, ok := AsError(err); ok && ve.Reason == ReasonUnauthorized && c.session != nil && attempt == 0 {
			c.session.invalidate(tok)
			continue
		}
		return nil, err
	}
}
