package vault

import (
	"encoding/json"
	"net/http"
	"time"
)

// Keystash: form login at /login returning {"token"}, tokens valid 1 hour, 5 requests per
// second. Its quirk: bad credentials come back as 403 {"error":"<string>"}, while a real
// permission error is 403 {"error":{"code":"Forbidden",...}}. The first is an
// authentication failure (re-login once), the second is Forbidden (never re-login).
var keystash = &Preset{
	Name:       "keystash",
	DefaultURL: "https://app.keystash.io",
	Dialect:    DialectKeystash,
	Login: LoginConfig{
		Path:          "/login",
		Encoding:      EncodingForm,
		UsernameField: "username",
		PasswordField: "password",
		TokenField:    "token",
		TTL:           time.Hour,
	},
	Budget:   RateBudget{Requests: 5, Period: time.Second},
	Classify: classifyKeystash,
}

func classifyKeystash(_ string, resp *http.Response, body []byte, r Reason) Reason {
	if resp.StatusCode != http.StatusForbidden {
		return r
	}
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	var s string
	if json.Unmarshal(body, &e) == nil && json.Unmarshal(e.Error, &s) == nil {
		return ReasonUnauthorized
	}
	return r
}

// DialectKeystash reads {"error":"..."} and {"error":{"code","message","details"}}.
func DialectKeystash(body []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Error) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(e.Error, &s) == nil {
		return s
	}
	var o struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(e.Error, &o) != nil {
		return ""
	}
	switch {
	case o.Code != "" && o.Message != "":
		return o.Code + ": " + o.Message
	case o.Message != "":
		return o.Message
	default:
		return o.Code
	}
}
