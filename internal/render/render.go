// Package render turns the secrets pulled from a vault into the data of a Kubernetes
// Secret: key selection, renames, templates, key and size validation, and the keyed digest
// that lets an unchanged pull skip the write.
package render

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/util/validation"
)

// MaxSecretSize is the API server's limit on a Secret's data (keys and values).
const MaxSecretSize = 1 << 20

// Spec is what a binding asks for, in plain values.
type Spec struct {
	Include  []string
	Exclude  []string
	Rename   map[string]string
	Template map[string]string
}

// Error is a rendering failure; Field names the part of the spec at fault.
type Error struct {
	// TooLarge is set when the data exceeds MaxSecretSize; otherwise the spec is at fault.
	TooLarge bool
	Message  string
}

func (e *Error) Error() string { return e.Message }

// Data renders pulled into a Secret's data. Nothing in an error quotes a value.
func Data(pulled map[string]string, spec Spec) (map[string][]byte, error) {
	include, err := compileAll("keys.include", spec.Include)
	if err != nil {
		return nil, err
	}
	exclude, err := compileAll("keys.exclude", spec.Exclude)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	if len(spec.Template) > 0 {
		b := &budget{output: MaxSecretSize, funcBytes: maxFuncBytes, values: slices.Collect(maps.Values(pulled))}
		for _, key := range sortedKeys(spec.Template) {
			tmpl, err := b.parseTemplate(key, spec.Template[key])
			if err != nil {
				return nil, &Error{Message: fmt.Sprintf("template for key %q does not parse: %v", key, templateError(b, err))}
			}
			var buf bytes.Buffer
			if err := b.execute(tmpl, pulled, io.MultiWriter(b, &buf)); err != nil {
				if errors.Is(err, errOutputLimit) {
					return nil, &Error{TooLarge: true, Message: fmt.Sprintf("template for key %q: the Secret's data would be over the %d byte limit", key, MaxSecretSize)}
				}
				return nil, &Error{Message: fmt.Sprintf("template for key %q failed: %v", key, templateError(b, err))}
			}
			out[key] = buf.Bytes()
		}
	} else {
		for _, k := range sortedKeys(pulled) {
			if len(include) > 0 && !matchAny(include, k) || matchAny(exclude, k) {
				continue
			}
			name := k
			if to, ok := spec.Rename[k]; ok {
				name = to
			}
			if _, dup := out[name]; dup {
				return nil, &Error{Message: fmt.Sprintf("two keys would be written as %q (check rename)", name)}
			}
			out[name] = []byte(pulled[k])
		}
	}
	size := 0
	for k, v := range out {
		if errs := validation.IsConfigMapKey(k); len(errs) > 0 {
			return nil, &Error{Message: fmt.Sprintf("key %q is not a valid Secret key (%s); use rename or keys.exclude", k, errs[0])}
		}
		size += len(k) + len(v)
	}
	if size > MaxSecretSize {
		return nil, &Error{TooLarge: true, Message: fmt.Sprintf("the Secret's data would be %d bytes, over the %d byte limit", size, MaxSecretSize)}
	}
	return out, nil
}

// templateError keeps text/template's description, which names keys, positions and the
// failing call; function errors were scrubbed of values when they happened
// (budget.charged), and the whole message is scrubbed once more.
func templateError(b *budget, err error) string {
	return b.scrub(err.Error())
}

func compileAll(field string, exprs []string) ([]*regexp.Regexp, error) {
	out := make([]*regexp.Regexp, 0, len(exprs))
	for i, e := range exprs {
		re, err := regexp.Compile(e)
		if err != nil {
			return nil, &Error{Message: fmt.Sprintf("%s[%d] is not a valid regular expression: %v", field, i, err)}
		}
		out = append(out, re)
	}
	return out, nil
}

func matchAny(res []*regexp.Regexp, s string) bool {
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// Digest is a keyed HMAC of a Secret's type and data: equal digests mean equal content,
// and without the key the digest says nothing about the values.
func Digest(key []byte, secretType string, data map[string][]byte) string {
	m := hmac.New(sha256.New, key)
	writePrefixed(m, []byte(secretType))
	for _, k := range sortedKeys(data) {
		writePrefixed(m, []byte(k))
		writePrefixed(m, data[k])
	}
	return hex.EncodeToString(m.Sum(nil))
}

// DataDigest is what keyferry keeps in a Secret's data-hmac annotation: the Digest of the
// data it wrote, with the Secret's type unless it merges (the type is then the owner's).
func DataDigest(key []byte, secretType string, merge bool, data map[string][]byte) string {
	if merge {
		secretType = ""
	}
	return Digest(key, secretType, data)
}

// writePrefixed writes s with its length first, so that no two sequences of fields hash
// alike.
func writePrefixed(h hash.Hash, s []byte) {
	h.Write([]byte(strconv.Itoa(len(s))))
	h.Write([]byte{':'})
	h.Write(s)
}

// Subset returns the entries of data whose keys are in keys.
func Subset(data map[string][]byte, keys []string) map[string][]byte {
	out := make(map[string][]byte, len(keys))
	for _, k := range keys {
		if v, ok := data[k]; ok {
			out[k] = v
		}
	}
	return out
}

// Keys returns data's keys, sorted.
func Keys(data map[string][]byte) []string { return sortedKeys(data) }

// KeyDigest is the keyed HMAC-SHA256 of one entry: what the cache keeps of a managed
// Secret's value (a prefix of it, see package trim). The value cannot be recovered from it.
func KeyDigest(key []byte, name string, value []byte) []byte {
	m := hmac.New(sha256.New, key)
	writePrefixed(m, []byte(name))
	m.Write(value)
	return m.Sum(nil)
}
