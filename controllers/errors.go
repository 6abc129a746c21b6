package controllers

import (
	"errors"
	"fmt"
	"time"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/vault"
)

// errorClass says what a failure needs before a retry can succeed, in the manner of
// Flux's serror (Stalling / Waiting / Generic).
type errorClass int

const (
	// transient failures (a provider down, a garbled answer, a connection not ready yet)
	// are retried with backoff.
	transient errorClass = iota
	// waiting failures last until a time the provider or keyferry set (RetryAt).
	waiting
	// stalled failures need a change of spec, credentials or target; the generation
	// counts as handled. They are still retried with backoff (a grant at the provider, a
	// deleted conflicting Secret) but no sooner.
	stalled
)

func (c errorClass) String() string {
	switch c {
	case waiting:
		return "waiting"
	case stalled:
		return "stalled"
	default:
		return "transient"
	}
}

// conditionError is a failure about the object, with the condition reason it shows as.
// Its message never holds a credential or a secret value.
type conditionError struct {
	Reason  string
	Message string
	Class   errorClass
	// RetryAt, when set, is the earliest time a retry may succeed.
	RetryAt time.Time
}

func (e *conditionError) Error() string { return e.Reason + ": " + e.Message }

func newCondErr(class errorClass, reason, format string, args ...any) *conditionError {
	return &conditionError{Reason: reason, Class: class, Message: fmt.Sprintf(format, args...)}
}

// stalledErr is a failure that needs a change of spec, credentials or target.
func stalledErr(reason, format string, args ...any) *conditionError {
	return newCondErr(stalled, reason, format, args...)
}

// transientErr is a failure that may pass by itself.
func transientErr(reason, format string, args ...any) *conditionError {
	return newCondErr(transient, reason, format, args...)
}

// vaultReason is how a provider client's Reason shows as a condition.
type vaultReason struct {
	reason string
	class  errorClass
}

// vaultReasons is the one table from the provider client's reasons to condition reasons
// and what each needs. A vault error with RetryAt set waits at least until then whatever
// its class; a transient one with RetryAt becomes waiting (a 503 with Retry-After).
var vaultReasons = map[vault.Reason]vaultReason{
	vault.ReasonUnauthorized:        {kf.ReasonUnauthorized, stalled},
	vault.ReasonForbidden:           {kf.ReasonForbidden, stalled},
	vault.ReasonNotFound:            {kf.ReasonNotFound, stalled},
	vault.ReasonInvalidConfig:       {kf.ReasonInvalidSpec, stalled},
	vault.ReasonRateLimited:         {kf.ReasonRateLimited, waiting},
	vault.ReasonProviderUnavailable: {kf.ReasonProviderUnavailable, transient},
	vault.ReasonInvalidResponse:     {kf.ReasonInvalidResponse, transient},
	vault.ReasonNotAllowed:          {kf.ReasonNotAllowed, stalled},
}

// conditionReasonOf maps a provider client's reason; unknown ones (none today, the table
// test sees to it) show as ProviderUnavailable.
func conditionReasonOf(r vault.Reason) vaultReason {
	if m, ok := vaultReasons[r]; ok {
		return m
	}
	return vaultReason{kf.ReasonProviderUnavailable, transient}
}

// asConditionError classifies err; ok is false for errors that are not about the
// object (API server failures), which are retried with the controller's backoff.
func asConditionError(err error) (*conditionError, bool) {
	var ce *conditionError
	if errors.As(err, &ce) {
		return ce, true
	}
	if ve, ok := vault.AsError(err); ok {
		return fromVault(ve), true
	}
	return nil, false
}

func fromVault(ve *vault.Error) *conditionError {
	m := conditionReasonOf(ve.Reason)
	ce := &conditionError{Reason: m.reason, Class: m.class, Message: ve.Error(), RetryAt: ve.RetryAt}
	if ce.Class == transient && !ce.RetryAt.IsZero() {
		ce.Class = waiting
	}
	return ce
}
