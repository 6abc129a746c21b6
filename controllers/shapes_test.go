package controllers_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// patchBinding applies mutate to the live binding as a merge patch.
func patchBinding(t *testing.T, b *kf.SecretBinding, mutate func(*kf.SecretBinding)) {
	t.Helper()
	base := getBinding(t, b)
	next := base.DeepCopy()
	mutate(next)
	if err := k8s.Patch(context.Background(), next, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
}

// waitFailure waits until the binding's current generation failed with reason and a
// message containing says; the message never holds a canary.
func waitFailure(t *testing.T, b *kf.SecretBinding, reason, says string) *kf.SecretBinding {
	t.Helper()
	var got *kf.SecretBinding
	eventually(t, 30*time.Second, reason+": "+says, func() (bool, string) {
		got = getBinding(t, b)
		r := readyCondition(got.Status.Conditions)
		if r == nil {
			return false, "no Ready"
		}
		return r.Reason == reason && r.ObservedGeneration == got.Generation && strings.Contains(r.Message, says), r.Reason + ": " + r.Message
	})
	assertNoCanary(t, readyCondition(got.Status.Conditions).Message)
	return got
}

func waitSynced(t *testing.T, b *kf.SecretBinding) *kf.SecretBinding {
	t.Helper()
	return waitFailure(t, b, kf.ReasonSynced, "")
}

// Several sources: merged in order (a later source wins), keys counted per source, a
// failing source fails the binding naming it, and the Secret keeps its last good data
// whole.
func TestSourcesMergeInOrderAndFailWhole(t *testing.T) {
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	mustCreate(t, cred, vc)
	dev.SetSecret("acme/src", "common", "LOG_LEVEL", "info")
	dev.SetSecret("acme/src", "common", "REGION", "eu")
	dev.SetSecret("acme/src", "production", "LOG_LEVEL", "warn")
	dev.SetSecret("acme/src", "production", "DB_URL", "postgres://db")
	b := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "merged"}, Spec: kf.SecretBindingSpec{
		ConnectionRef: kf.ConnectionReference{Name: "keyway"}, Vault: "acme/src", Environment: "common",
		Sources: []kf.SecretSource{{Vault: "acme/src", Environment: "production"}, {Vault: "acme/shared", Environment: "production", Prefix: "SHARED_"}},
	}}
	mustCreate(t, b)
	got := waitSynced(t, b)
	s := getSecret(t, ns, "merged")
	want := map[string]string{"LOG_LEVEL": "warn", "REGION": "eu", "DB_URL": "postgres://db", "SHARED_SHARED": "1"}
	if len(s.Data) != len(want) {
		t.Fatalf("Secret has %d keys, want %v", len(s.Data), want)
	}
	for k, v := range want {
		if string(s.Data[k]) != v {
			t.Errorf("%s = %q, want %q", k, s.Data[k], v)
		}
	}
	wantCounts := []kf.SourceStatus{{Vault: "acme/src", Environment: "common", Keys: 1}, {Vault: "acme/src", Environment: "production", Keys: 2},
		{Vault: "acme/shared", Environment: "production", Keys: 1}}
	if fmt.Sprint(got.Status.Sources) != fmt.Sprint(wantCounts) {
		t.Errorf("status.sources = %v, want %v", got.Status.Sources, wantCounts)
	}
	// A third source the token may not read: Forbidden, naming it; nothing written.
	rv := s.ResourceVersion
	patchBinding(t, b, func(b *kf.SecretBinding) {
		b.Spec.Sources = append(b.Spec.Sources, kf.SecretSource{Vault: "acme/secret", Environment: "production"})
	})
	waitFailure(t, b, kf.ReasonForbidden, "source 4 (acme/secret, production)")
	if s := getSecret(t, ns, "merged"); s.ResourceVersion != rv || len(s.Data) != len(want) {
		t.Fatalf("the Secret changed on a failed source (%d keys)", len(s.Data))
	}
}

// Twenty bindings reading the same three environments cost one pull per environment.
func TestSourcesCoalesce(t *testing.T) {
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	mustCreate(t, cred, vc)
	envs := []string{"one", "two", "three"}
	before := map[string]int{}
	for _, e := range envs {
		dev.SetSecret("acme/fan", e, "K_"+strings.ToUpper(e), e)
		before[e] = dev.Count("keyway.pull:acme/fan/" + e)
	}
	var bs []*kf.SecretBinding
	for i := range 20 {
		b := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("fan-%02d", i)}, Spec: kf.SecretBindingSpec{
			ConnectionRef: kf.ConnectionReference{Name: "keyway"},
			Sources:       []kf.SecretSource{{Vault: "acme/fan", Environment: "one"}, {Vault: "acme/fan", Environment: "two"}, {Vault: "acme/fan", Environment: "three"}},
		}}
		bs = append(bs, b)
		mustCreate(t, b)
	}
	for _, b := range bs {
		waitSynced(t, b)
		if n := len(getSecret(t, ns, b.Name).Data); n != 3 {
			t.Fatalf("%s: %d keys, want 3", b.Name, n)
		}
	}
	for _, e := range envs {
		if n := dev.Count("keyway.pull:acme/fan/"+e) - before[e]; n != 1 {
			t.Errorf("environment %s: %d pulls for 20 bindings, want 1", e, n)
		}
	}
}

