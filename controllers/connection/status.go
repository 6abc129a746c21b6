package connection

import (
	"time"

	"github.com/keyferry/keyferry/controllers/conditions"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/vault"
)

// connectionObservation is everything a pass learned about a connection.
type connectionObservation struct {
	generation int64
	// err is why the connection cannot be used (credentials, spec, login); nil if it can.
	err *conditions.ConditionError
	// login says the connection authenticates with a session; token describes it.
	login bool
	token vault.TokenInfo
	// loggingIn: a login or refresh runs in the background; the status stands until it
	// ends (a new connection says it is logging in).
	loggingIn bool
	// outcome is the connection-level result of its latest request.
	outcome vault.Outcome
	// pause is the provider's pause in force and the answer that set it; nil when none.
	pause *vault.Error
	now   time.Time
	// credential is what is known of the credential's life; rotation what the rotation
	// step did (nil when the connection does not rotate, or this shard does not).
	credential credentialFacts
	rotation   *rotation
	spec       *kf.VaultConnectionSpec
}

// computeConnectionStatus derives a connection's status from an observation, apart from
// any action. Unchanged inputs give an unchanged status (so no write).
func computeConnectionStatus(prev kf.VaultConnectionStatus, o connectionObservation) kf.VaultConnectionStatus {
	if o.loggingIn && o.err == nil && conditions.ReadyOf(prev.Conditions) != nil && prev.ObservedGeneration == o.generation {
		return prev
	}
	st := *prev.DeepCopy()
	st.ObservedGeneration = o.generation
	st.RetryAfter = nil
	cond := metav1.Condition{Type: kf.ConditionReady, ObservedGeneration: o.generation}
	isStalled := false
	switch {
	case o.err != nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, o.err.Reason, o.err.Message
		isStalled = o.err.Class == conditions.ClassStalled
		if !o.err.RetryAt.IsZero() {
			st.RetryAfter = conditions.TimePtr(o.err.RetryAt)
		}
	case o.pause != nil:
		ce := conditions.FromVault(o.pause)
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ce.Reason, ce.Message
		st.RetryAfter = conditions.TimePtr(ce.RetryAt)
	case o.outcome.Reason != "" && o.outcome.Reason != vault.ReasonRateLimited:
		m := conditions.ConditionReasonOf(o.outcome.Reason)
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, m.Reason, o.outcome.Message
		isStalled = m.Class == conditions.ClassStalled
	case o.loggingIn:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionUnknown, kf.ReasonProgressing, "logging in to the provider"
	case o.login:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, kf.ReasonAuthenticated, "session token obtained"
	case o.outcome.At.IsZero() && acceptedBefore(prev, o):
		// A restart (an upgrade, a failover): the provider accepted these very credentials
		// before and nothing has been asked of it since. Saying Unknown until the next
		// pull (up to an interval away) would flip every connection to Progressing.
		cond = *conditions.ReadyOf(prev.Conditions)
	case o.outcome.At.IsZero():
		cond.Status, cond.Reason = metav1.ConditionUnknown, kf.ReasonProgressing
		cond.Message = "credentials loaded; the first request will verify them"
	default:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, kf.ReasonAuthenticated, "the provider accepted the credentials"
	}
	if o.login && o.err == nil && !o.loggingIn && !o.token.ObtainedAt.IsZero() {
		st.AuthenticatedTime = conditions.TimePtr(o.token.ObtainedAt)
		st.TokenExpiresAt = conditions.TimePtr(o.token.ExpiresAt)
	} else if !o.login {
		st.AuthenticatedTime, st.TokenExpiresAt = nil, nil
	}
	conditions.SetCondition(&st.Conditions, cond, o.now)
	conditions.SetProgress(&st.Conditions, cond, isStalled, o.now)
	setCredentialStatus(&st, o)
	return st
}

// setCredentialStatus reports the credential's life and its rotation. Fields stay as they
// were when this pass could not read the credential.
func setCredentialStatus(st *kf.VaultConnectionStatus, o connectionObservation) {
	if o.rotation != nil {
		st.Rotation = o.rotation.status.DeepCopy()
	} else if o.spec != nil {
		if rot, _ := o.spec.RotatedCredential(); rot == nil {
			st.Rotation = nil
		}
	}
	if !o.credential.known || o.spec == nil {
		return
	}
	st.CredentialExpiresAt = nil
	if !o.credential.expiresAt.IsZero() {
		st.CredentialExpiresAt = conditions.TimePtr(o.credential.expiresAt)
	}
	st.CredentialChangedAt, st.CredentialAge = nil, nil
	if at := o.credential.changedAt; !at.IsZero() {
		st.CredentialChangedAt = conditions.TimePtr(at)
		st.CredentialAge = ageInDays(o.now.Sub(at))
	}
	health := credentialHealth(o.spec, o.credential, o.rotation, o.now)
	health.ObservedGeneration = o.generation
	conditions.SetCondition(&st.Conditions, health, o.now)
}

// acceptedBefore says whether prev records the provider accepting the credentials the
// observation holds: Ready True for this generation, set after the credential Secret's
// data last changed.
func acceptedBefore(prev kf.VaultConnectionStatus, o connectionObservation) bool {
	r := conditions.ReadyOf(prev.Conditions)
	if r == nil || r.Status != metav1.ConditionTrue || r.Reason != kf.ReasonAuthenticated || prev.ObservedGeneration != o.generation || r.ObservedGeneration != o.generation {
		return false
	}
	return o.credential.known && !o.credential.changedAt.IsZero() && !o.credential.changedAt.After(r.LastTransitionTime.Time)
}
