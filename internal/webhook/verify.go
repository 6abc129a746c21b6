// Package webhook checks the signed calls that ask keyferry to refresh bindings at once
// (RefreshReceivers): where a receiver listens, whether a request is authentic and fresh,
// and how much any one source or all of them together may ask. It touches neither the API
// server nor a provider: a refused request costs a few hashes.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Kind is how a receiver authenticates its callers.
type Kind string

// Receiver kinds.
const (
	// GenericHMAC: X-Signature: sha256=<hex HMAC-SHA256 of "<X-Timestamp>.<body>">, with
	// X-Timestamp (Unix seconds) within MaxSkew of now.
	GenericHMAC Kind = "generic-hmac"
	// GitHub: X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>, as GitHub signs
	// repository webhooks; X-GitHub-Delivery identifies a delivery (replays).
	GitHub Kind = "github"
	// Token: Authorization: Bearer <token>, for callers that cannot sign.
	Token Kind = "token"
)

// MaxBody is the largest body a hook may carry.
const MaxBody = 64 << 10

// MaxSkew is how far a generic-hmac timestamp may be from now.
const MaxSkew = 5 * time.Minute

// Refusals, each a value of the requests metric's result label.
var (
	ErrMissing   = errors.New("missing-signature")
	ErrSignature = errors.New("bad-signature")
	ErrStale     = errors.New("stale")
	ErrReplay    = errors.New("replay")
	ErrUnknown   = errors.New("unknown-kind")
)

// Path is where a receiver listens: /hook/ and the hex SHA-256 of its namespace, name and
// token (Flux's scheme). It reveals nothing of them and changes when the token does, so an
// old path stops answering once the token rotates.
func Path(namespace, name string, token []byte) string {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(namespace), []byte(name), token} {
		// Length-prefixed: ("ab","c") and ("a","bc") differ.
		h.Write([]byte(strconv.Itoa(len(part)) + ":"))
		h.Write(part)
	}
	return "/hook/" + hex.EncodeToString(h.Sum(nil))
}

// Call is what a check reads of one request.
type Call struct {
	Header http.Header
	Body   []byte
	Now    time.Time
}

// Verdict is an authentic call: ReplayKey identifies it among calls to the same receiver
// (empty when the kind cannot tell one from another), Ping says it asks for nothing (a
// GitHub ping).
type Verdict struct {
	ReplayKey string
	Ping      bool
}

// Verify checks that c was sent by a holder of secret, the way kind signs. Comparisons
// are constant-time. It never says more than which check failed.
func Verify(kind Kind, secret []byte, c Call) (Verdict, error) {
	switch kind {
	case GenericHMAC:
		ts, sig := c.Header.Get("X-Timestamp"), c.Header.Get("X-Signature")
		if ts == "" || sig == "" {
			return Verdict{}, ErrMissing
		}
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			return Verdict{}, ErrStale
		}
		// The signature is checked before the time: a forger learns nothing from which.
		if !signatureMatches(sig, secret, []byte(ts+"."), c.Body) {
			return Verdict{}, ErrSignature
		}
		if d := c.Now.Sub(time.Unix(sec, 0)); d > MaxSkew || d < -MaxSkew {
			return Verdict{}, ErrStale
		}
		return Verdict{ReplayKey: sig}, nil
	case GitHub:
		sig := c.Header.Get("X-Hub-Signature-256")
		if sig == "" {
			return Verdict{}, ErrMissing
		}
		if !signatureMatches(sig, secret, c.Body) {
			return Verdict{}, ErrSignature
		}
		v := Verdict{Ping: c.Header.Get("X-GitHub-Event") == "ping"}
		if id := c.Header.Get("X-GitHub-Delivery"); id != "" {
			v.ReplayKey = "delivery:" + id
		} else {
			v.ReplayKey = sig
		}
		return v, nil
	case Token:
		auth := c.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || tok == "" {
			return Verdict{}, ErrMissing
		}
		if subtle.ConstantTimeCompare([]byte(tok), secret) != 1 {
			return Verdict{}, ErrSignature
		}
		return Verdict{}, nil
	}
	return Verdict{}, ErrUnknown
}

// Sign returns the X-Signature (generic-hmac) or X-Hub-Signature-256 (github) value for
// body: prefix is "<timestamp>." for generic-hmac, empty for github. For senders (the
// plugin's test call, tests).
func Sign(secret []byte, prefix string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(prefix))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func signatureMatches(header string, secret []byte, parts ...[]byte) bool {
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	gotRaw, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	for _, p := range parts {
		m.Write(p)
	}
	return hmac.Equal(gotRaw, m.Sum(nil))
}
