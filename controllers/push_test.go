package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/dev/devvault"
)

const canaryPushValue = "CANARY-pushed-value-7f3a"

// pushSource is a Secret opted in to pushes.
func pushSource(ns, name string, data map[string]string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: map[string]string{kf.LabelPush: "true"}}, StringData: data}
}

func pushFor(ns, name, conn, vaultName, source string) *kf.SecretPush {
	return &kf.SecretPush{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: kf.SecretPushSpec{
		ConnectionRef: kf.ConnectionReference{Name: conn}, Vault: vaultName, Environment: "production",
		Source: kf.PushSource{Name: source}}}
}

func getPush(t *testing.T, sp *kf.SecretPush) *kf.SecretPush {
	t.Helper()
	got := &kf.SecretPush{}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(sp), got); err != nil {
		t.Fatal(err)
	}
	return got
}

// waitPush waits until the SecretPush's Ready reason is reason for its generation (and,
// when refresh is set, that refresh was handled); it checks that status holds no value.
func waitPush(t *testing.T, sp *kf.SecretPush, reason, refresh string) *kf.SecretPush {
	t.Helper()
	var got *kf.SecretPush
	eventually(t, 20*time.Second, sp.Name+" "+reason, func() (bool, string) {
		got = getPush(t, sp)
		ready := readyCondition(got.Status.Conditions)
		if ready == nil {
			return false, "no Ready"
		}
		return ready.Reason == reason && ready.ObservedGeneration == got.Generation && got.Status.LastHandledRefresh == refresh,
			ready.Reason + ": " + ready.Message
	})
	raw, _ := json.Marshal(got.Status)
	if strings.Contains(string(raw), canaryPushValue) || strings.Contains(string(raw), canaryToken) {
		t.Fatalf("status holds a value: %s", raw)
	}
	return got
}

func writes(vaultName string) int {
	n := 0
	for k, v := range dev.Counts() {
		if strings.HasPrefix(k, "keyway.write:"+vaultName+"/") {
			n += v
		}
	}
	return n
}

func setSourceValue(t *testing.T, ns, name, key, value string) {
	t.Helper()
	mergePatch(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		map[string]any{"stringData": map[string]string{key: value}})
}

