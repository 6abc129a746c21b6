package connection

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// credentialFacts is what is known of a credential's life, never its value.
type credentialFacts struct {
	// known says a credential Secret was read this pass.
	known bool
	// expiresAt is when it lapses (zero: unknown, or never).
	expiresAt time.Time
	// changedAt is when the Secret's data last changed, as far as the API server records.
	changedAt time.Time
}

// credentialFactsOf reads the life of the credential in s: a rotated key's own dates,
// else a bearer JWT's exp claim, and the Secret's data change time.
func credentialFactsOf(s *corev1.Secret, token string, rot *kf.RotationStatus) credentialFacts {
	if s == nil {
		return credentialFacts{}
	}
	f := credentialFacts{known: true, changedAt: dataChangedAt(s)}
	if rot != nil && rot.ExpiresAt != nil {
		f.expiresAt = rot.ExpiresAt.Time
	} else if exp, ok := jwtExpiry(token); ok {
		f.expiresAt = exp
	}
	if t, err := time.Parse(time.RFC3339, s.Annotations[kf.AnnotationKeyCreatedAt]); err == nil && t.After(f.changedAt) {
		f.changedAt = t
	}
	return f
}

// dataChangedAt is the latest time a field manager changed the Secret's data (its managed
// fields entries that own data or stringData), else its creation.
func dataChangedAt(s *corev1.Secret) time.Time {
	at := s.CreationTimestamp.Time
	for _, mf := range s.ManagedFields {
		if mf.Time == nil || mf.FieldsV1 == nil {
			continue
		}
		raw := mf.FieldsV1.GetRawString()
		if (strings.Contains(raw, `"f:data"`) || strings.Contains(raw, `"f:stringData"`)) && mf.Time.After(at) {
			at = mf.Time.Time
		}
	}
	return at
}

// jwtExpiry reads the exp claim of a JWT without verifying it (keyferry only reports
// it); ok is false for anything that is not a JWT with an exp.
func jwtExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "eyJ") {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	secs, err := claims.Exp.Float64()
	if err != nil || secs <= 0 {
		return time.Time{}, false
	}
	return time.Unix(int64(secs), 0).UTC(), true
}

// credentialHealth is the CredentialsHealthy condition: a failing rotation first, then a
// lapse within the warning, then an age over maxCredentialAge.
func credentialHealth(spec *kf.VaultConnectionSpec, f credentialFacts, rot *rotation, now time.Time) metav1.Condition {
	c := metav1.Condition{Type: kf.ConditionCredentialsHealthy, Status: metav1.ConditionTrue, Reason: kf.ReasonCredentialValid}
	warn := spec.GetCredentialExpiryWarning()
	switch {
	case rot != nil && rot.stop != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, rot.stop.Reason, "key rotation: "+rot.stop.Message
	case rot != nil && rot.status.Phase == kf.RotationStopped:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, rot.status.LastErrorReason, "key rotation stopped: "+rot.status.LastError
		if c.Reason == "" {
			c.Reason = kf.ReasonRotationFailed
		}
	case !f.expiresAt.IsZero() && !now.Before(f.expiresAt):
		c.Status, c.Reason = metav1.ConditionFalse, kf.ReasonCredentialExpiring
		c.Message = fmt.Sprintf("the credential lapsed at %s: replace it", f.expiresAt.UTC().Format(time.RFC3339))
	case !f.expiresAt.IsZero() && now.Add(warn).After(f.expiresAt):
		c.Status, c.Reason = metav1.ConditionFalse, kf.ReasonCredentialExpiring
		c.Message = fmt.Sprintf("the credential lapses at %s (in %s): rotate or replace it", f.expiresAt.UTC().Format(time.RFC3339), roundDays(f.expiresAt.Sub(now)))
	case spec.MaxCredentialAge != nil && !f.changedAt.IsZero() && now.Sub(f.changedAt) > spec.MaxCredentialAge.Duration:
		c.Status, c.Reason = metav1.ConditionFalse, kf.ReasonCredentialTooOld
		c.Message = fmt.Sprintf("the credential Secret's data is %s old, over maxCredentialAge %s: rotate it", roundDays(now.Sub(f.changedAt)), spec.MaxCredentialAge.Duration)
	case rot != nil && (rot.status.Phase == kf.RotationRotating || rot.status.Phase == kf.RotationRevoking):
		c.Reason, c.Message = kf.ReasonRotating, "a key rotation is under way; the current key serves until the new one is verified"
	case rot != nil && rot.status.LastError != "":
		c.Reason, c.Message = kf.ReasonRotating, "key rotation retries (the current key serves): "+rot.status.LastError
	case rot != nil && rot.status.NextRotation != nil:
		c.Message = "the next key rotation is at " + rot.status.NextRotation.UTC().Format(time.RFC3339)
	case !f.expiresAt.IsZero():
		c.Message = "the credential lapses at " + f.expiresAt.UTC().Format(time.RFC3339)
	default:
		c.Message = "the credential has no known lapse"
	}
	return c
}

// roundDays shows d in days (hours under two days).
func roundDays(d time.Duration) string {
	if d < 48*time.Hour {
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// ageInDays is d cut to whole days, so status changes once a day at most.
func ageInDays(d time.Duration) *metav1.Duration {
	if d < 0 {
		d = 0
	}
	return &metav1.Duration{Duration: d.Truncate(24 * time.Hour)}
}
