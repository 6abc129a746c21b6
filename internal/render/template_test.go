package render

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestHostileTemplatesAreRefusedOrBounded(t *testing.T) {
	big := strings.Repeat("x", 512<<10)
	pulled := map[string]string{"KEY": "v", "BIG": big, "A": "x"}
	wide := map[string]string{"BIG": big}
	for i := 0; i < 20; i++ {
		wide["W"+itoa(i)] = "v"
	}
	many := map[string]string{}
	for i := 0; i < 5000; i++ {
		many["K"+strings.Repeat("0", 4-len(itoa(i)))+itoa(i)] = "v"
	}
	for _, tc := range []struct {
		name     string
		template map[string]string
		pulled   map[string]string
		tooLarge bool
		msg      string
	}{
		{"range over a huge integer", map[string]string{"X": "{{range 9223372036854775807}}{{end}}"}, pulled, false, "range may only iterate over the pulled values"},
		{"range over an integer writing values", map[string]string{"X": "{{range 30000000}}{{$.KEY}}{{end}}"}, pulled, false, "range may only iterate over the pulled values"},
		{"range over len", map[string]string{"X": "{{range len .BIG}}{{end}}"}, pulled, false, "range may only iterate over the pulled values"},
		{"range over a variable", map[string]string{"X": "{{$n := 100000000}}{{range $n}}{{end}}"}, pulled, false, "range may only iterate over the pulled values"},
		{"nested range", map[string]string{"X": "{{range $}}{{range $}}{{end}}{{end}}"}, pulled, false, "range cannot be nested"},
		{"range over dot inside with", map[string]string{"X": "{{with .BIG}}{{range .}}{{end}}{{end}}"}, pulled, false, "range may only iterate over the pulled values"},
		{"recursion", map[string]string{"X": `{{define "r"}}{{template "r"}}{{end}}{{template "r"}}`}, pulled, false, "not available"},
		{"block", map[string]string{"X": `{{block "b" .}}{{.A}}{{end}}`}, pulled, false, "not available"},
		{"huge printf width", map[string]string{"X": `{{printf "%0999999999d" 1}}`}, pulled, false, "limited to 4096"},
		{"printf star width", map[string]string{"X": `{{printf "%*d" 999999999 1}}`}, pulled, false, "not allowed"},
		{"call", map[string]string{"X": `{{call .A}}`}, pulled, false, "call"},
		{"output past the limit in one key", map[string]string{"X": "{{.BIG}}{{.BIG}}{{.BIG}}"}, pulled, true, "over the 1048576 byte limit"},
		{"output past the limit across keys", map[string]string{"X": "{{.BIG}}", "Y": "{{.BIG}}", "Z": "{{.BIG}}"}, pulled, true, "over the 1048576 byte limit"},
		{"range work over the limit", map[string]string{"X": "{{range $}}" + strings.Repeat("{{if .}}{{end}}", 300) + "{{end}}"}, many, false, "over the limit"},
		{"functions churning memory without output", map[string]string{"X": "{{range $}}{{if printf \"%s%s\" $.BIG $.BIG}}{{end}}{{end}}"}, wide, false, "more than"},
		{"comparisons of big values", map[string]string{"X": "{{range $}}" + strings.Repeat("{{if eq $.BIG $.BIG}}{{end}}", 20) + "{{end}}"}, pulled, false, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Data(tc.pulled, Spec{Template: tc.template})
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("accepted")
			}
			var re *Error
			ok := errors.As(err, &re)
			if !ok || re.TooLarge != tc.tooLarge || !strings.Contains(re.Message, tc.msg) {
				t.Fatalf("got %v (tooLarge %v), want tooLarge=%v with %q", err, ok && re.TooLarge, tc.tooLarge, tc.msg)
			}
			if strings.Contains(re.Message, "xxxx") {
				t.Fatalf("the message quotes a value: %.100s", re.Message)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Fatalf("rendering allocated %d MiB", alloc>>20)
			}
		})
	}
}

func TestUsefulTemplatesStillWork(t *testing.T) {
	pulled := map[string]string{"DB_USER": "app", "DB_PASS": "pw", "MODE": "prod"}
	got, err := Data(pulled, Spec{Template: map[string]string{
		"DSN":    "postgres://{{ .DB_USER }}:{{ .DB_PASS }}@db/app",
		"ENV":    "{{range $k, $v := $}}{{$k}}={{$v}}\n{{end}}",
		"KEYS":   "{{range $k, $_ := .}}{{$k}} {{end}}",
		"FLAG":   `{{if eq .MODE "prod" "production"}}on{{else}}off{{end}}`,
		"PORT":   `{{printf "%05d" 42}}`,
		"QUOTED": `{{.DB_PASS | printf "%q"}}`,
		"LEN":    `{{len .DB_USER}}`,
		"CMP":    `{{if lt .DB_PASS .DB_USER}}lt{{end}}`,
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"DSN": "postgres://app:pw@db/app", "ENV": "DB_PASS=pw\nDB_USER=app\nMODE=prod\n",
		"KEYS": "DB_PASS DB_USER MODE ", "FLAG": "on", "PORT": "00042", "QUOTED": `"pw"`, "LEN": "3", "CMP": "",
	}
	for k, v := range want {
		if string(got[k]) != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}
