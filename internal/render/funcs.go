package render

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"

	sprig "github.com/Masterminds/sprig/v3"
	"sigs.k8s.io/yaml"
)

// The template function library is sprig v3 (Masterminds/sprig: the library Helm and
// External Secrets Operator templates use; its maintained successor go-sprout/sprout is
// not served by this project's module proxy), with ESO's additions (toYaml, fromYaml,
// required, filterPEM). Every function is charged by the render's budget for the bytes it
// reads and returns, generators are bounded before they run, and a function's error is
// scrubbed of the pulled values before it reaches a condition.
//
// A template must render the same bytes for the same data, or the Secret would be
// rewritten at every refresh, and it runs inside the shared operator: so what reaches
// outside the template, reads the clock or draws randomness is absent (refused, below),
// and sprig's map-ordered results (keys, values) are sorted.

// refusedFuncs are sprig's functions keyferry leaves out, with the reason a person reads
// when a template names one.
var refusedFuncs = map[string]string{
	"env":                      "it reads the operator's environment",
	"expandenv":                "it reads the operator's environment",
	"getHostByName":            "it makes a DNS request from the operator",
	"now":                      "it reads the clock: the Secret would change at every render",
	"ago":                      "it reads the clock: the Secret would change at every render",
	"date":                     "it formats the clock's time: the Secret would change at every render",
	"dateInZone":               "it formats the clock's time: the Secret would change at every render",
	"date_in_zone":             "it formats the clock's time: the Secret would change at every render",
	"htmlDate":                 "it formats the clock's time: the Secret would change at every render",
	"htmlDateInZone":           "it formats the clock's time: the Secret would change at every render",
	"dateModify":               "it works on the clock's time: the Secret would change at every render",
	"date_modify":              "it works on the clock's time: the Secret would change at every render",
	"mustDateModify":           "it works on the clock's time: the Secret would change at every render",
	"must_date_modify":         "it works on the clock's time: the Secret would change at every render",
	"randAlphaNum":             "it is random: the Secret would change at every render",
	"randAlpha":                "it is random: the Secret would change at every render",
	"randAscii":                "it is random: the Secret would change at every render",
	"randNumeric":              "it is random: the Secret would change at every render",
	"randBytes":                "it is random: the Secret would change at every render",
	"randInt":                  "it is random: the Secret would change at every render",
	"shuffle":                  "it is random: the Secret would change at every render",
	"uuidv4":                   "it is random: the Secret would change at every render",
	"bcrypt":                   "it salts at random: the Secret would change at every render",
	"htpasswd":                 "it salts at random: the Secret would change at every render",
	"encryptAES":               "it draws a random IV: the Secret would change at every render",
	"genPrivateKey":            "it generates a key at random: the Secret would change at every render",
	"genCA":                    "it generates a key at random: the Secret would change at every render",
	"genCAWithKey":             "it signs at random: the Secret would change at every render",
	"genSelfSignedCert":        "it generates a key at random: the Secret would change at every render",
	"genSelfSignedCertWithKey": "it signs at random: the Secret would change at every render",
	"genSignedCert":            "it generates a key at random: the Secret would change at every render",
	"genSignedCertWithKey":     "it signs at random: the Secret would change at every render",
	"derivePassword":           "it runs scrypt, too costly for the shared operator",
	"hello":                    "it is sprig's example, not a function",
	"call":                     "it calls arbitrary functions",
}

// maxGenerated bounds the elements a generator (until, untilStep, seq) makes.
const maxGenerated = 10_000

// rawLibrary is sprig's library less the refused functions, with keyferry's additions:
// the functions before they are charged (built once).
var rawLibrary = sync.OnceValue(func() map[string]any {
	all := sprig.GenericFuncMap()
	for name := range refusedFuncs {
		delete(all, name)
	}
	maps.Copy(all, map[string]any{
		"toYaml":    toYaml,
		"fromYaml":  fromYaml,
		"required":  required,
		"filterPEM": filterPEM,
		"keys":      sortedMapKeys,
		"values":    valuesByKey,
	})
	return all
})

