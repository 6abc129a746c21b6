package webhook

import (
	"io"
	"net"
	"net/http"
	"time"
)

// Receiver is what the handler knows of one RefreshReceiver: where it listens, how it
// authenticates callers, and its name for rounds and metrics ("namespace/name").
type Receiver struct {
	Key       string
	Kind      Kind
	Secret    []byte
	Suspended bool
}

// Handler answers hooks. Every check runs before anything is touched, cheapest first:
// the rate limits, the method, the path, the body size, the signature, the replay memory.
// A refused call costs no API server write and no provider request, and is answered with
// a bare status (404 for an unknown path, 401 for a failed check, 413 for a body over
// 64 KiB, 429 over a limit). An accepted call asks Rounds for a round of its receiver.
type Handler struct {
	Lookup  func(path string) (Receiver, bool)
	Limits  *Limits
	Replays *Replays
	Rounds  *Rounds
	Now     func() time.Time
	// Observe counts each call by receiver ("" when unknown) and result.
	Observe func(receiver, result string)
}

// Results of a call, the metric's result label.
const (
	ResultAccepted    = "accepted"
	ResultMerged      = "merged"
	ResultPing        = "ping"
	ResultSuspended   = "suspended"
	ResultUnknown     = "unknown-path"
	ResultTooLarge    = "too-large"
	ResultRateLimited = "rate-limited"
	ResultMethod      = "method"
)

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := h.Now()
	observe := func(receiver, result string, status int) {
		if h.Observe != nil {
			h.Observe(receiver, result)
		}
		w.WriteHeader(status)
	}
	if !h.Limits.Allow(sourceOf(r), now) {
		observe("", ResultRateLimited, http.StatusTooManyRequests)
		return
	}
	if r.Method != http.MethodPost {
		observe("", ResultMethod, http.StatusMethodNotAllowed)
		return
	}
	rc, ok := h.Lookup(r.URL.Path)
	if !ok {
		observe("", ResultUnknown, http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil || len(body) > MaxBody {
		observe(rc.Key, ResultTooLarge, http.StatusRequestEntityTooLarge)
		return
	}
	v, err := Verify(rc.Kind, rc.Secret, Call{Header: r.Header, Body: body, Now: now})
	if err != nil {
		observe(rc.Key, err.Error(), http.StatusUnauthorized)
		return
	}
	if v.ReplayKey != "" && h.Replays.Seen(rc.Key+"\x00"+v.ReplayKey, now) {
		observe(rc.Key, ErrReplay.Error(), http.StatusUnauthorized)
		return
	}
	switch {
	case v.Ping:
		observe(rc.Key, ResultPing, http.StatusOK)
	case rc.Suspended:
		observe(rc.Key, ResultSuspended, http.StatusAccepted)
	case h.Rounds.Ask(rc.Key):
		observe(rc.Key, ResultMerged, http.StatusAccepted)
	default:
		observe(rc.Key, ResultAccepted, http.StatusAccepted)
	}
}

// sourceOf is the caller's address without its port (the direct peer: a proxy in front
// shares one limit, which errs on the safe side).
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
