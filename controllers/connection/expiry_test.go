package connection

import (
	"encoding/base64"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/internal/vault"
)

func TestJWTExpiry(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	head := enc([]byte(`{"alg":"HS256"}`))
	for _, tc := range []struct {
		name, token string
		want        time.Time
		ok          bool
	}{
		{"exp read", head + "." + enc([]byte(`{"exp":1767225600}`)) + ".sig", time.Unix(1767225600, 0).UTC(), true},
		{"float exp", head + "." + enc([]byte(`{"exp":1767225600.5}`)) + ".sig", time.Unix(1767225600, 0).UTC(), true},
		{"no exp", head + "." + enc([]byte(`{"sub":"x"}`)) + ".sig", time.Time{}, false},
		{"an API key", "kw_live_0123456789abcdefghij0123456789abcdefghij", time.Time{}, false},
		{"garbage payload", head + ".!!!.sig", time.Time{}, false},
		{"two parts", head + ".x", time.Time{}, false},
	} {
		got, ok := jwtExpiry(tc.token)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("%s: jwtExpiry = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCredentialHealth(t *testing.T) {
	now := t0
	day := 24 * time.Hour
	maxAge := &metav1.Duration{Duration: 90 * day}
	for _, tc := range []struct {
		name   string
		spec   kf.VaultConnectionSpec
		facts  credentialFacts
		rot    *rotation
		status metav1.ConditionStatus
		reason string
	}{
		{"nothing known", kf.VaultConnectionSpec{}, credentialFacts{known: true}, nil, metav1.ConditionTrue, kf.ReasonCredentialValid},
		{"lapses in 20 days", kf.VaultConnectionSpec{}, credentialFacts{expiresAt: now.Add(20 * day)}, nil, metav1.ConditionTrue, kf.ReasonCredentialValid},
		{"lapses in 13 days", kf.VaultConnectionSpec{}, credentialFacts{expiresAt: now.Add(13 * day)}, nil, metav1.ConditionFalse, kf.ReasonCredentialExpiring},
		{"a shorter warning", kf.VaultConnectionSpec{CredentialExpiryWarning: &metav1.Duration{Duration: 7 * day}}, credentialFacts{expiresAt: now.Add(13 * day)}, nil, metav1.ConditionTrue, kf.ReasonCredentialValid},
		{"lapsed", kf.VaultConnectionSpec{}, credentialFacts{expiresAt: now.Add(-time.Minute)}, nil, metav1.ConditionFalse, kf.ReasonCredentialExpiring},
		{"too old", kf.VaultConnectionSpec{MaxCredentialAge: maxAge}, credentialFacts{changedAt: now.Add(-91 * day)}, nil, metav1.ConditionFalse, kf.ReasonCredentialTooOld},
		{"young enough", kf.VaultConnectionSpec{MaxCredentialAge: maxAge}, credentialFacts{changedAt: now.Add(-89 * day)}, nil, metav1.ConditionTrue, kf.ReasonCredentialValid},
		{"a rotation refused", kf.VaultConnectionSpec{}, credentialFacts{}, &rotation{stop: conditions.StalledErr(kf.ReasonForbidden, "no admin:api-keys")}, metav1.ConditionFalse, kf.ReasonForbidden},
		{"a rotation stopped earlier", kf.VaultConnectionSpec{}, credentialFacts{}, &rotation{status: kf.RotationStatus{Phase: kf.RotationStopped, LastErrorReason: kf.ReasonConflict}}, metav1.ConditionFalse, kf.ReasonConflict},
		{"a rotation under way", kf.VaultConnectionSpec{}, credentialFacts{}, &rotation{status: kf.RotationStatus{Phase: kf.RotationRotating}}, metav1.ConditionTrue, kf.ReasonRotating},
		{"a refusal wins over an expiry", kf.VaultConnectionSpec{}, credentialFacts{expiresAt: now.Add(day)}, &rotation{stop: conditions.StalledErr(kf.ReasonNotAllowed, "label")}, metav1.ConditionFalse, kf.ReasonNotAllowed},
	} {
		c := credentialHealth(&tc.spec, tc.facts, tc.rot, now)
		if c.Status != tc.status || c.Reason != tc.reason || c.Message == "" {
			t.Errorf("%s: %s/%s %q, want %s/%s", tc.name, c.Status, c.Reason, c.Message, tc.status, tc.reason)
		}
	}
}

func TestDataChangedAtReadsTheManagersOfData(t *testing.T) {
	created := metav1.NewTime(t0)
	labelled := metav1.NewTime(t0.Add(48 * time.Hour))
	rotated := metav1.NewTime(t0.Add(24 * time.Hour))
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: created, ManagedFields: []metav1.ManagedFieldsEntry{
		{Manager: "kubectl", Time: &labelled, FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:labels":{}}}`)},
		{Manager: "keyferry", Time: &rotated, FieldsV1: metav1.NewFieldsV1(`{"f:data":{"f:token":{}}}`)},
	}}}
	if got := dataChangedAt(s); !got.Equal(rotated.Time) {
		t.Errorf("dataChangedAt = %v, want %v (a label change is not a data change)", got, rotated.Time)
	}
}

func TestCurrentKeyIsFoundByIDOrPrefix(t *testing.T) {
	keys := vault.PresetFor("keyway").Keys
	list := []vault.APIKey{{ID: "a", Prefix: "kw_live_AAAAAAAA", Active: true}, {ID: "b", Prefix: "kw_live_BBBBBBBB", Active: false}}
	if k, ok := currentKey(list, keyState{token: "kw_live_AAAAAAAAxyz"}, keys); !ok || k.ID != "a" {
		t.Errorf("by prefix: %v %v", k, ok)
	}
	if _, ok := currentKey(list, keyState{token: "kw_live_BBBBBBBBxyz"}, keys); ok {
		t.Error("a revoked key was taken as current")
	}
	if k, ok := currentKey(list, keyState{token: "kw_live_zzzz", id: "a"}, keys); !ok || k.ID != "a" {
		t.Errorf("by id: %v %v", k, ok)
	}
}
