package vault

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Dialect decodes a vendor's error body into its human message.
type Dialect func(body []byte) string

// maxMessageLen bounds the provider text carried into conditions and logs.
const maxMessageLen = 256

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

// DialectGeneric tries the common JSON shapes, then falls back to plain text.
func DialectGeneric(body []byte) string {
	for _, d := range []Dialect{DialectRFC7807, DialectKeystash, DialectFastAPI, DialectKeymint} {
		if m := d(body); m != "" {
			return m
		}
	}
	return plainText(body)
}

// errorMessage decodes body with d, falling back to plain text, and sanitises the result.
func errorMessage(d Dialect, body []byte) string {
	msg := ""
	if d != nil {
		msg = d(body)
	}
	if msg == "" {
		msg = plainText(body)
	}
	return sanitize(msg)
}

// plainText returns body as a message unless it is HTML or binary.
func plainText(body []byte) string {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] == '<' || !utf8.Valid(trimmed[:min(len(trimmed), 4*maxMessageLen)]) {
		return ""
	}
	if trimmed[0] == '{' || trimmed[0] == '[' {
		return "" // JSON we could not read says nothing useful on its own
	}
	return string(trimmed[:min(len(trimmed), 4*maxMessageLen)])
}

// sanitize folds white space, drops control characters and truncates.
func sanitize(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError {
			continue
		}
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if b.Len()+utf8.RuneLen(r) > maxMessageLen {
			b.WriteString("...")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