// A push writes only the keys that differ, one request each, leaves the environment's
// other keys alone, pushes a change of the Secret within seconds, writes nothing when
// nothing changed, and never overwrites a key someone else changed since.
func TestSecretPushWritesOnlyWhatDiffers(t *testing.T) {
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	vaultName, _ := ownVault(ns, "OTHER_TEAM_KEY", "theirs")
	dev.SetSecret(vaultName, "production", "API_KEY", "same")
	src := pushSource(ns, "generated", map[string]string{"DB_PASS": canaryPushValue, "API_KEY": "same"})
	sp := pushFor(ns, "publish", "keyway", vaultName, "generated")
	before := providerRequests(t, "VaultConnection/"+ns+"/keyway", "push")
	mustCreate(t, cred, vc, src, sp)

	got := waitPush(t, sp, kf.ReasonSynced, "")
	vals := dev.Secrets(vaultName, "production")
	if vals["DB_PASS"] != canaryPushValue || vals["API_KEY"] != "same" || vals["OTHER_TEAM_KEY"] != "theirs" {
		t.Fatalf("vault after the first push: keys %v", keysOfStrings(vals))
	}
	if n := writes(vaultName); n != 1 {
		t.Fatalf("first push wrote %d keys, want 1 (API_KEY already held the value)", n)
	}
	if n := providerRequests(t, "VaultConnection/"+ns+"/keyway", "push") - before; n != 1 {
		t.Fatalf(`keyferry_provider_requests_total{op="push"} grew by %v, want 1`, n)
	}
	if got.Status.PushedKeys != 2 || got.Status.LastPushTime == nil || len(got.Status.Pushed) != 2 {
		t.Fatalf("status %+v", got.Status)
	}

	// Nothing changed: a refresh reads the vault and writes nothing.
	refreshPush(t, sp, "p1")
	waitPush(t, sp, kf.ReasonSynced, "p1")
	if n := writes(vaultName); n != 1 {
		t.Fatalf("a refresh with nothing changed wrote (%d writes in all)", n)
	}

	// A change of the Secret is pushed within seconds: one write.
	setSourceValue(t, ns, "generated", "API_KEY", "rotated")
	eventually(t, 10*time.Second, "the change reaches the vault", func() (bool, string) {
		v := dev.Secrets(vaultName, "production")["API_KEY"]
		return v == "rotated", v
	})
	if n := writes(vaultName); n != 2 {
		t.Fatalf("one changed key cost %d writes in all, want 2", n)
	}

	// Someone edits API_KEY in the vault; then the Secret changes again: keyferry keeps
	// their value and says so.
	dev.SetSecret(vaultName, "production", "API_KEY", "edited-by-a-person")
	setSourceValue(t, ns, "generated", "API_KEY", "rotated-again")
	got = waitPush(t, sp, kf.ReasonConflict, "p1")
	if msg := readyCondition(got.Status.Conditions).Message; !strings.Contains(msg, "API_KEY") || !strings.Contains(msg, "conflictPolicy: Overwrite") {
		t.Fatalf("conflict message %q", msg)
	}
	if v := dev.Secrets(vaultName, "production")["API_KEY"]; v != "edited-by-a-person" {
		t.Fatalf("a key edited in the vault was overwritten: %s", v)
	}
	// Overwrite opts out.
	mergePatch(t, sp, map[string]any{"spec": map[string]any{"conflictPolicy": "Overwrite"}})
	waitPush(t, sp, kf.ReasonSynced, "p1")
	if v := dev.Secrets(vaultName, "production")["API_KEY"]; v != "rotated-again" {
		t.Fatalf("conflictPolicy Overwrite did not overwrite: %s", v)
	}
	if vals := dev.Secrets(vaultName, "production"); vals["OTHER_TEAM_KEY"] != "theirs" {
		t.Fatalf("another key of the environment was touched: %v", keysOfStrings(vals))
	}
	if strings.Contains(logs.String(), canaryPushValue) {
		t.Fatal("a pushed value reached the log")
	}
}

func refreshPush(t *testing.T, sp *kf.SecretPush, value string) {
	t.Helper()
	mergePatch(t, sp, map[string]any{"metadata": map[string]any{"annotations": map[string]string{kf.AnnotationRefresh: value}}})
}

