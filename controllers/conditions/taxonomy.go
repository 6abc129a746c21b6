package conditions

import (
	"errors"
	"fmt"
	"time"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/vault"
)

// ErrorClass says what a failure needs before a retry can succeed, in the manner of
// Flux's serror (Stalling / Waiting / Generic).
type ErrorClass int

const (
	// ClassTransient failures (a provider down, a garbled answer, a connection not ready yet)
	// are retried with backoff.
	ClassTransient ErrorClass = iota
	// ClassWaiting failures last until a time the provider or keyferry set (RetryAt).
	ClassWaiting
	// ClassStalled failures need a change of spec, credentials or target; the generation
	// counts as handled. They are still retried with backoff (a grant at the provider, a
	// deleted conflicting Secret) but no sooner.
	ClassStalled
)

func (c ErrorClass) String() string {
	switch c {
	case ClassWaiting:
		return "waiting"
	case ClassStalled:
		return "stalled"
	default:
		return "transient"
	}
}

// ConditionError is a failure about the object, with the condition reason it shows as.
// Its message never holds a credential or a secret value.
type ConditionError struct {
	Reason  string
	Message string
	Class   ErrorClass
	// RetryAt, when set, is the earliest time a retry may succeed.
	RetryAt time.Time
}

func (e *ConditionError) Error() string { return e.Reason + ": " + e.Message }

func newCondErr(class ErrorClass, reason, format string, args ...any) *ConditionError {
	return &ConditionError{Reason: reason, Class: class, Message: fmt.Sprintf(format, args...)}
}

// StalledErr is a failure that needs a change of spec, credentials or target.
func StalledErr(reason, format string, args ...any) *ConditionError {
	return newCondErr(ClassStalled, reason, format, args...)
}

// TransientErr is a failure that may pass by itself.
func TransientErr(reason, format string, args ...any) *ConditionError {
	return newCondErr(ClassTransient, reason, format, args...)
}

// VaultReason is how a provider client's Reason shows as a condition.
type VaultReason struct {
	Reason string
	Class  ErrorClass
}

// VaultReasons is the one table from the provider client's reasons to condition reasons
// and what each needs. A vault error with RetryAt set waits at least until then whatever
// its class; a transient one with RetryAt becomes waiting (a 503 with Retry-After).
var VaultReasons = map[vault.Reason]VaultReason{
	vault.ReasonUnauthorized:        {kf.ReasonUnauthorized, ClassStalled},
	vault.ReasonForbidden:           {kf.ReasonForbidden, ClassStalled},
	vault.ReasonNotFound:            {kf.ReasonNotFound, ClassStalled},
	vault.ReasonInvalidConfig:       {kf.ReasonInvalidSpec, ClassStalled},
	vault.ReasonRateLimited:         {kf.ReasonRateLimited, ClassWaiting},
	vault.ReasonProviderUnavailable: {kf.ReasonProviderUnavailable, ClassTransient},
	vault.ReasonInvalidResponse:     {kf.ReasonInvalidResponse, ClassTransient},
	vault.ReasonNotAllowed:          {kf.ReasonNotAllowed, ClassStalled},
}

// ConditionReasonOf maps a provider client's reason; unknown ones (none today, the table
// test sees to it) show as ProviderUnavailable.
func ConditionReasonOf(r vault.Reason) VaultReason {
	if m, ok := VaultReasons[r]; ok {
		return m
	}
	return VaultReason{kf.ReasonProviderUnavailable, ClassTransient}
}

// AsConditionError classifies err; ok is false for errors that are not about the
// object (API server failures), which are retried with the controller's backoff.
func AsConditionError(err error) (*ConditionError, bool) {
	var ce *ConditionError
	if errors.As(err, &ce) {
		return ce, true
	}
	if ve, ok := vault.AsError(err); ok {
		return FromVault(ve), true
	}
	return nil, false
}

// FromVault is the condition error a provider client's error shows as.
func FromVault(ve *vault.Error) *ConditionError {
	m := ConditionReasonOf(ve.Reason)
	ce := &ConditionError{Reason: m.Reason, Class: m.Class, Message: ve.Error(), RetryAt: ve.RetryAt}
	if ce.Class == ClassTransient && !ce.RetryAt.IsZero() {
		ce.Class = ClassWaiting
	}
	return ce
}
