package vault

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// PullRequest says how to fetch one environment's secrets. Path and Body may hold the
// placeholders {vault} and {environment}.
type PullRequest struct {
	Method   string
	Path     string
	Body     string
	Format   Format
	DataPath string
}

// Target is one environment of one vault, and how to read it when the provider has no
// native endpoint (Request nil: use the preset's).
type Target struct {
	Vault       string
	Environment string
	Request     *PullRequest
}

// Key identifies what a target fetches: two targets with the same key share fetches.
func (t Target) Key() string { return t.key() }

// key identifies what a target fetches, for coalescing.
func (t Target) key() string {
	r := t.Request
	if r == nil {
		r = &PullRequest{}
	}
	return strings.Join([]string{t.Vault, t.Environment, r.Method, r.Path, r.Body, string(r.Format), r.DataPath}, "\x00")
}

// pull fetches and decodes a target's secrets with one request.
func (c *Client) pull(ctx context.Context, t Target) (map[string]string, error) {
	r := t.Request
	if r == nil {
		r = c.preset.NativePull
	}
	if r == nil {
		return nil, &Error{Reason: ReasonInvalidConfig, Op: "pull",
			Message: "provider " + c.cfg.Provider + " has no native secrets endpoint: set the binding's request"}
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	path := expandPath(r.Path, t.Vault, t.Environment)
	var body []byte
	ctype := ""
	if r.Body != "" {
		expanded, isJSON := expandBody(r.Body, t.Vault, t.Environment)
		body = []byte(expanded)
		if isJSON {
			ctype = "application/json"
		}
	}
	resp, err := c.doAuthorized(ctx, "pull", func() (*http.Request, error) {
		return c.newRequest(method, path, body, ctype)
	})
	if err != nil {
		return nil, err
	}
	format := r.Format
	if format == "" {
		format = FormatJSON
	}
	data, err := DecodePayload(resp.body, format, r.DataPath)
	if err != nil {
		return nil, &Error{Reason: ReasonInvalidResponse, Op: "pull", StatusCode: resp.status, Message: err.Error()}
	}
	return data, nil
}

// expandPath fills the placeholders, escaped for where they stand: path segments before
// the '?', query values after it.
func expandPath(p, vault, env string) string {
	pathPart, query, hasQuery := strings.Cut(p, "?")
	pathPart = strings.NewReplacer("{vault}", escapePath(vault), "{environment}", url.PathEscape(env)).Replace(pathPart)
	if !hasQuery {
		return pathPart
	}
	query = strings.NewReplacer("{vault}", url.QueryEscape(vault), "{environment}", url.QueryEscape(env)).Replace(query)
	return pathPart + "?" + query
}

// escapePath escapes each segment of a vault name, keeping its slashes (keyway's
// owner/repo names address nested paths).
func escapePath(v string) string {
	segs := strings.Split(v, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// expandBody fills the placeholders of a body; in a JSON body they are JSON-escaped.
func expandBody(b, vault, env string) (string, bool) {
	isJSON := looksLikeJSON([]byte(b))
	esc := func(s string) string { return s }
	if isJSON {
		esc = func(s string) string {
			q, _ := json.Marshal(s)
			return string(q[1 : len(q)-1])
		}
	}
	return strings.NewReplacer("{vault}", esc(vault), "{environment}", esc(env)).Replace(b), isJSON
}
