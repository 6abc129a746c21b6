package render

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	sprig "github.com/Masterminds/sprig/v3"
)

func render1(t *testing.T, pulled map[string]string, tmpl string) (string, error) {
	t.Helper()
	out, err := Data(pulled, Spec{Template: map[string]string{"out": tmpl}})
	if err != nil {
		return "", err
	}
	return string(out["out"]), nil
}

// TestFunctionFamilies renders one template per family users ask for, with the bytes it
// must give.
func TestFunctionFamilies(t *testing.T) {
	pulled := map[string]string{
		"USER": "deploy", "PASS": "pa55word", "HOST": "registry.local:5000",
		"CFG": `{"a":{"b":[1,2]},"name":"x"}`, "YML": "a: 1\nb: [x, z]\n", "B64": base64.StdEncoding.EncodeToString([]byte("line1\nline2")),
		"EMPTY": "", "TEXT": "  Hello World  ",
	}
	tests := []struct{ name, tmpl, want string }{
		{"dockerconfigjson", `{{ dict "auths" (dict .HOST (dict "auth" (printf "%s:%s" .USER .PASS | b64enc))) | toJson }}`,
			`{"auths":{"registry.local:5000":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("deploy:pa55word")) + `"}}}`},
		{"b64dec", `{{ .B64 | b64dec }}`, "line1\nline2"},
		{"fromJson", `{{ (fromJson .CFG).name }}-{{ index ((fromJson .CFG).a.b) 1 }}`, "x-2"},
		{"toYaml fromYaml", `{{ (fromYaml .YML).b | toYaml }}`, "- x\n- z"},
		{"sha256sum", `{{ sha256sum "abc" }}`, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"indent nindent", `x:{{ "a\nb" | nindent 2 }}`, "x:\n  a\n  b"},
		{"quote default", `{{ .EMPTY | default "none" | quote }}`, `"none"`},
		{"strings", `{{ .TEXT | trim | upper | replace "WORLD" "there" | lower }}`, "hello there"},
		{"list get", `{{ $l := list "a" "b" }}{{ index $l 1 }}{{ get (dict "k" "v") "k" }}`, "bv"},
		{"keys sorted", `{{ keys (dict "z" 1 "a" 2 "m" 3) | join "," }}`, "a,m,z"},
		{"values by key", `{{ values (dict "z" 1 "a" 2) | toJson }}`, "[2,1]"},
		{"required ok", `{{ required "USER is needed" .USER }}`, "deploy"},
		{"until bounded", `{{ until 3 | toJson }}`, "[0,1,2]"},
		{"repeat", `{{ repeat 3 "ab" }}`, "ababab"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := render1(t, pulled, tc.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			again, _ := render1(t, pulled, tc.tmpl)
			if again != got {
				t.Fatalf("not repeatable: %q then %q", got, again)
			}
		})
	}
}

// TestEverySprigFunctionIsClassified: a sprig upgrade that adds a function fails here
// until someone decides whether it may run in the shared operator.
func TestEverySprigFunctionIsClassified(t *testing.T) {
	known := map[string]bool{}
	for _, n := range strings.Fields(`ago date date_in_zone date_modify dateInZone dateModify duration durationRound htmlDate htmlDateInZone must_date_modify mustDateModify mustToDate now toDate unixEpoch abbrev abbrevboth trunc trim upper lower title untitle substr repeat trimall trimAll trimSuffix trimPrefix nospace initials randAlphaNum randAlpha randAscii randNumeric swapcase shuffle snakecase camelcase kebabcase wrap wrapWith contains hasPrefix hasSuffix quote squote cat indent nindent replace plural sha1sum sha256sum sha512sum adler32sum toString atoi int64 int float64 seq toDecimal split splitList splitn toStrings until untilStep add1 add sub div mod mul randInt add1f addf subf divf mulf biggest max min maxf minf ceil floor round join sortAlpha default empty coalesce all any compact mustCompact fromJson toJson toPrettyJson toRawJson mustFromJson mustToJson mustToPrettyJson mustToRawJson ternary deepCopy mustDeepCopy typeOf typeIs typeIsLike kindOf kindIs deepEqual env expandenv getHostByName base dir clean ext isAbs osBase osClean osDir osExt osIsAbs b64enc b64dec b32enc b32dec tuple list dict get set unset hasKey pluck keys pick omit merge mergeOverwrite mustMerge mustMergeOverwrite values append mustAppend prepend mustPrepend first mustFirst rest mustRest last mustLast initial mustInitial reverse mustReverse uniq mustUniq without mustWithout has mustHas slice mustSlice concat dig chunk mustChunk bcrypt htpasswd genPrivateKey derivePassword buildCustomCert genCA genCAWithKey genSelfSignedCert genSelfSignedCertWithKey genSignedCert genSignedCertWithKey encryptAES decryptAES randBytes uuidv4 semver semverCompare fail regexMatch mustRegexMatch regexFindAll mustRegexFindAll regexFind mustRegexFind regexReplaceAll mustRegexReplaceAll regexReplaceAllLiteral mustRegexReplaceAllLiteral regexSplit mustRegexSplit regexQuoteMeta urlParse urlJoin hello push mustPush`) {
		known[n] = true
	}
	for name := range sprig.GenericFuncMap() {
		if !known[name] {
			t.Errorf("sprig has a new function %q: review it (refusedFuncs, or bounded like repeat) and add it here", name)
		}
	}
}

// TestRefusedFunctionsAreNamed: each refused function is an InvalidSpec-worthy error at the
// first render (before anything runs), naming it and why.
func TestRefusedFunctionsAreNamed(t *testing.T) {
	for name := range refusedFuncs {
		_, err := render1(t, map[string]string{"X": "1"}, `{{ `+name+` }}`)
		if err == nil || !strings.Contains(err.Error(), `function "`+name+`" is not available`) {
			t.Errorf("%s: err = %v", name, err)
		}
		if _, err := render1(t, map[string]string{"X": "1"}, `{{ if false }}{{ `+name+` "x" }}{{ end }}`); err == nil {
			t.Errorf("%s in a branch never taken still renders", name)
		}
		if _, err := render1(t, map[string]string{"X": "1"}, `{{ with true }}{{ (`+name+` "x").y }}{{ end }}`); err == nil {
			t.Errorf("%s in a chained pipeline still renders", name)
		}
	}
}

// TestRenderErrorsNeverEchoValues: functions whose own errors quote their input (atoi,
// fail, required with a value) are scrubbed.
func TestRenderErrorsNeverEchoValues(t *testing.T) {
	const canary = "canary-s3cr3t-VALUE"
	pulled := map[string]string{"X": canary, "J": `{"k": "` + canary + `"`}
	for _, tmpl := range []string{
		`{{ atoi .X }}`, `{{ fail .X }}`, `{{ required .X "" }}`, `{{ mustFromJson .J }}`,
		`{{ mustRegexMatch .X "a" }}`, `{{ semver .X }}`, `{{ filterPEM "CERTIFICATE" .X }}`, `{{ .X | b64dec | fromYaml }}`,
		`{{ int .X | div 1 }}`,
	} {
		_, err := render1(t, pulled, tmpl)
		if err == nil {
			continue
		}
		if strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: the error quotes the value: %v", tmpl, err)
		}
	}
}

