package render

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// Decoding is how a source's values are decoded (External Secrets Operator's names).
type Decoding string

// Decodings.
const (
	DecodeNone      Decoding = ""
	DecodeBase64    Decoding = "Base64"
	DecodeBase64URL Decoding = "Base64URL"
	DecodeAuto      Decoding = "Auto"
)

// decode is the value of src's key k as its decoding says. A value that is not base64
// under Base64 or Base64URL is the vault's fault (FromVault), named by key, never quoted.
func decode(src Source, k string) (string, error) {
	v := src.Values[k]
	switch src.Decoding {
	case DecodeBase64:
		if out, ok := decodeWith(v, base64.StdEncoding, base64.RawStdEncoding); ok {
			return out, nil
		}
	case DecodeBase64URL:
		if out, ok := decodeWith(v, base64.URLEncoding, base64.RawURLEncoding); ok {
			return out, nil
		}
	case DecodeAuto:
		if out, ok := decodeWith(v, base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding); ok {
			return out, nil
		}
		return v, nil
	default:
		return v, nil
	}
	return "", &Error{FromVault: true, Message: fmt.Sprintf("%svalue of key %q is not %s (decodingStrategy %s)", src.where(), k, strings.ToLower(string(src.Decoding)), src.Decoding)}
}

// decodeWith decodes v (surrounding white space and line breaks ignored, as base64 kept in
// a dotenv file often has them) with the first encoding that takes it.
func decodeWith(v string, encs ...*base64.Encoding) (string, bool) {
	v = strings.Join(strings.Fields(v), "")
	if v == "" {
		return "", true
	}
	for _, e := range encs {
		if out, err := e.DecodeString(v); err == nil {
			return string(out), true
		}
	}
	return "", false
}
