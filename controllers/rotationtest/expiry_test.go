package rotationtest_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// jwt returns an unsigned-looking JWT whose exp is exp (keyferry reads exp, it never
// verifies: the provider does).
func jwt(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		enc([]byte(fmt.Sprintf(`{"sub":"dev","exp":%d}`, exp.Unix()))) + "." + enc([]byte("signature-"+randomText(8)))
}

// expiryMetric returns keyferry_credential_expiry_timestamp_seconds of connection, or -1.
func expiryMetric(t *testing.T, connection string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "keyferry_credential_expiry_timestamp_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "connection" && l.GetValue() == connection {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

func healthOf(t *testing.T, vc *kf.VaultConnection) *metav1.Condition {
	return meta.FindStatusCondition(get(t, vc).Status.Conditions, kf.ConditionCredentialsHealthy)
}

// A bearer JWT's exp is reported (status, metric) and warned about 14 days ahead, with
// an injected clock: Ready stays True.
func TestExpiringCredentialIsWarnedAbout(t *testing.T) {
	w := newWorld(t)
	now := time.Now().Truncate(time.Second)
	clk := clocktesting.NewFakePassiveClock(now)
	startManager(t, managerOptions{clock: clk})
	exp := now.Add(20 * 24 * time.Hour)
	tok := jwt(exp)
	w.dev.AddToken(tok)
	cred := w.credential("jwt-cred", tok, false)
	vc := w.connection("jwt", "keyway", cred.Name)
	vc.Spec.Auth.Bearer.Rotation = nil
	b := w.binding("app", "jwt", "keyway")
	w.create(cred, vc, b)
	waitSynced(t, b)
	eventually(t, 10*time.Second, "the lapse reported", func() (bool, string) {
		h := healthOf(t, vc)
		return vc.Status.CredentialExpiresAt != nil && h != nil && h.Reason == kf.ReasonCredentialValid, fmt.Sprint(h)
	})
	if !vc.Status.CredentialExpiresAt.Time.Equal(exp) {
		t.Errorf("credentialExpiresAt %v, want %v", vc.Status.CredentialExpiresAt, exp)
	}
	id := "VaultConnection/" + w.ns + "/jwt"
	if got := expiryMetric(t, id); got != float64(exp.Unix()) {
		t.Errorf("keyferry_credential_expiry_timestamp_seconds = %v, want %d", got, exp.Unix())
	}

	clk.SetTime(now.Add(7 * 24 * time.Hour)) // 13 days left: inside the 14-day warning
	eventually(t, 10*time.Second, "CredentialExpiring", func() (bool, string) {
		h := healthOf(t, vc)
		return h != nil && h.Status == metav1.ConditionFalse && h.Reason == kf.ReasonCredentialExpiring, fmt.Sprint(h)
	})
	if h := healthOf(t, vc); !strings.Contains(h.Message, "13d") {
		t.Errorf("message %q does not say how long is left", h.Message)
	}
	if c := ready(vc.Status.Conditions); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready %v: an expiring credential still serves", c)
	}
	assertEvent(t, w.ns, kf.ReasonCredentialExpiring)

	clk.SetTime(exp.Add(time.Hour))
	eventually(t, 10*time.Second, "lapsed", func() (bool, string) {
		h := healthOf(t, vc)
		return h != nil && strings.Contains(h.Message, "lapsed"), fmt.Sprint(h)
	})
	w.noCanary(vc)
}

// A credential with no known lapse reports its age (whole days) and, past
// maxCredentialAge (Keymint's 90 days), CredentialTooOld.
func TestOldCredentialIsWarnedAbout(t *testing.T) {
	w := newWorld(t)
	now := time.Now().Truncate(time.Second)
	clk := clocktesting.NewFakePassiveClock(now)
	startManager(t, managerOptions{clock: clk})
	tok := "kw_live_" + randomText(40)
	w.dev.AddToken(tok)
	cred := w.credential("old-cred", tok, false)
	vc := w.connection("old", "keyway", cred.Name)
	vc.Spec.Auth.Bearer.Rotation = nil
	vc.Spec.MaxCredentialAge = &metav1.Duration{Duration: 90 * 24 * time.Hour}
	w.create(cred, vc)
	eventually(t, 10*time.Second, "the age reported", func() (bool, string) {
		h := healthOf(t, vc)
		return vc.Status.CredentialAge != nil && h != nil && h.Reason == kf.ReasonCredentialValid, fmt.Sprint(h)
	})
	changed := get(t, &corev1.Secret{ObjectMeta: cred.ObjectMeta}).CreationTimestamp.Time
	if vc.Status.CredentialChangedAt == nil || vc.Status.CredentialChangedAt.Time.Sub(changed).Abs() > 2*time.Second {
		t.Errorf("credentialChangedAt %v, want about %v", vc.Status.CredentialChangedAt, changed)
	}
	clk.SetTime(now.Add(91 * 24 * time.Hour))
	eventually(t, 10*time.Second, "CredentialTooOld", func() (bool, string) {
		h := healthOf(t, vc)
		return h != nil && h.Status == metav1.ConditionFalse && h.Reason == kf.ReasonCredentialTooOld, fmt.Sprint(h)
	})
	if age := vc.Status.CredentialAge.Duration; age != 91*24*time.Hour && age != 90*24*time.Hour {
		t.Errorf("credentialAge %v, want 90 or 91 days (whole days)", age)
	}
}