// sprigGenerators are sprig's generators, which libraryFuncs bounds.
var sprigGenerators = sync.OnceValue(func() map[string]any {
	all := sprig.GenericFuncMap()
	return map[string]any{"until": all["until"], "untilStep": all["untilStep"], "seq": all["seq"]}
})

var errUnbound = errors.New("template function not bound to this render")

// parseFuncs name every function a template may call, for parsing only: each render binds
// the ones its templates use to its own budget (libraryFuncs) before they run, and a name
// left unbound fails rather than running uncharged (built once: a full map of charged
// wrappers per render would cost more than the render).
var parseFuncs = sync.OnceValue(func() template.FuncMap {
	fm := template.FuncMap{}
	unbound := func(...any) (any, error) { return nil, errUnbound }
	for name := range rawLibrary() {
		fm[name] = unbound
	}
	for _, name := range []string{"repeat", "indent", "nindent", "until", "untilStep", "seq"} {
		fm[name] = unbound
	}
	for name := range refusedFuncs {
		fm[name] = unbound
	}
	return fm
})

var identifier = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)

// parseFuncsFor are the parseFuncs whose names occur in text: a template can call no
// other, and copying all of them into every parsed template would be most of a render.
func parseFuncsFor(text string) template.FuncMap {
	all := parseFuncs()
	fm := template.FuncMap{}
	for _, id := range identifier.FindAllString(text, -1) {
		if f, ok := all[id]; ok {
			fm[id] = f
		}
	}
	return fm
}

// usedFuncs are the identifiers (function names) a parsed template calls.
func usedFuncs(n parse.Node) map[string]bool {
	used := map[string]bool{}
	walk(n, func(n parse.Node) {
		if id, ok := n.(*parse.IdentifierNode); ok {
			used[id.Ident] = true
		}
	})
	return used
}

// libraryFuncs are the library's functions that used names, charged by b (text/template's
// builtins that read or make data, b.funcs, go on top).
func (b *budget) libraryFuncs(used map[string]bool) template.FuncMap {
	fm := template.FuncMap{}
	for name := range used {
		if f, ok := rawLibrary()[name]; ok {
			fm[name] = b.charged(name, f)
		}
	}
	// Generators are checked before they allocate.
	fm["repeat"] = b.charged("repeat", func(count int, s string) (string, error) {
		if err := b.precharge(count, len(s)); err != nil {
			return "", err
		}
		return strings.Repeat(s, count), nil
	})
	indent := func(nl bool) func(int, string) (string, error) {
		return func(n int, s string) (string, error) {
			if n < 0 || n > maxFormatWidth {
				return "", fmt.Errorf("indent is limited to %d spaces", maxFormatWidth)
			}
			if err := b.precharge(n, strings.Count(s, "\n")+1); err != nil {
				return "", err
			}
			pad := strings.Repeat(" ", n)
			out := pad + strings.ReplaceAll(s, "\n", "\n"+pad)
			if nl {
				out = "\n" + out
			}
			return out, nil
		}
	}
	fm["indent"] = b.charged("indent", indent(false))
	fm["nindent"] = b.charged("nindent", indent(true))
	sg := sprigGenerators()
	until, untilStep, seq := sg["until"], sg["untilStep"], sg["seq"]
	fm["until"] = b.charged("until", func(n int) ([]int, error) {
		if n > maxGenerated || n < -maxGenerated {
			return nil, fmt.Errorf("until is limited to %d elements", maxGenerated)
		}
		return until.(func(int) []int)(n), nil
	})
	fm["untilStep"] = b.charged("untilStep", func(start, stop, step int) ([]int, error) {
		if step == 0 || absInt(stop-start)/absInt(step) > maxGenerated {
			return nil, fmt.Errorf("untilStep is limited to %d elements", maxGenerated)
		}
		return untilStep.(func(int, int, int) []int)(start, stop, step), nil
	})
	fm["seq"] = b.charged("seq", func(params ...int) (string, error) {
		lo, hi, step := 1, 0, 1
		switch len(params) {
		case 1:
			hi = params[0]
		case 2:
			lo, hi = params[0], params[1]
		case 3:
			lo, step, hi = params[0], params[1], params[2]
		}
		if step == 0 || absInt(hi-lo)/absInt(step) > maxGenerated {
			return "", fmt.Errorf("seq is limited to %d elements", maxGenerated)
		}
		return seq.(func(...int) string)(params...), nil
	})
	for name := range used {
		if reason, ok := refusedFuncs[name]; ok {
			msg := fmt.Sprintf("function %q is not available in keyferry templates: %s", name, reason)
			fm[name] = func(...any) (string, error) { return "", errors.New(msg) }
		}
	}
	for name := range fm {
		if !used[name] {
			delete(fm, name)
		}
	}
	return fm
}