// decodingStrategy: Base64 writes the decoded bytes (binary included); a value that is not
// base64 is InvalidResponse naming the key, and the last good Secret stays; Auto keeps it.
func TestDecodingStrategy(t *testing.T) {
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	mustCreate(t, cred, vc)
	bin := []byte{0, 1, 2, 0xff, 'x'}
	dev.SetSecret("acme/dec", "production", "BLOB", base64.StdEncoding.EncodeToString(bin))
	b := bindingFor(ns, "dec", "keyway", "keyway")
	b.Spec.Vault, b.Spec.DecodingStrategy = "acme/dec", kf.DecodingBase64
	mustCreate(t, b)
	waitSynced(t, b)
	if got := getSecret(t, ns, "dec").Data["BLOB"]; string(got) != string(bin) {
		t.Fatalf("BLOB = %v, want %v", got, bin)
	}
	dev.SetSecret("acme/dec", "production", "PLAIN", canaryValue+"!")
	refresh(t, b, "plain")
	waitFailure(t, b, kf.ReasonInvalidResponse, `value of key "PLAIN" is not base64`)
	if got := getSecret(t, ns, "dec").Data; len(got) != 1 || string(got["BLOB"]) != string(bin) {
		t.Fatalf("the last good Secret was not kept: %d keys", len(got))
	}
	patchBinding(t, b, func(b *kf.SecretBinding) { b.Spec.DecodingStrategy = kf.DecodingAuto })
	waitSynced(t, b)
	if got := getSecret(t, ns, "dec").Data; string(got["BLOB"]) != string(bin) || string(got["PLAIN"]) != canaryValue+"!" {
		t.Fatalf("Auto: BLOB %v, PLAIN kept as it is: %v", got["BLOB"], string(got["PLAIN"]) == canaryValue+"!")
	}
}

func pemPair(t *testing.T, cn string, notAfter time.Time) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

// Typed Secrets are checked before they are written: a TLS pair kept base64 in the vault
// becomes a kubernetes.io/tls Secret with certificateNotAfter; a key that does not match
// is InvalidResponse (from the vault), a dockerconfigjson without auths InvalidSpec (from
// the template), a basic-auth Secret without username or password InvalidResponse; each
// time the last good Secret stays.
func TestTypedSecretsAreChecked(t *testing.T) {
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	mustCreate(t, cred, vc)
	notAfter := time.Now().Add(90 * 24 * time.Hour).UTC().Truncate(time.Second)
	crt, key := pemPair(t, "app.local", notAfter)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	dev.SetSecret("acme/tls", "production", "TLS_CRT", b64(crt))
	dev.SetSecret("acme/tls", "production", "TLS_KEY", b64(key))
	b := bindingFor(ns, "tls", "keyway", "keyway")
	b.Spec.Vault, b.Spec.DecodingStrategy = "acme/tls", kf.DecodingBase64
	b.Spec.Rename = map[string]kf.SecretKeyName{"TLS_CRT": "tls.crt", "TLS_KEY": "tls.key"}
	b.Spec.Target.Type = corev1.SecretTypeTLS
	mustCreate(t, b)
	got := waitSynced(t, b)
	if got.Status.CertificateNotAfter == nil || !got.Status.CertificateNotAfter.Time.Equal(notAfter) {
		t.Fatalf("certificateNotAfter = %v, want %v", got.Status.CertificateNotAfter, notAfter)
	}
	if s := getSecret(t, ns, "tls"); s.Type != corev1.SecretTypeTLS || string(s.Data["tls.crt"]) != crt {
		t.Fatalf("Secret type %s", s.Type)
	}
	_, otherKey := pemPair(t, "other", notAfter)
	dev.SetSecret("acme/tls", "production", "TLS_KEY", b64(otherKey))
	refresh(t, b, "mismatch")
	waitFailure(t, b, kf.ReasonInvalidResponse, "key tls.key does not parse as a private key or does not match the certificate")
	if s := getSecret(t, ns, "tls"); string(s.Data["tls.key"]) != key {
		t.Fatal("the last good TLS pair was not kept")
	}

	pull := bindingFor(ns, "pull", "keyway", "keyway")
	pull.Spec.Target.Type = corev1.SecretTypeDockerConfigJson
	pull.Spec.Target.Template = &kf.TargetTemplate{Data: map[string]string{
		".dockerconfigjson": `{{ dict "auths" (dict "registry.local" (dict "auth" (printf "%s:%s" .DB_USER .DB_PASS | b64enc))) | toJson }}`}}
	mustCreate(t, pull)
	waitSynced(t, pull)
	patchBinding(t, pull, func(b *kf.SecretBinding) {
		b.Spec.Target.Template.Data[".dockerconfigjson"] = `{{ dict "registry.local" .DB_USER | toJson }}`
	})
	waitFailure(t, pull, kf.ReasonInvalidSpec, `key .dockerconfigjson must be a JSON object with an "auths" object (rendered by target.template)`)

	basic := bindingFor(ns, "basic", "keyway", "keyway")
	basic.Spec.Target.Type = corev1.SecretTypeBasicAuth
	basic.Spec.Keys = &kf.KeySelector{Include: []string{"^DB_USER$"}}
	mustCreate(t, basic)
	waitFailure(t, basic, kf.ReasonInvalidResponse, "key username or password is missing")
	patchBinding(t, basic, func(b *kf.SecretBinding) { b.Spec.Rename = map[string]kf.SecretKeyName{"DB_USER": "username"} })
	waitSynced(t, basic)
}

