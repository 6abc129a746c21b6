package controllers_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// scriptedVault answers with the scripted reply while one is set, else as the dev vault;
// it counts the requests that reached it.
type scriptedVault struct {
	mu       sync.Mutex
	reply    *reply
	requests int
	server   *httptest.Server
}

type reply struct {
	status int
	header map[string]string
	body   string
}

func newScriptedVault(t *testing.T) *scriptedVault {
	t.Helper()
	s := &scriptedVault{}
	s.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests++
		rep := s.reply
		s.mu.Unlock()
		if rep == nil {
			dev.ServeHTTP(w, r)
			return
		}
		for k, v := range rep.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(rep.status)
		_, _ = w.Write([]byte(rep.body))
	}))
	t.Cleanup(s.server.Close)
	return s
}

func (s *scriptedVault) set(r *reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reply = r
}

func (s *scriptedVault) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Item 4 of the report: a binding walks through a run of different failures, one refresh
// each (a merge patch of the annotation, as kubectl annotate --overwrite does), and every
// refresh is answered by what the vault said after it was asked for; while a Retry-After
// pauses the connection, by a status that says until when.
func TestEveryRefreshGetsTheVaultsLaterAnswer(t *testing.T) {
	sv := newScriptedVault(t)
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "kw", "keyway")
	vc.Spec.URL = sv.server.URL + "/keyway"
	b := bindingFor(ns, "app", "kw", "keyway")
	mustCreate(t, cred, vc, b)
	waitReason(t, b, kf.ReasonSynced)

	html := "<!DOCTYPE html><html><body>Bad gateway</body></html>"
	steps := []struct {
		name    string
		reply   *reply
		reason  string
		message string
		paused  bool // answered by the pause in force, without a request
	}{
		{"garbage", &reply{200, nil, "garbage{{"}, kf.ReasonInvalidResponse, "not JSON", false},
		{"oversized", &reply{200, nil, `{"A":"` + strings.Repeat("x", 5<<20) + `"}`}, kf.ReasonInvalidResponse, "exceeds", false},
		{"html", &reply{200, map[string]string{"Content-Type": "text/html"}, html}, kf.ReasonInvalidResponse, "not JSON", false},
		{"503", &reply{503, nil, "upstream down"}, kf.ReasonProviderUnavailable, "HTTP 503", false},
		{"good", nil, kf.ReasonSynced, "keys synced", false},
		{"503 with Retry-After", &reply{503, map[string]string{"Retry-After": "6"}, "maintenance"}, kf.ReasonProviderUnavailable, "retry-after 6s", false},
		{"during the pause", &reply{401, nil, "revoked"}, kf.ReasonProviderUnavailable, "retry-after 6s", true},
		{"401 after the pause", &reply{401, nil, "revoked"}, kf.ReasonUnauthorized, "HTTP 401", false},
		{"good again", nil, kf.ReasonSynced, "keys synced", false},
	}
	var pausedUntil time.Time
	for i, st := range steps {
		// status.retryAfter is shown to the second (truncated): the pause may end up to
		// a second after it.
		if end := pausedUntil.Add(time.Second); !st.paused && time.Now().Before(end) {
			time.Sleep(time.Until(end) + 200*time.Millisecond)
		}
		sv.set(st.reply)
		sent := sv.count()
		value := fmt.Sprintf("step-%d", i)
		asked := time.Now()
		refresh(t, b, value)
		eventually(t, 20*time.Second, st.name+" answered", func() (bool, string) {
			got := getBinding(t, b)
			c := readyCondition(got.Status.Conditions)
			if got.Status.LastHandledRefresh != value || c == nil {
				return false, fmt.Sprintf("refresh %q not handled (handled %q)", value, got.Status.LastHandledRefresh)
			}
			ok := c.Reason == st.reason && strings.Contains(c.Message, st.message)
			if ok && st.reason == kf.ReasonProviderUnavailable && strings.Contains(st.message, "retry-after") {
				if got.Status.RetryAfter == nil {
					return false, "no status.retryAfter while paused"
				}
				pausedUntil = got.Status.RetryAfter.Time
			}
			return ok, fmt.Sprintf("%s: %s", c.Reason, c.Message)
		})
		switch n := sv.count() - sent; {
		case st.paused && n != 0:
			t.Fatalf("%s: %d requests sent while the connection was paused", st.name, n)
		case !st.paused && n == 0:
			t.Fatalf("%s: the refresh was answered without a request sent after it", st.name)
		}
		t.Logf("%s: answered in %s", st.name, time.Since(asked).Round(time.Millisecond))
	}
}