func absInt(n int) int { return max(n, -n, 1) }

// precharge charges n copies of size bytes before a function makes them.
func (b *budget) precharge(n, size int) error {
	if n < 0 {
		return errors.New("a negative count")
	}
	if size > 0 && n > b.funcBytes/size {
		return fmt.Errorf("template functions used more than %d bytes", maxFuncBytes)
	}
	return nil
}

var errorType = reflect.TypeFor[error]()

// charged wraps f (any function text/template can call) so that the render's budget pays
// for the bytes of its arguments and results, and its error says nothing of a value: the
// wrapper has f's arguments and results plus an error, so a budget overrun stops the
// template there.
func (b *budget) charged(name string, f any) any {
	fv := reflect.ValueOf(f)
	ft := fv.Type()
	in := make([]reflect.Type, ft.NumIn())
	for i := range in {
		in[i] = ft.In(i)
	}
	var out []reflect.Type
	hasErr := ft.NumOut() > 0 && ft.Out(ft.NumOut()-1) == errorType
	for i := range ft.NumOut() {
		out = append(out, ft.Out(i))
	}
	if !hasErr {
		out = append(out, errorType)
	}
	wt := reflect.FuncOf(in, out, ft.IsVariadic())
	return reflect.MakeFunc(wt, func(args []reflect.Value) []reflect.Value {
		fail := func(err error) []reflect.Value {
			res := make([]reflect.Value, len(out))
			for i := range out[:len(out)-1] {
				res[i] = reflect.Zero(out[i])
			}
			res[len(out)-1] = reflect.ValueOf(&err).Elem()
			return res
		}
		cost := 0
		for _, a := range args {
			cost += costOf(a, 0)
		}
		if err := b.charge(cost); err != nil {
			return fail(fmt.Errorf("%s: %w", name, err))
		}
		var res []reflect.Value
		if ft.IsVariadic() {
			res = fv.CallSlice(args)
		} else {
			res = fv.Call(args)
		}
		if hasErr {
			if e := res[len(res)-1]; !e.IsNil() {
				return fail(fmt.Errorf("%s: %s", name, b.scrub(e.Interface().(error).Error())))
			}
			res = res[:len(res)-1]
		}
		for _, r := range res {
			if err := b.charge(costOf(r, 0)); err != nil {
				return fail(fmt.Errorf("%s: %w", name, err))
			}
		}
		return append(res, reflect.Zero(errorType))
	}).Interface()
}

// costOf is what reading v costs: its bytes, recursively (depth-capped: deeper levels are
// charged a flat amount, the budget bounds the rest).
func costOf(v reflect.Value, depth int) int {
	if !v.IsValid() {
		return 0
	}
	if depth > 32 {
		return 8
	}
	switch v.Kind() {
	case reflect.String:
		return v.Len()
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Len()
		}
		n := 8
		for i := range v.Len() {
			n += costOf(v.Index(i), depth+1)
		}
		return n
	case reflect.Map:
		n := 8
		it := v.MapRange()
		for it.Next() {
			n += costOf(it.Key(), depth+1) + costOf(it.Value(), depth+1)
		}
		return n
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return 8
		}
		return costOf(v.Elem(), depth+1)
	}
	return 8
}

