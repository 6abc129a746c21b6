package vault

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Dialect decodes a vendor's error body into its human message. Each vendor's own
// dialect lives beside its preset (vendor_<name>.go); this file holds what they share.
type Dialect func(body []byte) string

// maxMessageLen bounds the provider text carried into conditions and logs.
const maxMessageLen = 256

// DialectPlainText reads a body as plain text (unless it is HTML, JSON or binary): for a
// vendor that publishes no error format.
func DialectPlainText(body []byte) string { return plainText(body) }

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
