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

	"sigs.k8s.io/yaml"

	"k8s.io/apimachinery/pkg/util/validation"
)

// MaxSecretSize is the API server's limit on a Secret's data (keys and values).
const MaxSecretSize = 1 << 20

// Spec is what a binding asks for, in plain values, for one source (Data).
type Spec struct {
	Include  []string
	Exclude  []string
	Rename   map[string]string
	Template map[string]string
}

// Source is one vault environment's values and how they enter the Secret.
type Source struct {
	// Name says which source, in errors ("source 2 (acme/shared, common)").
	Name     string
	Values   map[string]string
	Include  []string
	Exclude  []string
	Rename   map[string]string
	Prefix   string
	Decoding Decoding
}

// Templates are the templates of a render: Values maps a Secret key to its template;
// KeysAndValues are templates that render a YAML mapping of Secret keys to values.
type Templates struct {
	Values        map[string]string
	KeysAndValues map[string]string
}

func (t Templates) empty() bool { return len(t.Values) == 0 && len(t.KeysAndValues) == 0 }

// Error is a rendering failure; Field names the part of the spec at fault.
type Error struct {
	// TooLarge is set when the data exceeds MaxSecretSize; otherwise the spec is at fault.
	TooLarge bool
	// FromVault is set when the vault's data is at fault (a value that does not decode).
	FromVault bool
	Message   string
}

func (e *Error) Error() string { return e.Message }

// Data renders one source's pulled values into a Secret's data. Nothing in an error
// quotes a value.
func Data(pulled map[string]string, spec Spec) (map[string][]byte, error) {
	out, _, err := Merge([]Source{{Values: pulled, Include: spec.Include, Exclude: spec.Exclude, Rename: spec.Rename}},
		Templates{Values: spec.Template})
	return out, err
}

// Merge renders sources, in order (a later source wins a key), into a Secret's data and
// counts the keys each gave. Without templates each source's keys are selected, renamed,
// prefixed and decoded; with templates, the templates read every source's values (prefix
// and decoding applied, later sources winning) and say themselves what is written.
func Merge(sources []Source, tmpl Templates) (map[string][]byte, []int32, error) {
	counts := make([]int32, len(sources))
	out := map[string][]byte{}
	if !tmpl.empty() {
		values := map[string]string{}
		for _, src := range sources {
			for _, k := range sortedKeys(src.Values) {
				v, err := decode(src, k)
				if err != nil {
					return nil, nil, err
				}
				values[src.Prefix+k] = v
			}
		}
		var err error
		if out, err = renderTemplates(values, tmpl); err != nil {
			return nil, nil, err
		}
	} else {
		from := map[string]int{}
		for i, src := range sources {
			got, err := selectKeys(src)
			if err != nil {
				return nil, nil, err
			}
			for k, v := range got {
				if j, ok := from[k]; ok {
					counts[j]--
				}
				out[k], from[k] = v, i
				counts[i]++
			}
		}
	}
	size := 0
	for k, v := range out {
		if errs := validation.IsConfigMapKey(k); len(errs) > 0 {
			return nil, nil, &Error{Message: fmt.Sprintf("key %q is not a valid Secret key (%s); use rename or keys.exclude", k, errs[0])}
		}
		size += len(k) + len(v)
	}
	if size > MaxSecretSize {
		return nil, nil, &Error{TooLarge: true, Message: fmt.Sprintf("the Secret's data would be %d bytes, over the %d byte limit", size, MaxSecretSize)}
	}
	return out, counts, nil
}

// selectKeys is one source's keys as written without a template.
func selectKeys(src Source) (map[string][]byte, error) {
	include, err := compileAll(src.field("keys.include"), src.Include)
	if err != nil {
		return nil, err
	}
	exclude, err := compileAll(src.field("keys.exclude"), src.Exclude)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, k := range sortedKeys(src.Values) {
		if len(include) > 0 && !matchAny(include, k) || matchAny(exclude, k) {
			continue
		}
		name := k
		if to, ok := src.Rename[k]; ok {
			name = to
		}
		name = src.Prefix + name
		if _, dup := out[name]; dup {
			return nil, &Error{Message: fmt.Sprintf("%stwo keys would be written as %q (check rename)", src.where(), name)}
		}
		v, err := decode(src, k)
		if err != nil {
			return nil, err
		}
		out[name] = []byte(v)
	}
	return out, nil
}

func (src Source) field(f string) string {
	if src.Name == "" {
		return f
	}
	return src.Name + " " + f
}

func (src Source) where() string {
	if src.Name == "" {
		return ""
	}
	return src.Name + ": "
}

// renderTemplates runs the templates over values, sharing one budget.
func renderTemplates(values map[string]string, tmpl Templates) (map[string][]byte, error) {
	out := map[string][]byte{}
	b := &budget{output: MaxSecretSize, funcBytes: maxFuncBytes, values: slices.Collect(maps.Values(values))}
	run := func(what, key, text string) ([]byte, error) {
		t, err := b.parseTemplate(key, text)
		if err != nil {
			return nil, &Error{Message: fmt.Sprintf("%s %q does not parse: %v", what, key, templateError(b, err))}
		}
		var buf bytes.Buffer
		if err := b.execute(t, values, io.MultiWriter(b, &buf)); err != nil {
			if errors.Is(err, errOutputLimit) {
				return nil, &Error{TooLarge: true, Message: fmt.Sprintf("%s %q: the Secret's data would be over the %d byte limit", what, key, MaxSecretSize)}
			}
			return nil, &Error{Message: fmt.Sprintf("%s %q failed: %v", what, key, templateError(b, err))}
		}
		return buf.Bytes(), nil
	}
	for _, key := range sortedKeys(tmpl.KeysAndValues) {
		doc, err := run("template", key, tmpl.KeysAndValues[key])
		if err != nil {
			return nil, err
		}
		kv := map[string]string{}
		if err := yaml.Unmarshal(doc, &kv); err != nil {
			return nil, &Error{Message: fmt.Sprintf("template %q (KeysAndValues) must render a YAML mapping of keys to string values", key)}
		}
		for k, v := range kv {
			out[k] = []byte(v)
		}
	}
	for _, key := range sortedKeys(tmpl.Values) {
		v, err := run("template for key", key, tmpl.Values[key])
		if err != nil {
			return nil, err
		}
		out[key] = v
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