func keysOfStrings(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// updatePolicy IfNotExists, rename, keys the vault would refuse, the opt-in label, a
// missing source.
func TestSecretPushPolicies(t *testing.T) {
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	vaultName, _ := ownVault(ns, "EXISTING", "vault-value")
	mustCreate(t, cred, vc,
		pushSource(ns, "tls", map[string]string{"tls.crt": "cert", "EXISTING": "secret-value"}),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unlabelled"}, StringData: map[string]string{"A": "1"}})

	once := pushFor(ns, "once", "keyway", vaultName, "tls")
	once.Spec.UpdatePolicy = kf.UpdatePolicyIfNotExists
	once.Spec.Source.Rename = map[string]string{"tls.crt": "TLS_CRT"}
	mustCreate(t, once)
	got := waitPush(t, once, kf.ReasonSynced, "")
	vals := dev.Secrets(vaultName, "production")
	if vals["EXISTING"] != "vault-value" || vals["TLS_CRT"] != "cert" {
		t.Fatalf("IfNotExists with rename: %v", vals)
	}
	if msg := readyCondition(got.Status.Conditions).Message; !strings.Contains(msg, "EXISTING") || !strings.Contains(msg, "IfNotExists") {
		t.Fatalf("message %q does not say EXISTING was left", msg)
	}

	requestsBefore := dev.Count("keyway.pull:" + vaultName + "/production")
	for _, tc := range []struct {
		name   string
		edit   func(sp *kf.SecretPush)
		reason string
		says   []string
	}{
		{"bad-key", func(sp *kf.SecretPush) {}, kf.ReasonInvalidSpec, []string{`key "tls.crt"`, "rename"}},
		{"no-label", func(sp *kf.SecretPush) { sp.Spec.Source.Name = "unlabelled" }, kf.ReasonNotAllowed, []string{kf.LabelPush}},
		{"missing", func(sp *kf.SecretPush) { sp.Spec.Source.Name = "nowhere" }, kf.ReasonSourceNotFound, []string{"nowhere"}},
	} {
		sp := pushFor(ns, tc.name, "keyway", vaultName, "tls")
		tc.edit(sp)
		mustCreate(t, sp)
		msg := readyCondition(waitPush(t, sp, tc.reason, "").Status.Conditions).Message
		for _, want := range tc.says {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: message %q does not say %q", tc.name, msg, want)
			}
		}
	}
	if n := dev.Count("keyway.pull:"+vaultName+"/production") - requestsBefore; n != 0 {
		t.Fatalf("refused pushes sent %d requests", n)
	}
}

// 401, 403 (a key without write:secrets, with Keyway's detail), 429 with Retry-After.
func TestSecretPushProviderFailures(t *testing.T) {
	ns := newNamespace(t, nil)
	vaultName, _ := ownVault(ns, "K", "v")
	tok := "kw_live_PUSHreadonly" + strings.Repeat("0", 20)
	dev.AddToken(tok)
	dev.SetScopes(tok, "read:secrets")
	vc, _ := connectionFor(ns, "keyway", "keyway")
	cred := credentials(ns, "keyway-cred", map[string]string{"token": tok})
	mustCreate(t, cred, vc, pushSource(ns, "src", map[string]string{"K": "new"}))
	sp := pushFor(ns, "publish", "keyway", vaultName, "src")
	mustCreate(t, sp)
	got := waitPush(t, sp, kf.ReasonForbidden, "")
	if msg := readyCondition(got.Status.Conditions).Message; !strings.Contains(msg, "write:secrets") {
		t.Fatalf("403 message %q does not name the scope", msg)
	}

	dev.SetScopes(tok, "read:secrets", "write:secrets")
	dev.InjectFault("keyway", devvault.Fault{Status: 429, Header: map[string]string{"Retry-After": "30"}, Body: `{"title":"Too Many Requests","status":429,"detail":"Rate limit exceeded"}`})
	refreshPush(t, sp, "r429")
	got = waitPush(t, sp, kf.ReasonRateLimited, "r429")
	if got.Status.RetryAfter == nil {
		t.Fatal("RateLimited without retryAfter")
	}
	dev.InjectFault("keyway", devvault.Fault{})

	// A revoked token: 401 once the pause is over (a new connection, so no wait here).
	ns2 := newNamespace(t, nil)
	vc2, cred2 := connectionFor(ns2, "keyway", "keyway")
	cred2.StringData["token"] = "kw_live_REVOKED" + strings.Repeat("0", 25)
	mustCreate(t, cred2, vc2, pushSource(ns2, "src", map[string]string{"K": "new"}))
	sp2 := pushFor(ns2, "publish", "keyway", vaultName, "src")
	mustCreate(t, sp2)
	waitPush(t, sp2, kf.ReasonUnauthorized, "")
	if v := dev.Secrets(vaultName, "production")["K"]; v != "v" {
		t.Fatalf("a refused push changed the vault: %s", v)
	}
}

// deletionPolicy Delete removes the keys it pushed and still owns; a key someone changed
// since stays. A ClusterVaultConnection lends itself for pushes only with allowPush.
func TestSecretPushDeletionAndLending(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, map[string]string{"push-lend": "yes"})
	vc, cred := connectionFor(ns, "keyway", "keyway")
	vaultName, _ := ownVault(ns, "KEEP_ME", "other")
	mustCreate(t, cred, vc, pushSource(ns, "src", map[string]string{"MINE": "1", "CHANGED": "2"}))
	sp := pushFor(ns, "publish", "keyway", vaultName, "src")
	sp.Spec.DeletionPolicy = kf.DeletionPolicyDelete
	mustCreate(t, sp)
	waitPush(t, sp, kf.ReasonSynced, "")
	dev.SetSecret(vaultName, "production", "CHANGED", "by-a-person")
	if err := k8s.Delete(ctx, sp); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the SecretPush is gone", func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(sp), &kf.SecretPush{})
		return err != nil, fmt.Sprint(err)
	})
	vals := dev.Secrets(vaultName, "production")
	if _, ok := vals["MINE"]; ok || vals["CHANGED"] != "by-a-person" || vals["KEEP_ME"] != "other" {
		t.Fatalf("after deletion: %v", vals)
	}

	// A ClusterVaultConnection without allowPush refuses; with it, the push goes.
	credNS := newNamespace(t, nil)
	mustCreate(t, credentials(credNS, "kw", map[string]string{"token": canaryToken}))
	cvc := &kf.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: "push-" + credNS}, Spec: kf.ClusterVaultConnectionSpec{
		VaultConnectionSpec: kf.VaultConnectionSpec{Provider: kf.ProviderKeyway, URL: vaultURL + "/keyway", AllowInsecureHTTP: true,
			Auth: kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: "kw", Namespace: credNS, Key: "token"}}}},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"push-lend": "yes"}},
	}}
	mustCreate(t, cvc)
	t.Cleanup(func() { _ = k8s.Delete(ctx, cvc) })
	lent := pushFor(ns, "lent", cvc.Name, vaultName, "src")
	lent.Spec.ConnectionRef.Kind = kf.ConnectionKindCluster
	mustCreate(t, lent)
	msg := readyCondition(waitPush(t, lent, kf.ReasonNotAllowed, "").Status.Conditions).Message
	if !strings.Contains(msg, "allowPush") {
		t.Fatalf("message %q", msg)
	}
	mergePatch(t, cvc, map[string]any{"spec": map[string]any{"allowPush": true}})
	waitPush(t, lent, kf.ReasonSynced, "")
	if v := dev.Secrets(vaultName, "production")["MINE"]; v != "1" {
		t.Fatalf("push through the lent connection: %q", v)
	}
}

