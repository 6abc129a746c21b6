package render

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"time"
)

// TypeError says which key of a typed Secret breaks which rule of its type (never how:
// no value is quoted).
type TypeError struct {
	Type string
	Key  string
	Rule string
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("%s Secret: key %s %s", e.Type, e.Key, e.Rule)
}

// Typed is what checking a typed Secret found out.
type Typed struct {
	// CertificateNotAfter is when a kubernetes.io/tls Secret's certificate expires.
	CertificateNotAfter time.Time
}

// CheckType checks data against the rules of Secret type t before it is written, as the
// consumers of that type read it (the API server checks only that the keys exist).
func CheckType(t string, data map[string][]byte) (Typed, error) {
	need := func(keys ...string) error {
		for _, k := range keys {
			if _, ok := data[k]; !ok {
				return &TypeError{Type: t, Key: k, Rule: "is missing"}
			}
		}
		return nil
	}
	switch t {
	case "kubernetes.io/dockerconfigjson":
		if err := need(".dockerconfigjson"); err != nil {
			return Typed{}, err
		}
		var cfg struct {
			Auths map[string]json.RawMessage `json:"auths"`
		}
		if json.Unmarshal(data[".dockerconfigjson"], &cfg) != nil || cfg.Auths == nil {
			return Typed{}, &TypeError{Type: t, Key: ".dockerconfigjson", Rule: `must be a JSON object with an "auths" object`}
		}
	case "kubernetes.io/dockercfg":
		if err := need(".dockercfg"); err != nil {
			return Typed{}, err
		}
		var cfg map[string]json.RawMessage
		if json.Unmarshal(data[".dockercfg"], &cfg) != nil {
			return Typed{}, &TypeError{Type: t, Key: ".dockercfg", Rule: "must be a JSON object"}
		}
	case "kubernetes.io/basic-auth":
		_, u := data["username"]
		_, p := data["password"]
		if !u && !p {
			return Typed{}, &TypeError{Type: t, Key: "username or password", Rule: "is missing (one of them is needed)"}
		}
	case "kubernetes.io/ssh-auth":
		if err := need("ssh-privatekey"); err != nil {
			return Typed{}, err
		}
		if b, _ := pem.Decode(data["ssh-privatekey"]); b == nil {
			return Typed{}, &TypeError{Type: t, Key: "ssh-privatekey", Rule: "must be a PEM private key"}
		}
	case "kubernetes.io/tls":
		return checkTLS(t, data, need)
	}
	return Typed{}, nil
}

func checkTLS(t string, data map[string][]byte, need func(...string) error) (Typed, error) {
	if err := need("tls.crt", "tls.key"); err != nil {
		return Typed{}, err
	}
	block, _ := pem.Decode(data["tls.crt"])
	if block == nil || block.Type != "CERTIFICATE" {
		return Typed{}, &TypeError{Type: t, Key: "tls.crt", Rule: "must be PEM, starting with a CERTIFICATE block"}
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return Typed{}, &TypeError{Type: t, Key: "tls.crt", Rule: "does not parse as an X.509 certificate"}
	}
	if b, _ := pem.Decode(data["tls.key"]); b == nil {
		return Typed{}, &TypeError{Type: t, Key: "tls.key", Rule: "must be a PEM private key"}
	}
	if _, err := tls.X509KeyPair(data["tls.crt"], data["tls.key"]); err != nil {
		return Typed{}, &TypeError{Type: t, Key: "tls.key", Rule: "does not parse as a private key or does not match the certificate in tls.crt"}
	}
	return Typed{CertificateNotAfter: leaf.NotAfter}, nil
}
