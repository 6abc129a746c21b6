package vault

import (
	"errors"
	"fmt"
	"strings"
)

// ParseDotenv decodes dotenv text as Keyway emits it, and the usual variants: comments,
// blank lines, `export ` prefixes, CRLF, empty values, single-quoted literals and
// double-quoted values in which `\"` is a quote and newlines appear literally (PEM keys).
// Any other backslash is kept as it is, since Keyway escapes nothing else.
func ParseDotenv(text string) (map[string]string, error) {
	s := strings.ReplaceAll(text, "\r\n", "\n")
	out := map[string]string{}
	line := 1
	for i := 0; i < len(s); {
		end := lineEnd(s, i)
		raw := s[i:end]
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || trimmed[0] == '#' {
			i, line = end+1, line+1
			continue
		}
		key, rest, ok := strings.Cut(strings.TrimPrefix(trimmed, "export "), "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" || strings.ContainsAny(key, " \t\"'") {
			return nil, fmt.Errorf("dotenv line %d: not KEY=VALUE", line)
		}
		rest = strings.TrimLeft(rest, " \t")
		switch {
		case strings.HasPrefix(rest, `"`):
			// The key holds no quote, so the first quote of the line opens the value.
			open := i + strings.IndexByte(raw, '"')
			value, n, err := readDoubleQuoted(s[open+1:])
			if err != nil {
				return nil, fmt.Errorf("dotenv line %d: %w", line, err)
			}
			closed := open + 1 + n
			end = lineEnd(s, closed)
			if after := strings.TrimSpace(s[closed:end]); after != "" && after[0] != '#' {
				return nil, fmt.Errorf("dotenv line %d: text after the closing quote", line)
			}
			out[key] = value
		case strings.HasPrefix(rest, `'`):
			value, _, found := strings.Cut(rest[1:], "'")
			if !found {
				return nil, fmt.Errorf("dotenv line %d: unterminated single quote", line)
			}
			out[key] = value
		default:
			// Values with spaces come quoted, so " #" can only start a comment.
			value, _, _ := strings.Cut(rest, " #")
			out[key] = strings.TrimSpace(value)
		}
		line += strings.Count(s[i:end], "\n") + 1
		i = end + 1
	}
	return out, nil
}

// lineEnd returns the index of the newline ending the line that holds s[from], or len(s).
func lineEnd(s string, from int) int {
	if j := strings.IndexByte(s[from:], '\n'); j >= 0 {
		return from + j
	}
	return len(s)
}

var errUnterminated = errors.New("unterminated double quote")

// readDoubleQuoted reads up to the closing quote of s (which starts after the opening
// one) and returns the value and how many bytes of s it used, closing quote included.
func readDoubleQuoted(s string) (string, int, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s) && s[i+1] == '"':
			b.WriteByte('"')
			i++
		case c == '"':
			return b.String(), i + 1, nil
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errUnterminated
}
