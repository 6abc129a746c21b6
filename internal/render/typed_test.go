package render

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func testPair(t *testing.T, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// TestCheckType: each type's good data passes and each bad case names the key and the
// rule, never a value.
func TestCheckType(t *testing.T) {
	notAfter := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	crt, key := testPair(t, notAfter)
	_, otherKey := testPair(t, notAfter)
	const canary = "CANARY-in-the-data"
	b := func(kv ...string) map[string][]byte {
		m := map[string][]byte{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = []byte(kv[i+1])
		}
		return m
	}
	tests := []struct {
		typ  string
		data map[string][]byte
		want string // "" passes
	}{
		{"Opaque", b("x", canary), ""},
		{"kubernetes.io/dockerconfigjson", b(".dockerconfigjson", `{"auths":{"r":{"auth":"eDp5"}}}`), ""},
		{"kubernetes.io/dockerconfigjson", b("config", "{}"), "key .dockerconfigjson is missing"},
		{"kubernetes.io/dockerconfigjson", b(".dockerconfigjson", `{"r":"`+canary+`"}`), `key .dockerconfigjson must be a JSON object with an "auths" object`},
		{"kubernetes.io/dockerconfigjson", b(".dockerconfigjson", canary), `must be a JSON object with an "auths" object`},
		{"kubernetes.io/dockercfg", b(".dockercfg", `{"r":{}}`), ""},
		{"kubernetes.io/dockercfg", b(".dockercfg", canary), "key .dockercfg must be a JSON object"},
		{"kubernetes.io/basic-auth", b("username", "u"), ""},
		{"kubernetes.io/basic-auth", b("password", canary), ""},
		{"kubernetes.io/basic-auth", b("user", "u"), "key username or password is missing"},
		{"kubernetes.io/ssh-auth", b("ssh-privatekey", string(key)), ""},
		{"kubernetes.io/ssh-auth", b("ssh-privatekey", canary), "key ssh-privatekey must be a PEM private key"},
		{"kubernetes.io/ssh-auth", b("id_rsa", string(key)), "key ssh-privatekey is missing"},
		{"kubernetes.io/tls", b("tls.crt", string(crt), "tls.key", string(key)), ""},
		{"kubernetes.io/tls", b("tls.crt", string(crt)), "key tls.key is missing"},
		{"kubernetes.io/tls", b("tls.crt", canary, "tls.key", string(key)), "key tls.crt must be PEM, starting with a CERTIFICATE block"},
		{"kubernetes.io/tls", b("tls.crt", string(key), "tls.key", string(key)), "key tls.crt must be PEM, starting with a CERTIFICATE block"},
		{"kubernetes.io/tls", b("tls.crt", string(crt), "tls.key", canary), "key tls.key must be a PEM private key"},
		{"kubernetes.io/tls", b("tls.crt", string(crt), "tls.key", string(otherKey)), "key tls.key does not parse as a private key or does not match"},
	}
	for _, tc := range tests {
		got, err := CheckType(tc.typ, tc.data)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %v: %v", tc.typ, keysOf(tc.data), err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s %v: err = %v, want %q", tc.typ, keysOf(tc.data), err, tc.want)
		case err != nil && strings.Contains(err.Error(), "CANARY"):
			t.Errorf("%s: the error quotes a value: %v", tc.typ, err)
		case tc.want == "" && tc.typ == "kubernetes.io/tls" && !got.CertificateNotAfter.Equal(notAfter):
			t.Errorf("certificate expiry %v, want %v", got.CertificateNotAfter, notAfter)
		}
	}
}

func keysOf(m map[string][]byte) []string { return Keys(m) }

// TestMergeSources: order, prefix, per-source counts and decoding, with and without a
// template.
func TestMergeSources(t *testing.T) {
	srcs := []Source{
		{Values: map[string]string{"A": "1", "B": "2"}},
		{Values: map[string]string{"B": "Mw==", "C": "NA"}, Decoding: DecodeBase64, Name: "source 2"},
		{Values: map[string]string{"A": "4"}, Prefix: "P_"},
	}
	out, counts, err := Merge(srcs, Templates{})
	if err != nil {
		t.Fatal(err)
	}
	if string(out["A"]) != "1" || string(out["B"]) != "3" || string(out["C"]) != "4" || string(out["P_A"]) != "4" || len(out) != 4 {
		// B: source 2 wins and decodes (padded); C: unpadded base64 decodes too.
		t.Fatalf("merged %q", out)
	}
	if counts[0] != 1 || counts[1] != 2 || counts[2] != 1 {
		t.Fatalf("counts %v, want [1 2 1]", counts)
	}
	tmpl, _, err := Merge(srcs, Templates{Values: map[string]string{"x": "{{ .A }}{{ .P_A }}{{ .C }}"}})
	if err != nil || string(tmpl["x"]) != "144" || len(tmpl) != 1 {
		t.Fatalf("template over sources: %q, %v", tmpl, err)
	}
	_, _, err = Merge([]Source{{Values: map[string]string{"K": "not base64!"}, Decoding: DecodeBase64, Name: "source 1"}}, Templates{})
	var re *Error
	if !errors.As(err, &re) || !re.FromVault || !strings.Contains(err.Error(), `source 1: value of key "K" is not base64`) || strings.Contains(err.Error(), "not base64!") {
		t.Fatalf("bad base64: %v", err)
	}
	kv, _, err := Merge([]Source{{Values: map[string]string{"U": "u"}}}, Templates{KeysAndValues: map[string]string{"cm/t": "A: {{ .U | upper }}\nB: x"}})
	if err != nil || string(kv["A"]) != "U" || string(kv["B"]) != "x" {
		t.Fatalf("KeysAndValues: %q %v", kv, err)
	}
}