// The http provider pushes with the connection's explicit request (here aimed at the dev
// vault's Keyway endpoints); providers without a documented write API are refused before
// any request.
func TestSecretPushHTTPAndUnsupportedProviders(t *testing.T) {
	ns := newNamespace(t, nil)
	vaultName, _ := ownVault(ns, "OTHER", "x")
	cred := credentials(ns, "tok", map[string]string{"token": canaryToken})
	vc := &kf.VaultConnection{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "generic"}, Spec: kf.VaultConnectionSpec{
		Provider: kf.ProviderHTTP, URL: vaultURL + "/keyway", AllowInsecureHTTP: true,
		Auth:    kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: "tok", Key: "token"}}},
		Request: &kf.RequestSpec{Path: "/v1/secrets/pull?repo={vault}&environment={environment}", Format: kf.RequestFormatDotenv, DataPath: "data.content"},
		Push:    &kf.PushRequestSpec{Method: "POST", Path: "/v1/vaults/{vault}/secrets", Body: `{"key":"{key}","value":"{value}","environment":"{environment}"}`},
	}}
	stash, stashCred := connectionFor(ns, "stash", "stash")
	mustCreate(t, cred, vc, stash, stashCred, pushSource(ns, "src", map[string]string{"A": "1", "B": "2"}))
	sp := pushFor(ns, "generic", "generic", vaultName, "src")
	mustCreate(t, sp)
	waitPush(t, sp, kf.ReasonSynced, "")
	if vals := dev.Secrets(vaultName, "production"); vals["A"] != "1" || vals["B"] != "2" || vals["OTHER"] != "x" {
		t.Fatalf("http push: %v", vals)
	}
	if n := writes(vaultName); n != 2 {
		t.Fatalf("http push of two keys: %d requests", n)
	}
	refused := pushFor(ns, "stash", "stash", vaultName, "src")
	mustCreate(t, refused)
	if msg := readyCondition(waitPush(t, refused, kf.ReasonInvalidSpec, "").Status.Conditions).Message; !strings.Contains(msg, "documents no write API") {
		t.Fatalf("stash push: %q", msg)
	}
}
