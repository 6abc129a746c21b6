package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

var now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func TestVerifyEachKind(t *testing.T) {
	secret := []byte("s3cret-shared")
	body := []byte(`{"ref":"refs/heads/main"}`)
	ts := strconv.FormatInt(now.Unix(), 10)
	old := strconv.FormatInt(now.Add(-6*time.Minute).Unix(), 10)
	for _, tc := range []struct {
		name string
		kind Kind
		h    http.Header
		body []byte
		want error
	}{
		{"generic-hmac valid", GenericHMAC, header("X-Timestamp", ts, "X-Signature", Sign(secret, ts+".", body)), body, nil},
		{"generic-hmac wrong secret", GenericHMAC, header("X-Timestamp", ts, "X-Signature", Sign([]byte("other"), ts+".", body)), body, ErrSignature},
		{"generic-hmac body changed", GenericHMAC, header("X-Timestamp", ts, "X-Signature", Sign(secret, ts+".", body)), []byte(`{}`), ErrSignature},
		{"generic-hmac timestamp changed after signing", GenericHMAC, header("X-Timestamp", old, "X-Signature", Sign(secret, ts+".", body)), body, ErrSignature},
		{"generic-hmac stale but well signed", GenericHMAC, header("X-Timestamp", old, "X-Signature", Sign(secret, old+".", body)), body, ErrStale},
		{"generic-hmac from the future", GenericHMAC, header("X-Timestamp", strconv.FormatInt(now.Add(time.Hour).Unix(), 10), "X-Signature", Sign(secret, strconv.FormatInt(now.Add(time.Hour).Unix(), 10)+".", body)), body, ErrStale},
		{"generic-hmac unsigned", GenericHMAC, header("X-Timestamp", ts), body, ErrMissing},
		{"generic-hmac not hex", GenericHMAC, header("X-Timestamp", ts, "X-Signature", "sha256=zz"), body, ErrSignature},
		{"github valid", GitHub, header("X-Hub-Signature-256", Sign(secret, "", body), "X-GitHub-Delivery", "d1", "X-GitHub-Event", "push"), body, nil},
		{"github sha1 only", GitHub, header("X-Hub-Signature", "sha1=abc"), body, ErrMissing},
		{"github wrong", GitHub, header("X-Hub-Signature-256", Sign(secret, "x", body)), body, ErrSignature},
		{"token valid", Token, header("Authorization", "Bearer s3cret-shared"), nil, nil},
		{"token wrong", Token, header("Authorization", "Bearer s3cret-sharee"), nil, ErrSignature},
		{"token missing", Token, header(), nil, ErrMissing},
		{"unknown kind", Kind("basic"), header(), nil, ErrUnknown},
	} {
		_, err := Verify(tc.kind, secret, Call{Header: tc.h, Body: tc.body, Now: now})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	v, _ := Verify(GitHub, secret, Call{Header: header("X-Hub-Signature-256", Sign(secret, "", body), "X-GitHub-Event", "ping", "X-GitHub-Delivery", "d2"), Body: body, Now: now})
	if !v.Ping || v.ReplayKey != "delivery:d2" {
		t.Errorf("github ping verdict %+v", v)
	}
}

func TestPathRevealsNothingAndFollowsTheToken(t *testing.T) {
	a := Path("shop", "ci", []byte("t1"))
	if a == Path("shop", "ci", []byte("t2")) || a == Path("shopc", "i", []byte("t1")) || a == Path("shop", "ci2", []byte("t1")) {
		t.Error("paths collide")
	}
	if a != Path("shop", "ci", []byte("t1")) || len(a) != len("/hook/")+64 {
		t.Errorf("path %q", a)
	}
}

func TestReplaysAreRefusedWithinTheWindow(t *testing.T) {
	r := &Replays{Window: 10 * time.Minute, Max: 3}
	if r.Seen("a", now) || !r.Seen("a", now.Add(time.Minute)) {
		t.Fatal("a replay within the window was not seen")
	}
	if r.Seen("a", now.Add(11*time.Minute)) {
		t.Error("a call after the window counted as a replay")
	}
	for i := range 10 {
		r.Seen(fmt.Sprint("k", i), now.Add(12*time.Minute))
	}
	if len(r.seen) > 3 || len(r.order) > 3 {
		t.Errorf("memory %d/%d entries, want at most 3", len(r.seen), len(r.order))
	}
}

func TestLimitsBoundEachSourceAndAll(t *testing.T) {
	l := &Limits{PerSource: 1, PerSourceBurst: 2, Global: 1, GlobalBurst: 3, MaxSources: 2}
	got := []bool{l.Allow("a", now), l.Allow("a", now), l.Allow("a", now), l.Allow("b", now), l.Allow("c", now)}
	want := []bool{true, true, false, true, false} // a's burst is 2; the global burst of 3 is spent by c
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Allow sequence %v, want %v", got, want)
		}
	}
	if len(l.sources) > 2 {
		t.Errorf("%d sources remembered, want at most 2", len(l.sources))
	}
	if !l.Allow("a", now.Add(10*time.Second)) {
		t.Error("a is still refused after its rate refilled")
	}
}

// 5,000 hooks over 10 s make at most 10 rounds (one a second), and none is lost: the last
// hook is followed by a round.
func TestRoundsAtMostOnePerInterval(t *testing.T) {
	clk := clocktesting.NewFakeClock(now)
	var rounds atomic.Int32
	var mu sync.Mutex
	var lastRound time.Time
	r := &Rounds{Interval: time.Second, Clock: clk, Run: func(string) {
		rounds.Add(1)
		mu.Lock()
		lastRound = clk.Now()
		mu.Unlock()
	}}
	var lastHook time.Time
	for i := range 5000 {
		r.Ask("shop/ci")
		lastHook = clk.Now()
		clk.Step(2 * time.Millisecond) // 5,000 hooks in 10 s
		if i%50 == 0 {
			time.Sleep(2 * time.Millisecond) // let a due round run before fake time moves on
		}
	}
	for range 20 { // let the last round, due within a second, run
		time.Sleep(10 * time.Millisecond)
		clk.Step(100 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if n := rounds.Load(); n > 11 || n < 5 {
		t.Errorf("%d rounds for 5,000 hooks in 10 s, want at most 10 (+ the last)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if lastRound.Before(lastHook) {
		t.Errorf("the last hook (%v) was not followed by a round (last at %v)", lastHook, lastRound)
	}
}
