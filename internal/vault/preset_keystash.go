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
func init() {
	registerPreset(&Preset{
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
	})
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
