package vault

import (
	"encoding/json"
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