// TestHostileTemplatesStayWithinBounds: generators and nesting meet the budget before
// they allocate.
func TestHostileTemplatesStayWithinBounds(t *testing.T) {
	big := strings.Repeat("x", 1<<16)
	for _, tmpl := range []string{
		`{{ repeat 1000000000 "abcdef" }}`,
		`{{ until 100000000 | len }}`,
		`{{ untilStep 0 1000000000 1 | len }}`,
		`{{ seq 1 1000000000 }}`,
		`{{ .LINES | indent 4096 }}`,
		`{{ $a := repeat 60000 .BIG }}`,
		`{{ $x := list .BIG .BIG .BIG .BIG }}{{ $y := list $x $x $x $x $x $x $x $x }}{{ $z := list $y $y $y $y $y $y $y $y }}{{ toJson (list $z $z $z $z $z $z $z $z) }}`,
		`{{ mustFromJson (repeat 200000 "[") }}`,
	} {
		out, err := render1(t, map[string]string{"BIG": big, "LINES": strings.Repeat("\n", 60000)}, tmpl)
		if err == nil && len(out) > MaxSecretSize {
			t.Errorf("%s: %d bytes out", tmpl, len(out))
		}
		if err == nil {
			t.Errorf("%s rendered (%d bytes): want a bound", tmpl, len(out))
		}
	}
}

func FuzzHostileTemplates(f *testing.F) {
	for _, s := range []string{`{{ repeat 9 "x" }}`, `{{ fromJson "[[[[1]]]]" | toJson }}`, `{{ until 10 | toJson }}`,
		`{{ range $k, $v := $ }}{{ $k }}={{ $v | b64enc }}{{ end }}`, `{{ dict "a" (list 1 2) | toYaml | nindent 8 }}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tmpl string) {
		out, err := Data(map[string]string{"A": "1", "B": strings.Repeat("y", 4096)}, Spec{Template: map[string]string{"k": tmpl}})
		if err == nil && len(out["k"]) > MaxSecretSize {
			t.Fatalf("%d bytes out", len(out["k"]))
		}
	})
}

// TestFilterPEM picks the certificate out of a bundle with its key.
func TestFilterPEM(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	bundle := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})) + certPEM
	got, err := render1(t, map[string]string{"PAIR": bundle}, `{{ filterPEM "CERTIFICATE" .PAIR }}`)
	if err != nil || got != certPEM {
		t.Fatalf("got %q, %v", got, err)
	}
}

// BenchmarkRenderTemplates is one binding's render of the two shapes users ask for most:
// an image pull config and a JSON file.
func BenchmarkRenderTemplates(b *testing.B) {
	pulled := map[string]string{}
	for i := range 20 {
		pulled[fmt.Sprintf("KEY_%02d", i)] = strings.Repeat("v", 40)
	}
	spec := Spec{Template: map[string]string{
		".dockerconfigjson": `{{ dict "auths" (dict "registry.bench.local" (dict "auth" (printf "%s:%s" .KEY_00 .KEY_01 | b64enc))) | toJson }}`,
		"config.json":       `{{ dict "db" (dict "user" .KEY_02 "password" .KEY_03) "keys" (list .KEY_04 .KEY_05 .KEY_06) | toPrettyJson }}`,
	}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Data(pulled, spec); err != nil {
			b.Fatal(err)
		}
	}
}

// TestParsedTemplatesAreSharedSafely: renders of the same template text at once (bindings
// of one ClusterSecretBinding) share its parse, each with its own budget and values.
func TestParsedTemplatesAreSharedSafely(t *testing.T) {
	spec := Spec{Template: map[string]string{"k": `{{ .V | upper | b64enc }}`}}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			v := fmt.Sprintf("value-%d", i)
			for range 50 {
				out, err := Data(map[string]string{"V": v}, spec)
				if err != nil {
					errs <- err
					return
				}
				if want := base64.StdEncoding.EncodeToString([]byte(strings.ToUpper(v))); string(out["k"]) != want {
					errs <- fmt.Errorf("got %q, want %q", out["k"], want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
