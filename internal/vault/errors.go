// Package vault is keyferry's long-lived client for SaaS secret stores: authentication
// strategies, a per-connection token cache, vendor presets, error decoding, the rate
// budget, Retry-After pauses, dotenv/JSON decoding and a coalescing fetcher.
//
// It speaks HTTP and knows nothing of Kubernetes: controllers turn a connection's spec and
// credentials into a Config and map the Reason of an *Error to a condition reason.
package vault

import (
	"errors"
	"fmt"
	"time"
)

// Reason classifies a failure; the values equal keyferry's condition reasons.
type Reason string

// Reasons.
const (
	ReasonUnauthorized        Reason = "Unauthorized"
	ReasonForbidden           Reason = "Forbidden"
	ReasonRateLimited         Reason = "RateLimited"
	ReasonNotFound            Reason = "NotFound"
	ReasonProviderUnavailable Reason = "ProviderUnavailable"
	ReasonInvalidResponse     Reason = "InvalidResponse"
	ReasonInvalidConfig       Reason = "InvalidSpec"
	// ReasonNotAllowed: keyferry's own policy refused the request (the egress policy).
	ReasonNotAllowed Reason = "NotAllowed"
)

// Error is every failure the client returns. Its message carries the HTTP status and the
// provider's own (sanitised) text, never a credential, token or secret value.
type Error struct {
	Reason Reason
	// StatusCode is the HTTP status, 0 when no response arrived.
	StatusCode int
	// Op names what was attempted: login, refresh, pull, signout.
	Op string
	// Message is the provider's own error text, or a description of the failure.
	Message string
	// RetryAt, when set, is the earliest time another request may leave for this vault.
	RetryAt time.Time
	// RetryAfter is the wait the provider's Retry-After header asked for, as received.
	RetryAfter time.Duration
	// Held says no request was sent: an earlier answer (this Error's status and text)
	// paused the connection until RetryAt.
	Held bool
	// Err is the underlying transport error, if any (already free of credentials).
	Err error
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	status := ""
	if e.StatusCode != 0 {
		status = fmt.Sprintf("HTTP %d", e.StatusCode)
		if e.RetryAfter > 0 {
			status += fmt.Sprintf(" with retry-after %ds", int64((e.RetryAfter+time.Second-1)/time.Second))
		}
	}
	switch {
	case status != "" && msg != "":
		return fmt.Sprintf("%s: %s: %s", e.Op, status, msg)
	case status != "":
		return fmt.Sprintf("%s: %s", e.Op, status)
	default:
		return fmt.Sprintf("%s: %s", e.Op, msg)
	}
}

func (e *Error) Unwrap() error { return e.Err }

// AsError returns err as an *Error when it is one (possibly wrapped).
func AsError(err error) (*Error, bool) {
	var ve *Error
	ok := errors.As(err, &ve)
	return ve, ok
}

// ReasonOf returns the Reason of err, or ProviderUnavailable for errors of unknown kind.
func ReasonOf(err error) Reason {
	if ve, ok := AsError(err); ok {
		return ve.Reason
	}
	return ReasonProviderUnavailable
}

// Reasons lists every Reason, for tests that check each is mapped where it must be.
func Reasons() []Reason {
	return []Reason{ReasonUnauthorized, ReasonForbidden, ReasonRateLimited, ReasonNotFound,
		ReasonProviderUnavailable, ReasonInvalidResponse, ReasonInvalidConfig, ReasonNotAllowed}
}

// reasonForAnswer maps an HTTP status to a Reason. exhausted says the answer carried
// x-ratelimit-remaining: 0: a 5xx with it is the vendor's way of saying "over the limit"
// (Keyway answers so), while a 5xx without it is the provider being down, Retry-After or
// not.
func reasonForAnswer(code int, exhausted bool) Reason {
	switch {
	case code == 429 || (code >= 500 && exhausted):
		return ReasonRateLimited
	case code == 401:
		return ReasonUnauthorized
	case code == 403:
		return ReasonForbidden
	case code == 404:
		return ReasonNotFound
	case code == 429:
		return ReasonRateLimited
	case code >= 500:
		return ReasonProviderUnavailable
	default:
		return ReasonInvalidResponse
	}
}
