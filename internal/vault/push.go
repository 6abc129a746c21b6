package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// PushRequest says how to write one key (the http provider's explicit request). Path and
// Body may hold {vault}, {environment} and {key}; Body also {value}.
type PushRequest struct {
	Method string
	Path   string
	Body   string
}

// PushTarget is one environment of one vault written to, and how (Request nil: the
// preset's write endpoint).
type PushTarget struct {
	Vault       string
	Environment string
	Request     *PushRequest
}

// PushPreset is how a vendor documents writing: one key per request, which keys and
// values it accepts, and how to delete a key (nil: not documented).
type PushPreset struct {
	Write PushRequest
	// KeyRule is the pattern every key must match (nil: any key), KeyRuleText it in words.
	KeyRule     *regexp.Regexp
	KeyRuleText string
	// MaxValueBytes is the largest value accepted (0: no documented limit).
	MaxValueBytes int
	// Delete removes key from t (nil: the vendor documents no delete).
	Delete func(ctx context.Context, c *Client, t PushTarget, key string) error
}

// ErrKeyRefused is wrapped by CheckKey's errors: the vault would refuse the key or value.
var ErrKeyRefused = errors.New("refused by the provider's rules")

// CanPush says whether keys can be written through this client to t: the preset documents
// a write API, or t brings an explicit request (http).
func (c *Client) CanPush(t PushTarget) error {
	if t.Request == nil && c.preset.Push == nil {
		return &Error{Reason: ReasonInvalidConfig, Op: "push",
			Message: "provider " + c.cfg.Provider + " documents no write API: keyferry pushes to keyway, or to http with the connection's spec.push"}
	}
	if t.Request != nil && strings.Contains(t.Request.Path, "{value}") {
		return &Error{Reason: ReasonInvalidConfig, Op: "push", Message: "push.path may not hold {value}: a value in a URL ends up in logs"}
	}
	return nil
}

// CanDelete says whether keys can be deleted from t.
func (c *Client) CanDelete(t PushTarget) error {
	if t.Request != nil || c.preset.Push == nil || c.preset.Push.Delete == nil {
		return &Error{Reason: ReasonInvalidConfig, Op: "delete",
			Message: "provider " + c.cfg.Provider + " documents no way to delete a key: use deletionPolicy Keep"}
	}
	return nil
}

// CheckKey returns an error wrapping ErrKeyRefused when the provider's documented rules
// refuse key or a value of valueLen bytes; it names the key and the rule, never the value.
func (c *Client) CheckKey(t PushTarget, key string, valueLen int) error {
	p := c.preset.Push
	if t.Request != nil || p == nil {
		return nil
	}
	if p.KeyRule != nil && !p.KeyRule.MatchString(key) {
		return fmt.Errorf("key %q: %w: keys must match %s (%s); rename it with source.rename", key, ErrKeyRefused, p.KeyRule, p.KeyRuleText)
	}
	if p.MaxValueBytes > 0 && valueLen > p.MaxValueBytes {
		return fmt.Errorf("key %q: %w: its value is %d bytes, over the %d KiB %s accepts", key, ErrKeyRefused, valueLen, p.MaxValueBytes>>10, c.cfg.Provider)
	}
	return nil
}

// ReadEnvironment reads an environment's values now (one request through the gate, not
// shared with bindings: a push compares against what the vault holds at this moment). An
// environment the provider reports as empty (keyway: 404 "No secrets found") is empty.
func (c *Client) ReadEnvironment(ctx context.Context, t Target) (map[string]string, error) {
	data, err := c.pull(ctx, t)
	if ve, ok := AsError(err); ok && ve.Reason == ReasonNotFound && strings.Contains(ve.Message, "No secrets found") {
		return map[string]string{}, nil
	}
	return data, err
}

// PushKey writes one key's value (op "push"). Its errors never hold the value, even when
// the provider echoes it.
func (c *Client) PushKey(ctx context.Context, t PushTarget, key, value string) error {
	rq := t.Request
	if rq == nil {
		rq = &c.preset.Push.Write
	}
	method := rq.Method
	if method == "" {
		method = http.MethodPut
	}
	vars := map[string]string{"{vault}": t.Vault, "{environment}": t.Environment, "{key}": key}
	path := expandPathVars(rq.Path, vars)
	vars["{value}"] = value
	body, isJSON := expandBodyVars(rq.Body, vars)
	ctype := ""
	if isJSON {
		ctype = "application/json"
	}
	_, err := c.doAuthorized(ctx, "push", func() (*http.Request, error) {
		return c.newRequest(method, path, []byte(body), ctype)
	})
	return scrubValue(err, value)
}

// DeleteKey removes one key (op "delete").
func (c *Client) DeleteKey(ctx context.Context, t PushTarget, key string) error {
	if err := c.CanDelete(t); err != nil {
		return err
	}
	return c.preset.Push.Delete(ctx, c, t, key)
}

// scrubValue removes a pushed value from an error's message, in every encoding a provider
// may echo it in.
func scrubValue(err error, value string) error {
	ve, ok := AsError(err)
	if !ok || len(value) < 4 {
		return err
	}
	for _, form := range encodedForms(value) {
		ve.Message = strings.ReplaceAll(ve.Message, form, "[redacted]")
	}
	return err
}

// expandPathVars fills placeholders, escaped for where they stand: path segments before
// the '?', query values after it (a vault's slashes are kept in the path).
func expandPathVars(p string, vars map[string]string) string {
	pathPart, query, hasQuery := strings.Cut(p, "?")
	var pairs []string
	for k, v := range vars {
		pairs = append(pairs, k, escapePath(v))
	}
	pathPart = strings.NewReplacer(pairs...).Replace(pathPart)
	if !hasQuery {
		return pathPart
	}
	pairs = pairs[:0]
	for k, v := range vars {
		pairs = append(pairs, k, url.QueryEscape(v))
	}
	return pathPart + "?" + strings.NewReplacer(pairs...).Replace(query)
}

// expandBodyVars fills the placeholders of a body; in a JSON body they are JSON-escaped.
func expandBodyVars(b string, vars map[string]string) (string, bool) {
	if b == "" {
		return "", false
	}
	isJSON := looksLikeJSON([]byte(b))
	var pairs []string
	for k, v := range vars {
		if isJSON {
			q, _ := json.Marshal(v)
			v = string(q[1 : len(q)-1])
		}
		pairs = append(pairs, k, v)
	}
	return strings.NewReplacer(pairs...).Replace(b), isJSON
}
