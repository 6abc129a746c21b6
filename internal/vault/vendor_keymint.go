package vault

import "encoding/json"

// Keymint: at_ tokens as Bearer; errors {"message","code"}; 429 carries Retry-After: 60.
var keymint = &Preset{
	Name:       "keymint",
	DefaultURL: "https://api.keymint.dev",
	Dialect:    DialectKeymint,
}

// DialectKeymint reads {"message","code"}.
func DialectKeymint(body []byte) string {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Message
}
