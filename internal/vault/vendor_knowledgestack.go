package vault

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// Knowledge Stack: API keys as Bearer, or JSON password sign-in whose token arrives either
// as access_token or in the ks_uat cookie (the vendor's docs disagree, so both are read);
// refresh through /v1/auth/uat, sign-out through /v1/auth/signout; FastAPI errors.
var knowledgeStack = &Preset{
	Name:       "knowledgestack",
	DefaultURL: "https://api.knowledgestack.ai",
	Dialect:    DialectFastAPI,
	Login: LoginConfig{
		Path:          "/v1/auth/pw/signin",
		Encoding:      EncodingJSON,
		UsernameField: "email",
		PasswordField: "password",
		TokenField:    "access_token",
		TokenCookie:   "ks_uat",
		RefreshPath:   "/v1/auth/uat",
		SignoutPath:   "/v1/auth/signout",
	},
	Keys: knowledgeStackKeys,
}

// DialectFastAPI reads Knowledge Stack's {"detail": string | [{"msg": ...}, ...]}.
func DialectFastAPI(body []byte) string {
	var e struct {
		Detail json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Detail) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(e.Detail, &s) == nil {
		return s
	}
	var list []struct {
		Msg string `json:"msg"`
		Loc []any  `json:"loc"`
	}
	if json.Unmarshal(e.Detail, &list) != nil {
		return ""
	}
	msgs := make([]string, 0, len(list))
	for i, item := range list {
		if i == 4 {
			msgs = append(msgs, "...")
			break
		}
		if item.Msg != "" {
			msgs = append(msgs, item.Msg)
		}
	}
	return strings.Join(msgs, "; ")
}

// knowledgeStackKeys is Knowledge Stack's key API as its authentication page documents it:
// POST /v1/api-keys {"name"} answers {"id","name","key","created_at"} (the key only then),
// GET /v1/api-keys lists keys (its shape is not documented: a list, or one under data,
// items, keys or api_keys), DELETE /v1/api-keys/<id>. Keys never expire and the listing
// shows no prefix, so a hand-made key's id must be given (keyferry.dev/key-id).
var knowledgeStackKeys = &KeyAPI{
	AdminScope: "the right to manage API keys",
	Verify:     PushRequest{Method: http.MethodGet, Path: "/v1/users/me"},
	list: func(body []byte) ([]APIKey, error) {
		var items []ksKey
		if err := json.Unmarshal(body, &items); err != nil {
			var wrapped map[string]json.RawMessage
			if err := json.Unmarshal(body, &wrapped); err != nil {
				return nil, errors.New(jsonErrorText(err))
			}
			found := false
			for _, field := range []string{"data", "items", "keys", "api_keys"} {
				if raw, ok := wrapped[field]; ok && json.Unmarshal(raw, &items) == nil {
					found = true
					break
				}
			}
			if !found {
				return nil, errors.New("no list of keys in the answer")
			}
		}
		out := make([]APIKey, 0, len(items))
		for _, k := range items {
			out = append(out, APIKey{ID: k.ID, Name: k.Name, CreatedAt: k.CreatedAt.time(), Active: true})
		}
		return out, nil
	},
	create: func(nk NewKey) ([]byte, func([]byte) (APIKey, string, error)) {
		body, _ := json.Marshal(map[string]string{"name": nk.Name})
		return body, func(b []byte) (APIKey, string, error) {
			var r struct {
				ksKey
				Key string `json:"key"`
			}
			if err := json.Unmarshal(b, &r); err != nil {
				return APIKey{}, "", errors.New(jsonErrorText(err))
			}
			return APIKey{ID: r.ID, Name: r.Name, CreatedAt: r.CreatedAt.time(), Active: true}, r.Key, nil
		}
	},
	gone: func(e *Error) bool { return e.StatusCode == http.StatusNotFound },
}

type ksKey struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	CreatedAt *keyTime `json:"created_at"`
}
