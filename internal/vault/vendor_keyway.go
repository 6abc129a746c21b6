package vault

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
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
