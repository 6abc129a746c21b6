package controllers

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/vault"
)

// connectionObservation is everything a pass learned about a connection.
type connectionObservation struct {
	generation int64
	// err is why the connection cannot be used (credentials, spec, login); nil if it can.
	err *conditionError
	// login says the connection authenticates with a session; token describes it.
	login bool
	token vault.TokenInfo
	// outcome is the connection-level result of its latest request.
	outcome     vault.Outcome
	pausedUntil time.Time
	now         time.Time
}

// computeConnectionStatus derives a connection's status from an observation, apart from
// any action. Unchanged inputs give an unchanged status (so no write).
func computeConnectionStatus(prev kf.VaultConnectionStatus, o connectionObservation) kf.VaultConnectionStatus {
	st := *prev.DeepCopy()
	st.ObservedGeneration = o.generation
	st.RetryAfter = nil
	cond := metav1.Condition{Type: kf.ConditionReady, ObservedGeneration: o.generation}
	switch {
	case o.err != nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, o.err.Reason, o.err.Message
		if !o.err.RetryAt.IsZero() {
			st.RetryAfter = timePtr(o.err.RetryAt)
		}
	case o.pausedUntil.After(o.now):
		cond.Status, cond.Reason = metav1.ConditionFalse, kf.ReasonRateLimited
		cond.Message = "the provider asked to wait; no request leaves before retryAfter"
		st.RetryAfter = timePtr(o.pausedUntil)
	case o.outcome.Reason != "" && o.outcome.Reason != vault.ReasonRateLimited:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, vaultReasons[o.outcome.Reason], o.outcome.Message
	case o.login:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, kf.ReasonAuthenticated, "session token obtained"
	case o.outcome.At.IsZero():
		cond.Status, cond.Reason = metav1.ConditionUnknown, kf.ReasonProgressing
		cond.Message = "credentials loaded; the first request will verify them"
	default:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, kf.ReasonAuthenticated, "the provider accepted the credentials"
	}
	if o.login && o.err == nil && !o.token.ObtainedAt.IsZero() {
		st.AuthenticatedTime = timePtr(o.token.ObtainedAt)
		st.TokenExpiresAt = timePtr(o.token.ExpiresAt)
	} else if !o.login {
		st.AuthenticatedTime, st.TokenExpiresAt = nil, nil
	}
	setCondition(&st.Conditions, cond, o.now)
	return st
}

// setCondition sets c, keeping lastTransitionTime when the status did not change.
func setCondition(conds *[]metav1.Condition, c metav1.Condition, now time.Time) {
	c.LastTransitionTime = metav1.NewTime(now)
	meta.SetStatusCondition(conds, c)
}

func timePtr(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t.Truncate(time.Second))
	return &mt
}

// readyOf returns the Ready condition, or nil.
func readyOf(conds []metav1.Condition) *metav1.Condition {
	return meta.FindStatusCondition(conds, kf.ConditionReady)
}
