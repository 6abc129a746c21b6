package vault

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxPause bounds how long a provider can make us wait: a garbage header must not stall a
// connection for days.
const maxPause = 24 * time.Hour

// retryAt reads when the provider allows the next request: Retry-After (seconds or an
// HTTP date) on any status, else x-ratelimit-remaining: 0 with its reset time. Zero when
// the response asks for no pause; asked is the Retry-After wait itself, if one was given.
func retryAt(h http.Header, now time.Time) (at time.Time, asked time.Duration) {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, err := strconv.ParseFloat(v, 64); err == nil && secs >= 0 {
			d := clampPause(time.Duration(secs * float64(time.Second)))
			return now.Add(d), d
		}
		if t, err := http.ParseTime(v); err == nil {
			d := clampPause(t.Sub(now))
			return now.Add(d), d
		}
	}
	if rateLimitExhausted(h) {
		if reset := parseReset(h.Get("X-RateLimit-Reset"), now); !reset.IsZero() {
			return reset, 0
		}
		// Exhausted with no reset: wait a little rather than hammer.
		return now.Add(time.Second), 0
	}
	return time.Time{}, 0
}

// rateLimitExhausted says the answer spent the window's last request.
func rateLimitExhausted(h http.Header) bool {
	return strings.TrimSpace(h.Get("X-RateLimit-Remaining")) == "0"
}

// parseReset reads a rate-limit reset that vendors write as seconds from now, Unix
// seconds or Unix milliseconds.
func parseReset(v string, now time.Time) time.Time {
	n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || n < 0 {
		return time.Time{}
	}
	var t time.Time
	switch {
	case n > 1e12:
		t = time.UnixMilli(int64(n))
	case n > 1e9:
		t = time.Unix(int64(n), 0)
	default:
		t = now.Add(time.Duration(n * float64(time.Second)))
	}
	return now.Add(clampPause(t.Sub(now)))
}

func clampPause(d time.Duration) time.Duration {
	return min(max(d, 0), maxPause)
}