// templateFrom: templates kept in a ConfigMap of the binding's namespace (labelled), as
// Values and KeysAndValues, over two environments; a ConfigMap change re-renders within
// seconds without a provider request; a ConfigMap that did not opt in is NotAllowed, a
// missing one InvalidSpec.
func TestTemplatesFromConfigMaps(t *testing.T) {
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	mustCreate(t, cred, vc)
	dev.SetSecret("acme/cfg", "common", "REGION", "eu")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-templates", Labels: map[string]string{kf.LabelTemplate: "true"}},
		Data: map[string]string{
			"config.json": `{{ dict "user" .DB_USER "region" .REGION | toJson }}`,
			"extra":       "EXTRA_REGION: {{ .REGION | upper | quote }}\nEXTRA_USER: {{ .DB_USER | quote }}",
		}}
	mustCreate(t, cm)
	b := bindingFor(ns, "cfg", "keyway", "keyway")
	b.Spec.Sources = []kf.SecretSource{{Vault: "acme/cfg", Environment: "common"}}
	b.Spec.Target.TemplateFrom = []kf.TemplateFrom{{ConfigMap: kf.TemplateConfigMapRef{Name: "app-templates",
		Items: []kf.TemplateFromItem{{Key: "config.json"}, {Key: "extra", TemplateAs: kf.TemplateAsKeysAndValues}}}}}
	mustCreate(t, b)
	waitSynced(t, b)
	s := getSecret(t, ns, "cfg")
	if string(s.Data["config.json"]) != `{"region":"eu","user":"app"}` || string(s.Data["EXTRA_REGION"]) != "EU" || string(s.Data["EXTRA_USER"]) != "app" {
		t.Fatalf("rendered %q, %q, %q", s.Data["config.json"], s.Data["EXTRA_REGION"], s.Data["EXTRA_USER"])
	}
	pulls := dev.Count("keyway.pull:acme/payments/production") + dev.Count("keyway.pull:acme/cfg/common")
	base := cm.DeepCopy()
	cm.Data["config.json"] = `{{ dict "user" .DB_USER | toJson }}`
	if err := k8s.Patch(context.Background(), cm, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the Secret re-rendered from the changed ConfigMap", func() (bool, string) {
		got := string(getSecret(t, ns, "cfg").Data["config.json"])
		return got == `{"user":"app"}`, got
	})
	if now := dev.Count("keyway.pull:acme/payments/production") + dev.Count("keyway.pull:acme/cfg/common"); now != pulls {
		t.Errorf("re-rendering cost %d provider requests, want 0", now-pulls)
	}
	plain := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "not-opted-in"}, Data: map[string]string{"t": "x"}}
	mustCreate(t, plain)
	patchBinding(t, b, func(b *kf.SecretBinding) { b.Spec.Target.TemplateFrom[0].ConfigMap.Name = "not-opted-in" })
	waitFailure(t, b, kf.ReasonNotAllowed, `ConfigMap not-opted-in does not carry the label keyferry.dev/template="true"`)
	patchBinding(t, b, func(b *kf.SecretBinding) { b.Spec.Target.TemplateFrom[0].ConfigMap.Name = "missing" })
	waitFailure(t, b, kf.ReasonInvalidSpec, "ConfigMap missing not found in namespace "+ns)
	if got := string(getSecret(t, ns, "cfg").Data["config.json"]); got != `{"user":"app"}` {
		t.Fatalf("the last good Secret was not kept: %q", got)
	}
}
