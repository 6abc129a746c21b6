package webhook

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
)

type fixture struct {
	srv     *httptest.Server
	rounds  atomic.Int32
	mu      sync.Mutex
	results []string
	secret  []byte
	paths   map[Kind]string
}

func newFixture(t *testing.T, limits *Limits) *fixture {
	t.Helper()
	f := &fixture{secret: []byte("shared-secret-for-hooks"), paths: map[Kind]string{}}
	receivers := map[string]Receiver{}
	for _, k := range []Kind{GenericHMAC, GitHub, Token} {
		p := Path("shop", string(k), f.secret)
		f.paths[k] = p
		receivers[p] = Receiver{Key: "shop/" + string(k), Kind: k, Secret: f.secret}
	}
	if limits == nil {
		limits = &Limits{PerSource: rate.Inf, Global: rate.Inf, MaxSources: 16}
	}
	h := &Handler{
		Lookup:  func(p string) (Receiver, bool) { r, ok := receivers[p]; return r, ok },
		Limits:  limits,
		Replays: &Replays{Window: 2 * MaxSkew, Max: 1000},
		Rounds:  &Rounds{Interval: time.Second, Clock: clock.RealClock{}, Run: func(string) { f.rounds.Add(1) }},
		Now:     time.Now,
		Observe: func(_, result string) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.results = append(f.results, result)
		},
	}
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) post(t *testing.T, path string, h http.Header, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, bytes.NewReader(body))
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if b.Len() != 0 {
		t.Errorf("answer to %s carries a body (%d bytes): refusals say nothing", path, b.Len())
	}
	return resp.StatusCode
}

func signed(secret []byte, ts time.Time, body []byte) http.Header {
	s := strconv.FormatInt(ts.Unix(), 10)
	return header("X-Timestamp", s, "X-Signature", Sign(secret, s+".", body))
}

// Every refusal is a bare status and starts no round; a valid call starts one; a replay
// of it is refused.
func TestHandlerRefusesBeforeTouchingAnything(t *testing.T) {
	f := newFixture(t, nil)
	body := []byte(`{"environment":"production"}`)
	p := f.paths[GenericHMAC]
	for _, tc := range []struct {
		name   string
		path   string
		h      http.Header
		body   []byte
		status int
	}{
		{"unknown path", "/hook/0000", signed(f.secret, time.Now(), body), body, http.StatusNotFound},
		{"wrong signature", p, signed([]byte("guess"), time.Now(), body), body, http.StatusUnauthorized},
		{"stale timestamp", p, signed(f.secret, time.Now().Add(-10*time.Minute), body), body, http.StatusUnauthorized},
		{"unsigned", p, header(), body, http.StatusUnauthorized},
		{"oversized body", p, signed(f.secret, time.Now(), bytes.Repeat([]byte("x"), MaxBody+1)), bytes.Repeat([]byte("x"), MaxBody+1), http.StatusRequestEntityTooLarge},
		{"token kind, wrong token", f.paths[Token], header("Authorization", "Bearer nope"), nil, http.StatusUnauthorized},
	} {
		if got := f.post(t, tc.path, tc.h, tc.body); got != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.status)
		}
	}
	time.Sleep(1200 * time.Millisecond)
	if n := f.rounds.Load(); n != 0 {
		t.Fatalf("%d rounds after refusals only", n)
	}
	valid := signed(f.secret, time.Now(), body)
	if got := f.post(t, p, valid, body); got != http.StatusAccepted {
		t.Fatalf("valid call: %d", got)
	}
	if got := f.post(t, p, valid, body); got != http.StatusUnauthorized {
		t.Errorf("replay of a valid call: %d, want 401", got)
	}
	if got := f.post(t, f.paths[Token], header("Authorization", "Bearer "+string(f.secret)), nil); got != http.StatusAccepted {
		t.Errorf("token call: %d", got)
	}
	time.Sleep(1200 * time.Millisecond)
	if n := f.rounds.Load(); n != 2 {
		t.Errorf("%d rounds, want 2 (one per receiver)", n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	joined := strings.Join(f.results, ",")
	for _, want := range []string{ResultUnknown, ErrSignature.Error(), ErrStale.Error(), ErrMissing.Error(), ResultTooLarge, ErrReplay.Error(), ResultAccepted} {
		if !strings.Contains(joined, want) {
			t.Errorf("results %s lack %s", joined, want)
		}
	}
}

// A call as GitHub sends a repository push webhook: accepted; its ping is answered 200
// without a round; a redelivery (same X-GitHub-Delivery) is a replay.
func TestHandlerAcceptsGitHubDeliveries(t *testing.T) {
	f := newFixture(t, nil)
	body := []byte(`{"ref":"refs/heads/main","before":"6113728f","after":"59b20b8d","repository":{"full_name":"acme/payments"},"pusher":{"name":"octocat"}}`)
	h := header("Content-Type", "application/json", "User-Agent", "GitHub-Hookshot/044aadd", "X-GitHub-Event", "push",
		"X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "X-GitHub-Hook-ID", "292430182",
		"X-Hub-Signature", "sha1=ignored", "X-Hub-Signature-256", Sign(f.secret, "", body))
	if got := f.post(t, f.paths[GitHub], h, body); got != http.StatusAccepted {
		t.Fatalf("push delivery: %d", got)
	}
	if got := f.post(t, f.paths[GitHub], h, body); got != http.StatusUnauthorized {
		t.Errorf("redelivery: %d, want 401 (replay)", got)
	}
	ping := []byte(`{"zen":"Keep it logically awesome.","hook_id":292430182}`)
	hp := header("X-GitHub-Event", "ping", "X-GitHub-Delivery", "ping-1", "X-Hub-Signature-256", Sign(f.secret, "", ping))
	if got := f.post(t, f.paths[GitHub], hp, ping); got != http.StatusOK {
		t.Errorf("ping: %d, want 200", got)
	}
	time.Sleep(1200 * time.Millisecond)
	if n := f.rounds.Load(); n != 1 {
		t.Errorf("%d rounds, want 1 (the push; not the ping)", n)
	}
}

// A flood from one source is cut by its own limit, before any path lookup.
func TestHandlerLimitsAFloodingSource(t *testing.T) {
	f := newFixture(t, &Limits{PerSource: 1, PerSourceBurst: 5, Global: 1000, GlobalBurst: 1000, MaxSources: 16})
	limited := 0
	for range 50 {
		if f.post(t, "/hook/unknown", nil, nil) == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited < 40 {
		t.Errorf("%d of 50 flooding calls were limited, want at least 40", limited)
	}
}
