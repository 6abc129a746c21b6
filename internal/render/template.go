package render

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"sync"
	"text/template"
	"text/template/parse"
)

// Templates are tenant input run inside the shared operator, so their cost is bounded
// before and while they run:
//   - at most one level of range, and only over the pulled values ($), so the work of a
//     range is (keys × the nodes of its body), checked before execution;
//   - no define, block or template (no recursion);
//   - every function that touches data is charged for the bytes it reads and returns;
//   - printf widths and precisions are capped (fmt allocates them before we could count);
//   - all output goes to one writer that stops at the Secret size limit.
const (
	// maxRangeWork bounds keys × body nodes of a range.
	maxRangeWork = 1_000_000
	// maxFuncBytes bounds the bytes functions read and produce in one render.
	maxFuncBytes = 16 << 20
	// maxFormatWidth bounds printf widths and precisions.
	maxFormatWidth = 4096
)

// errOutputLimit stops a template whose output passes the Secret size limit.
var errOutputLimit = errors.New("output over the Secret size limit")

// budget is one render's allowance, shared by every template key.
type budget struct {
	output    int // bytes still allowed out
	funcBytes int // bytes functions may still touch
	// values are the pulled values, scrubbed from function errors.
	values []string
}

// Write implements io.Writer, refusing output past the limit.
func (b *budget) Write(p []byte) (int, error) {
	if len(p) > b.output {
		b.output = -1
		return 0, errOutputLimit
	}
	b.output -= len(p)
	return len(p), nil
}

func (b *budget) charge(n int) error {
	b.funcBytes -= n
	if b.funcBytes < 0 {
		return fmt.Errorf("template functions used more than %d bytes", maxFuncBytes)
	}
	return nil
}

// sizeOf is what a value costs a function to read.
func sizeOf(v any) int {
	switch x := v.(type) {
	case string:
		return len(x)
	case []byte:
		return len(x)
	case map[string]string:
		n := 0
		for k, s := range x {
			n += len(k) + len(s)
		}
		return n
	}
	return 8
}

func sizes(vs []any) int {
	n := 0
	for _, v := range vs {
		n += sizeOf(v)
	}
	return n
}

var formatWidth = regexp.MustCompile(`%[-+# 0]*(\*|[0-9]+)?(\.(\*|[0-9]+))?`)

// checkFormat refuses printf verbs whose width or precision would allocate more than
// maxFormatWidth.
func checkFormat(format string) error {
	for _, m := range formatWidth.FindAllStringSubmatch(format, -1) {
		for _, n := range []string{m[1], m[3]} {
			if n == "*" {
				return errors.New("printf: * widths are not allowed")
			}
			if w, err := strconv.Atoi(n); n != "" && (err != nil || w > maxFormatWidth) {
				return fmt.Errorf("printf: widths and precisions are limited to %d", maxFormatWidth)
			}
		}
	}
	return nil
}

// funcs replaces text/template's builtins that read or make data with charged ones.
func (b *budget) funcs() template.FuncMap {
	charged := func(name string, f func(args ...any) string) func(args ...any) (string, error) {
		return func(args ...any) (string, error) {
			if err := b.charge(sizes(args)); err != nil {
				return "", err
			}
			out := f(args...)
			if err := b.charge(len(out)); err != nil {
				return "", fmt.Errorf("%s: %w", name, err)
			}
			return out, nil
		}
	}
	printf := func(format string, args ...any) (string, error) {
		if err := checkFormat(format); err != nil {
			return "", err
		}
		return charged("printf", func(a ...any) string { return fmt.Sprintf(format, a...) })(args...)
	}
	compare := func(name string, ok func(c int) bool) func(a, b any) (bool, error) {
		return func(x, y any) (bool, error) {
			if err := b.charge(sizeOf(x) + sizeOf(y)); err != nil {
				return false, err
			}
			c, err := compareValues(x, y)
			if err != nil {
				return false, fmt.Errorf("%s: %w", name, err)
			}
			return ok(c), nil
		}
	}
	return template.FuncMap{
		"printf":   printf,
		"print":    charged("print", fmt.Sprint),
		"println":  charged("println", fmt.Sprintln),
		"html":     charged("html", template.HTMLEscaper),
		"js":       charged("js", template.JSEscaper),
		"urlquery": charged("urlquery", template.URLQueryEscaper),
		"eq": func(x any, ys ...any) (bool, error) {
			if err := b.charge(sizeOf(x) + sizes(ys)); err != nil {
				return false, err
			}
			for _, y := range ys {
				if c, err := compareValues(x, y); err == nil && c == 0 {
					return true, nil
				}
			}
			return false, nil
		},
		"ne": compare("ne", func(c int) bool { return c != 0 }),
		"lt": compare("lt", func(c int) bool { return c < 0 }),
		"le": compare("le", func(c int) bool { return c <= 0 }),
		"gt": compare("gt", func(c int) bool { return c > 0 }),
		"ge": compare("ge", func(c int) bool { return c >= 0 }),
	}
}

// compareValues orders two strings or two integers.
func compareValues(x, y any) (int, error) {
	xv, yv := reflect.ValueOf(x), reflect.ValueOf(y)
	switch {
	case xv.Kind() == reflect.String && yv.Kind() == reflect.String:
		return cmp.Compare(xv.String(), yv.String()), nil
	case xv.CanInt() && yv.CanInt():
		return cmp.Compare(xv.Int(), yv.Int()), nil
	}
	return 0, fmt.Errorf("cannot compare %s with %s", xv.Kind(), yv.Kind())
}