// scrub removes the pulled values (3 bytes or more: shorter ones cannot be told from
// the text around them) from a function's error message.
func (b *budget) scrub(msg string) string {
	for _, v := range b.values {
		if len(v) >= 3 {
			msg = strings.ReplaceAll(msg, v, "[value]")
		}
	}
	return msg
}

// checkFuncs refuses, before a template runs, the functions keyferry leaves out, naming
// the function and why.
func checkFuncs(n parse.Node) error {
	var err error
	walk(n, func(n parse.Node) {
		if id, ok := n.(*parse.IdentifierNode); ok && err == nil {
			if reason, refused := refusedFuncs[id.Ident]; refused {
				err = fmt.Errorf("function %q is not available in keyferry templates: %s", id.Ident, reason)
			}
		}
	})
	return err
}

// walk calls fn on every node under n.
func walk(n parse.Node, fn func(parse.Node)) {
	if n == nil || reflect.ValueOf(n).IsNil() {
		return
	}
	fn(n)
	switch x := n.(type) {
	case *parse.ListNode:
		for _, c := range x.Nodes {
			walk(c, fn)
		}
	case *parse.ActionNode:
		walk(x.Pipe, fn)
	case *parse.PipeNode:
		for _, c := range x.Cmds {
			walk(c, fn)
		}
	case *parse.CommandNode:
		for _, a := range x.Args {
			walk(a, fn)
		}
	case *parse.ChainNode:
		walk(x.Node, fn)
	case *parse.IfNode:
		walk(x.Pipe, fn)
		walk(x.List, fn)
		walk(x.ElseList, fn)
	case *parse.RangeNode:
		walk(x.Pipe, fn)
		walk(x.List, fn)
		walk(x.ElseList, fn)
	case *parse.WithNode:
		walk(x.Pipe, fn)
		walk(x.List, fn)
		walk(x.ElseList, fn)
	}
}

// toYaml is ESO's and Helm's: v as YAML ("" when it cannot be encoded, as Helm does).
func toYaml(v any) string {
	out, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

// fromYaml reads a YAML document into a map (an error names the position, never a value).
func fromYaml(s string) (map[string]any, error) {
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		return nil, errors.New("not a YAML mapping")
	}
	return m, nil
}

// required is Helm's: fail with msg when v is empty.
func required(msg string, v any) (any, error) {
	if v == nil {
		return nil, errors.New(msg)
	}
	if s, ok := v.(string); ok && s == "" {
		return nil, errors.New(msg)
	}
	return v, nil
}

// filterPEM is ESO's: the PEM blocks of data whose type is pemType (CERTIFICATE, PRIVATE
// KEY, ...), in their order, re-encoded.
func filterPEM(pemType, data string) (string, error) {
	var out bytes.Buffer
	rest := []byte(data)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == pemType {
			if err := pem.Encode(&out, block); err != nil {
				return "", err
			}
		}
	}
	if out.Len() == 0 {
		return "", fmt.Errorf("no PEM block of type %s", pemType)
	}
	return out.String(), nil
}

// sortedMapKeys is sprig's keys, sorted (sprig returns them in map order, which would
// change the Secret from one render to the next).
func sortedMapKeys(dicts ...map[string]any) []string {
	var ks []string
	for _, d := range dicts {
		ks = append(ks, slices.Collect(maps.Keys(d))...)
	}
	sort.Strings(ks)
	return ks
}

// valuesByKey is sprig's values, in the order of their sorted keys.
func valuesByKey(d map[string]any) []any {
	out := make([]any, 0, len(d))
	for _, k := range slices.Sorted(maps.Keys(d)) {
		out = append(out, d[k])
	}
	return out
}
