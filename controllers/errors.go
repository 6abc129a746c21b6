package controllers

import (
	"errors"
	"fmt"
	"time"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/vault"
)

// conditionError is a failure with the condition reason it shows as. Its message never
// holds a credential or a secret value.
type conditionError struct {
	Reason  string
	Message string
	RetryAt time.Time
}

func (e *conditionError) Error() string { return e.Reason + ": " + e.Message }

func condErr(reason, format string, args ...any) *conditionError {
	return &conditionError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// vaultReasons maps the provider client's reasons to condition reasons.
var vaultReasons = map[vault.Reason]string{
	vault.ReasonUnauthorized:        kf.ReasonUnauthorized,
	vault.ReasonForbidden:           kf.ReasonForbidden,
	vault.ReasonRateLimited:         kf.ReasonRateLimited,
	vault.ReasonNotFound:            kf.ReasonNotFound,
	vault.ReasonProviderUnavailable: kf.ReasonProviderUnavailable,
	vault.ReasonInvalidResponse:     kf.ReasonInvalidResponse,
	vault.ReasonInvalidConfig:       kf.ReasonInvalidSpec,
}

// asConditionError classifies err; ok is false for errors that are not about the
// object (API server failures), which are retried with the controller's backoff.
func asConditionError(err error) (*conditionError, bool) {
	var ce *conditionError
	if errors.As(err, &ce) {
		return ce, true
	}
	if ve, ok := vault.AsError(err); ok {
		reason, known := vaultReasons[ve.Reason]
		if !known {
			reason = kf.ReasonProviderUnavailable
		}
		return &conditionError{Reason: reason, Message: ve.Error(), RetryAt: ve.RetryAt}, true
	}
	return nil, false
}
