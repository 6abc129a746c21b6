package vault

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// KeyAPI is a vendor's documented API-key endpoints, what a rotation needs: list, create
// and revoke keys, and one read that proves a key works. Every request goes through the
// connection's gate (budget and Retry-After) but is not the connection's outcome: a
// refused rotation does not make a serving connection look broken.
type KeyAPI struct {
	// PrefixLen is how many leading characters of a key the vendor shows as its prefix
	// (keyway: 16, "kw_live_" and 8 more); 0 when it shows none.
	PrefixLen int
	// IDFromList says the vendor's listing tells which key a token is (by prefix); when
	// false the key's id must be known beforehand (keyferry.dev/key-id).
	IDFromList bool
	// AdminScope names what a key needs to manage keys, for messages.
	AdminScope string
	// Verify is the read that proves a key: cheap, and allowed to a key that pulls.
	Verify PushRequest

	list   func(body []byte) ([]APIKey, error)
	create func(k NewKey) ([]byte, func(body []byte) (APIKey, string, error))
	// gone says a revoke answer means the key is already revoked or deleted.
	gone func(e *Error) bool
}

// APIKey describes a key as the vendor lists it; never its value.
type APIKey struct {
	ID          string
	Name        string
	Prefix      string
	Environment string
	Scopes      []string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	Active      bool
}

// NewKey is what a new key is asked to be. Scopes, Environment and ExpiresInDays are
// keyway's; other vendors ignore them.
type NewKey struct {
	Name          string
	Scopes        []string
	Environment   string
	ExpiresInDays int
}

// ErrNoKeyAPI is returned for a provider that documents no key API.
var ErrNoKeyAPI = errors.New("the provider documents no API to create and revoke keys")

// Keys returns the vendor's key API; nil when it documents none.
func (c *Client) Keys() *KeyAPI { return c.preset.Keys }

// Prefix is the part of tok the vendor shows, or "" when it shows none.
func (k *KeyAPI) Prefix(tok string) string {
	if k.PrefixLen == 0 || len(tok) < k.PrefixLen {
		return ""
	}
	return tok[:k.PrefixLen]
}

// ListKeys lists the account's keys, authenticated with tok (op "keys").
func (c *Client) ListKeys(ctx context.Context, tok string) ([]APIKey, error) {
	k := c.preset.Keys
	if k == nil {
		return nil, ErrNoKeyAPI
	}
	resp, err := c.withToken(ctx, "keys", tok, http.MethodGet, "/v1/api-keys", nil)
	if err != nil {
		return nil, err
	}
	keys, err := k.list(resp.body)
	if err != nil {
		return nil, &Error{Reason: ReasonInvalidResponse, Op: "keys", StatusCode: resp.status, Message: "listing API keys: " + err.Error()}
	}
	return keys, nil
}

// CreateKey creates a key, authenticated with tok, and returns it with its value (returned
// by the vendor this once). Errors never hold either token.
func (c *Client) CreateKey(ctx context.Context, tok string, nk NewKey) (APIKey, string, error) {
	k := c.preset.Keys
	if k == nil {
		return APIKey{}, "", ErrNoKeyAPI
	}
	body, decode := k.create(nk)
	resp, err := c.withToken(ctx, "keys", tok, http.MethodPost, "/v1/api-keys", body)
	if err != nil {
		return APIKey{}, "", err
	}
	key, value, err := decode(resp.body)
	if err != nil || key.ID == "" || value == "" {
		msg := "the answer to the key creation holds no id or key"
		if err != nil {
			msg = "reading the created key: " + err.Error()
		}
		return APIKey{}, "", &Error{Reason: ReasonInvalidResponse, Op: "keys", StatusCode: resp.status, Message: msg}
	}
	if key.CreatedAt.IsZero() {
		key.CreatedAt = c.cfg.Clock.Now()
	}
	if key.Prefix == "" {
		key.Prefix = k.Prefix(value)
	}
	return key, value, nil
}

// RevokeKey revokes the key id, authenticated with tok; a key already revoked or gone is
// not an error.
func (c *Client) RevokeKey(ctx context.Context, tok, id string) error {
	k := c.preset.Keys
	if k == nil {
		return ErrNoKeyAPI
	}
	_, err := c.withToken(ctx, "keys", tok, http.MethodDelete, "/v1/api-keys/"+escapePath(id), nil)
	if ve, ok := AsError(err); ok && k.gone(ve) {
		return nil
	}
	return err
}

// VerifyKey sends the vendor's verifying read with tok (op "verify").
func (c *Client) VerifyKey(ctx context.Context, tok string) error {
	k := c.preset.Keys
	if k == nil {
		return ErrNoKeyAPI
	}
	_, err := c.withToken(ctx, "verify", tok, k.Verify.Method, k.Verify.Path, nil)
	return err
}

// withToken sends one request authenticated with tok (not necessarily the client's own
// credential) through the gate. A failure is not recorded as the connection's outcome (a
// refused rotation leaves a serving connection Ready), and tok is scrubbed from any
// error.
func (c *Client) withToken(ctx context.Context, op, tok, method, path string, body []byte) (*response, error) {
	ctype := ""
	if body != nil {
		ctype = "application/json"
	}
	req, err := c.newRequest(method, path, body, ctype)
	if err != nil {
		return nil, &Error{Reason: ReasonInvalidConfig, Op: op, Message: "cannot build request: " + sanitize(err.Error())}
	}
	switch c.cfg.Auth {
	case AuthAPIKey:
		req.Header.Set(c.cfg.Header, tok)
	default:
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.sendOnce(ctx, op, req)
	if err == nil && tok == c.staticToken() {
		c.recordOutcome(nil) // an answer to the serving key proves it, as a pull would
	}
	return resp, scrubValue(err, tok)
}

// keyTime is an RFC 3339 time that may be null or malformed (then zero).
type keyTime time.Time

func (t *keyTime) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) != nil {
		return nil
	}
	if v, err := time.Parse(time.RFC3339Nano, s); err == nil {
		*t = keyTime(v)
	}
	return nil
}

func (t *keyTime) time() time.Time {
	if t == nil {
		return time.Time{}
	}
	return time.Time(*t)
}
