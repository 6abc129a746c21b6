package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// Keyway: bearer tokens (JWTs, PATs, kw_live_ API keys), RFC 7807 errors, 100 requests per
// 15 minutes, and a native pull endpoint answering dotenv text in data.content. Its server
// answers over-limit requests with HTTP 500 plus retry-after, which the generic Retry-After
// handling turns into RateLimited.
var keyway = &Preset{
	Name:       "keyway",
	DefaultURL: "https://api.keyway.sh",
	Dialect:    DialectRFC7807,
	Budget:     RateBudget{Requests: 100, Period: 15 * time.Minute},
	NativePull: &PullRequest{
		Method:   "GET",
		Path:     "/v1/secrets/pull?repo={vault}&environment={environment}",
		Format:   FormatDotenv,
		DataPath: "data.content",
	},
	Push: keywayPush,
	Keys: keywayKeys,
}

// DialectRFC7807 reads application/problem+json (Keyway): detail, else title.
func DialectRFC7807(body []byte) string {
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) != nil {
		return ""
	}
	if p.Detail != "" {
		return p.Detail
	}
	return p.Title
}

// keywayPush is Keyway's write API as its open-source server implements it: one key per
// POST (the bulk /v1/secrets/push replaces the whole environment, so keyferry never uses
// it), keys ^[A-Z][A-Z0-9_]*$, values up to 64 KiB, and delete by id (found by listing).
var keywayPush = &PushPreset{
	Write: PushRequest{Method: http.MethodPost, Path: "/v1/vaults/{vault}/secrets",
		Body: `{"key":"{key}","value":"{value}","environment":"{environment}"}`},
	KeyRule:       regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`),
	KeyRuleText:   "upper case letters, digits and underscores, starting with a letter",
	MaxValueBytes: 64 << 10,
	Delete:        keywayDelete,
}

// keywayListPages bounds the listing that finds a key's id (100 keys a page).
const keywayListPages = 20

func keywayDelete(ctx context.Context, c *Client, t PushTarget, key string) error {
	vars := map[string]string{"{vault}": t.Vault}
	for page := range keywayListPages {
		path := expandPathVars(fmt.Sprintf("/v1/vaults/{vault}/secrets?limit=100&offset=%d", page*100), vars)
		resp, err := c.doAuthorized(ctx, "delete", func() (*http.Request, error) {
			return c.newRequest(http.MethodGet, path, nil, "")
		})
		if err != nil {
			return err
		}
		var list struct {
			Data []struct{ ID, Key, Environment string } `json:"data"`
			Meta struct {
				Pagination struct{ HasMore bool } `json:"pagination"`
			} `json:"meta"`
		}
		if err := json.Unmarshal(resp.body, &list); err != nil {
			return &Error{Reason: ReasonInvalidResponse, Op: "delete", StatusCode: resp.status, Message: "listing keys: " + jsonErrorText(err)}
		}
		for _, s := range list.Data {
			if s.Key == key && s.Environment == t.Environment {
				_, err := c.doAuthorized(ctx, "delete", func() (*http.Request, error) {
					return c.newRequest(http.MethodDelete, expandPathVars("/v1/vaults/{vault}/secrets/"+escapePath(s.ID), vars), nil, "")
				})
				return err
			}
		}
		if !list.Meta.Pagination.HasMore {
			return nil // already gone
		}
	}
	return &Error{Reason: ReasonInvalidResponse, Op: "delete", Message: fmt.Sprintf("key %s not found in the first %d keys of the vault", key, keywayListPages*100)}
}

// keywayKeys is the key API of the open-source Keyway server: POST/GET /v1/api-keys and
// DELETE /v1/api-keys/:id, all needing the admin:api-keys scope; keys carry a 16-character
// prefix, scopes, environment (live or test) and expiresAt; a revoked key answers 400 "API
// key is already revoked" to another revoke.
var keywayKeys = &KeyAPI{
	PrefixLen:  16,
	IDFromList: true,
	AdminScope: "admin:api-keys",
	Verify:     PushRequest{Method: http.MethodGet, Path: "/v1/vaults?limit=1"},
	list: func(body []byte) ([]APIKey, error) {
		var l struct {
			Data struct {
				Keys []keywayKey `json:"keys"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &l); err != nil {
			return nil, errors.New(jsonErrorText(err))
		}
		out := make([]APIKey, 0, len(l.Data.Keys))
		for _, k := range l.Data.Keys {
			out = append(out, k.apiKey())
		}
		return out, nil
	},
	create: func(nk NewKey) ([]byte, func([]byte) (APIKey, string, error)) {
		req := map[string]any{"name": nk.Name, "environment": nk.Environment, "scopes": nk.Scopes}
		if nk.ExpiresInDays > 0 {
			req["expiresInDays"] = nk.ExpiresInDays
		}
		body, _ := json.Marshal(req)
		return body, func(b []byte) (APIKey, string, error) {
			var r struct {
				Data struct {
					keywayKey
					Token string `json:"token"`
				} `json:"data"`
			}
			if err := json.Unmarshal(b, &r); err != nil {
				return APIKey{}, "", errors.New(jsonErrorText(err))
			}
			return r.Data.apiKey(), r.Data.Token, nil
		}
	},
	gone: func(e *Error) bool {
		return e.StatusCode == http.StatusNotFound || (e.StatusCode == http.StatusBadRequest && strings.Contains(e.Message, "already revoked"))
	},
}

type keywayKey struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Prefix      string   `json:"prefix"`
	Environment string   `json:"environment"`
	Scopes      []string `json:"scopes"`
	ExpiresAt   *keyTime `json:"expiresAt"`
	CreatedAt   *keyTime `json:"createdAt"`
	RevokedAt   *keyTime `json:"revokedAt"`
	IsActive    *bool    `json:"isActive"`
}

func (k keywayKey) apiKey() APIKey {
	active := k.RevokedAt == nil
	if k.IsActive != nil {
		active = *k.IsActive
	}
	return APIKey{ID: k.ID, Name: k.Name, Prefix: k.Prefix, Environment: k.Environment, Scopes: k.Scopes,
		CreatedAt: k.CreatedAt.time(), ExpiresAt: k.ExpiresAt.time(), Active: active}
}