// parseTemplate returns one template key, checked, with the functions it calls bound to
// the render's budget: a clone of the parsed template (cached by name and text), so a
// refresh that renders the same templates again parses nothing.
func (b *budget) parseTemplate(key, text string) (*template.Template, error) {
	p, err := parsed(key, text)
	if err != nil {
		return nil, err
	}
	t, err := p.tmpl.Clone()
	if err != nil {
		return nil, err
	}
	// The builtins keyferry replaces (b.funcs) stay on top of the library's.
	return t.Funcs(b.libraryFuncs(p.used)).Funcs(b.funcs()), nil
}

// prototype is a parsed, checked template and the functions it calls.
type prototype struct {
	tmpl *template.Template
	used map[string]bool
}

// maxParsed bounds the parsed templates kept (tenant input: any number of texts).
const maxParsed = 4096

var parsedCache = struct {
	sync.Mutex
	m map[string]*prototype
}{m: map[string]*prototype{}}

// parsed parses and checks a template once per (name, text); errors are not kept.
func parsed(key, text string) (*prototype, error) {
	ck := key + "\x00" + text
	parsedCache.Lock()
	p := parsedCache.m[ck]
	parsedCache.Unlock()
	if p != nil {
		return p, nil
	}
	t, err := template.New(key).Option("missingkey=error").Funcs(parseFuncsFor(text)).Funcs((&budget{}).funcs()).Parse(text)
	if err != nil {
		return nil, err
	}
	if len(t.Templates()) > 1 {
		return nil, errors.New("define and block are not available in keyferry templates")
	}
	p = &prototype{tmpl: t, used: map[string]bool{}}
	if t.Tree != nil && t.Root != nil {
		if err := checkFuncs(t.Root); err != nil {
			return nil, err
		}
		if err := checkNodes(t.Root, true, false); err != nil {
			return nil, err
		}
		p.used = usedFuncs(t.Root)
	}
	parsedCache.Lock()
	if len(parsedCache.m) >= maxParsed {
		clear(parsedCache.m) // simplest bound: start afresh; hot templates come back at once
	}
	parsedCache.m[ck] = p
	parsedCache.Unlock()
	return p, nil
}

// checkNodes walks a template: range only over the pulled values and never nested, no
// template calls. dotIsRoot says "." is still the pulled values.
func checkNodes(n parse.Node, dotIsRoot, inRange bool) error {
	switch x := n.(type) {
	case *parse.ListNode:
		if x == nil {
			return nil
		}
		for _, c := range x.Nodes {
			if err := checkNodes(c, dotIsRoot, inRange); err != nil {
				return err
			}
		}
	case *parse.TemplateNode:
		return errors.New("template calls are not available in keyferry templates")
	case *parse.IfNode:
		return checkBranches(x.List, x.ElseList, dotIsRoot, inRange)
	case *parse.WithNode:
		return checkBranches(x.List, x.ElseList, false, inRange)
	case *parse.RangeNode:
		if inRange {
			return errors.New("range cannot be nested")
		}
		if !overPulledValues(x.Pipe, dotIsRoot) {
			return errors.New("range may only iterate over the pulled values ($)")
		}
		return checkBranches(x.List, x.ElseList, false, true)
	}
	return nil
}

func checkBranches(list, elseList *parse.ListNode, dotIsRoot, inRange bool) error {
	if err := checkNodes(list, dotIsRoot, inRange); err != nil {
		return err
	}
	return checkNodes(elseList, dotIsRoot, inRange)
}

// overPulledValues says a range pipeline is exactly $ (or . where dot is the root).
func overPulledValues(p *parse.PipeNode, dotIsRoot bool) bool {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return false
	}
	switch a := p.Cmds[0].Args[0].(type) {
	case *parse.VariableNode:
		return len(a.Ident) == 1 && a.Ident[0] == "$"
	case *parse.DotNode:
		return dotIsRoot
	}
	return false
}

// rangeWork is the largest number of body nodes of a range in t.
func rangeWork(n parse.Node) int {
	switch x := n.(type) {
	case *parse.ListNode:
		if x == nil {
			return 0
		}
		w := 0
		for _, c := range x.Nodes {
			w = max(w, rangeWork(c))
		}
		return w
	case *parse.IfNode:
		return max(rangeWork(x.List), rangeWork(x.ElseList))
	case *parse.WithNode:
		return max(rangeWork(x.List), rangeWork(x.ElseList))
	case *parse.RangeNode:
		return countNodes(x.List) + countNodes(x.ElseList) + 1
	}
	return 0
}

func countNodes(n parse.Node) int {
	switch x := n.(type) {
	case *parse.ListNode:
		if x == nil {
			return 0
		}
		c := 1
		for _, m := range x.Nodes {
			c += countNodes(m)
		}
		return c
	case *parse.IfNode:
		return 1 + countNodes(x.List) + countNodes(x.ElseList)
	case *parse.WithNode:
		return 1 + countNodes(x.List) + countNodes(x.ElseList)
	case *parse.ActionNode:
		return 1 + len(x.Pipe.Cmds)
	}
	return 1
}

// execute runs t over pulled into the shared budget, returning what it wrote.
func (b *budget) execute(t *template.Template, pulled map[string]string, out io.Writer) error {
	if t.Root != nil {
		if w := rangeWork(t.Root) * max(len(pulled), 1); w > maxRangeWork {
			return fmt.Errorf("range over %d keys would evaluate %d template nodes, over the limit of %d", len(pulled), w, maxRangeWork)
		}
	}
	return t.Execute(out, pulled)
}
