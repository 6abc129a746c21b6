package vault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// DecodePayload extracts the secrets from a response body: the value at dataPath (dot
// separated; empty for the whole body), read as format.
func DecodePayload(body []byte, format Format, dataPath string) (map[string]string, error) {
	if format == FormatDotenv && dataPath == "" && !looksLikeJSON(body) {
		return ParseDotenv(string(body))
	}
	var root any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("response is not JSON: %s", jsonErrorText(err))
	}
	node := root
	if dataPath != "" {
		for _, part := range strings.Split(dataPath, ".") {
			obj, ok := node.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("response has no %q (at %q)", dataPath, part)
			}
			if node, ok = obj[part]; !ok {
				return nil, fmt.Errorf("response has no %q (at %q)", dataPath, part)
			}
		}
	}
	switch v := node.(type) {
	case string:
		if format == FormatDotenv {
			return ParseDotenv(v)
		}
		// A JSON object carried as a string.
		return DecodePayload([]byte(v), FormatJSON, "")
	case map[string]any:
		if format == FormatDotenv {
			return nil, fmt.Errorf("expected dotenv text at %q, found a JSON object", dataPath)
		}
		return flattenObject(v)
	default:
		return nil, fmt.Errorf("expected an object of secrets at %q, found %s", dataPath, jsonKind(node))
	}
}

// flattenObject turns an object's values into strings: strings as they are, numbers and
// booleans as their text, null as empty, nested objects and arrays as compact JSON.
func flattenObject(obj map[string]any) (map[string]string, error) {
	out := make(map[string]string, len(obj))
	for k, v := range obj {
		switch t := v.(type) {
		case string:
			out[k] = t
		case json.Number:
			out[k] = t.String()
		case bool:
			if t {
				out[k] = "true"
			} else {
				out[k] = "false"
			}
		case nil:
			out[k] = ""
		default:
			b, err := json.Marshal(t)
			if err != nil {
				return nil, fmt.Errorf("value of %q: %w", k, err)
			}
			out[k] = string(b)
		}
	}
	return out, nil
}

func looksLikeJSON(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && (b[0] == '{' || b[0] == '[')
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return "another value"
	}
}

// jsonErrorText describes a JSON error without quoting the body (which may hold secrets).
func jsonErrorText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	return "malformed or truncated JSON"
}
