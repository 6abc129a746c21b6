package vault_test

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/keyferry/keyferry/internal/dev/devvault"
	"github.com/keyferry/keyferry/internal/vault"
)

func TestParseDotenv(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want map[string]string
	}{
		{"plain", "A=1\nB=two\n", map[string]string{"A": "1", "B": "two"}},
		{"quoted with spaces", `A="a value with spaces"`, map[string]string{"A": "a value with spaces"}},
		{"escaped quotes", `A="say \"hi\""`, map[string]string{"A": `say "hi"`}},
		{"other backslashes stay", `A="C:\path\n"`, map[string]string{"A": `C:\path\n`}},
		{"backslash before escaped quote", `A="a\\"b"`, map[string]string{"A": `a\"b`}},
		{"newline inside quotes", "KEY=\"-----BEGIN-----\nabc\n-----END-----\"\nNEXT=1\n",
			map[string]string{"KEY": "-----BEGIN-----\nabc\n-----END-----", "NEXT": "1"}},
		{"empty values", "A=\nB=\"\"\nC=''\n", map[string]string{"A": "", "B": "", "C": ""}},
		{"comments and blank lines", "# header\n\nA=1 # trailing\n  # indented\nB=\"x\" # after quote\n",
			map[string]string{"A": "1", "B": "x"}},
		{"hash inside unquoted value", "PASS=abc#def\n", map[string]string{"PASS": "abc#def"}},
		{"export prefix", "export A=1\nexport B=\"two words\"\n", map[string]string{"A": "1", "B": "two words"}},
		{"crlf", "A=1\r\nB=\"x\r\ny\"\r\n", map[string]string{"A": "1", "B": "x\ny"}},
		{"equals in value", "URL=postgres://u:p@h/db?a=b\n", map[string]string{"URL": "postgres://u:p@h/db?a=b"}},
		{"single quotes literal", `A='no \"escape\" here'`, map[string]string{"A": `no \"escape\" here`}},
		{"no trailing newline", "A=1", map[string]string{"A": "1"}},
		{"round trip of the dev vault's writer", devvault.Dotenv(map[string]string{"P": pemKey, "Q": `"q"`, "S": "a b"}),
			map[string]string{"P": pemKey, "Q": `"q"`, "S": "a b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := vault.ParseDotenv(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseDotenvRejectsGarbage(t *testing.T) {
	for _, in := range []string{
		"<html><body>oops</body></html>",
		"A=\"unterminated\nB=1\n",
		"=value",
		"A=\"x\" trailing",
		"just words",
	} {
		if got, err := vault.ParseDotenv(in); err == nil {
			t.Errorf("%q parsed as %q, want an error", in, got)
		} else if strings.Contains(err.Error(), "unterminated\nB") {
			t.Errorf("error quotes the payload: %v", err)
		}
	}
}

func TestDecodePayload(t *testing.T) {
	cases := []struct {
		name, body, path string
		format           vault.Format
		want             map[string]string
	}{
		{"object of strings", `{"A":"1","B":"x"}`, "", vault.FormatJSON, map[string]string{"A": "1", "B": "x"}},
		{"scalars as text", `{"N":12.50,"I":7,"T":true,"F":false,"Z":null}`, "", vault.FormatJSON,
			map[string]string{"N": "12.50", "I": "7", "T": "true", "F": "false", "Z": ""}},
		{"nested as json", `{"data":{"O":{"a":[1,"b"]},"L":[1,2]}}`, "data", vault.FormatJSON,
			map[string]string{"O": `{"a":[1,"b"]}`, "L": "[1,2]"}},
		{"keyway content", `{"data":{"content":"A=1\nB=\"two words\"\n"},"meta":{}}`, "data.content", vault.FormatDotenv,
			map[string]string{"A": "1", "B": "two words"}},
		{"raw dotenv body", "A=1\n", "", vault.FormatDotenv, map[string]string{"A": "1"}},
		{"json object in a string", `{"payload":"{\"A\":\"1\"}"}`, "payload", vault.FormatJSON, map[string]string{"A": "1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := vault.DecodePayload([]byte(tc.body), tc.format, tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, bad := range []struct{ body, path string }{
		{`{"data":{}}`, "data.content"}, {`[1,2]`, ""}, {`{"a":`, ""}, {`"str"`, ""},
	} {
		if _, err := vault.DecodePayload([]byte(bad.body), vault.FormatJSON, bad.path); err == nil {
			t.Errorf("%s at %q decoded without error", bad.body, bad.path)
		}
	}
}

func TestErrorDialects(t *testing.T) {
	cases := []struct {
		d    vault.Dialect
		body string
		want string
	}{
		{vault.DialectRFC7807, `{"type":"https://api.keyway.sh/errors/unauthorized","title":"Unauthorized","status":401,"detail":"Invalid or expired token","traceId":"x"}`, "Invalid or expired token"},
		{vault.DialectRFC7807, `{"title":"Forbidden","status":403}`, "Forbidden"},
		{vault.DialectKeystash, `{"error":"The authentication credentials were not valid."}`, "The authentication credentials were not valid."},
		{vault.DialectKeystash, `{"error":{"code":"Forbidden","message":"No permission.","details":[{"path":"/x"}]}}`, "Forbidden: No permission."},
		{vault.DialectKeymint, `{"message":"Invalid access token","code":1}`, "Invalid access token"},
		{vault.DialectFastAPI, `{"detail":"Not authenticated"}`, "Not authenticated"},
		{vault.DialectFastAPI, `{"detail":[{"loc":["body","email"],"msg":"field required"},{"msg":"bad password"}]}`, "field required; bad password"},
		{vault.DialectGeneric, `{"detail":"generic"}`, "generic"},
		{vault.DialectGeneric, "plain text error", "plain text error"},
		{vault.DialectGeneric, "<html>nope</html>", ""},
	}
	for _, tc := range cases {
		if got := tc.d([]byte(tc.body)); got != tc.want {
			t.Errorf("%s -> %q, want %q", tc.body, got, tc.want)
		}
	}
}

func FuzzParseDotenv(f *testing.F) {
	for _, s := range []string{"A=1\n", `A="x\"y"`, "A=\"multi\nline\"\n", "export A='b'\r\n# c\n", "A=\"", "=", "\"=\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := vault.ParseDotenv(in)
		if err != nil {
			return
		}
		// No decoded value can be longer than the input: no unbounded allocation.
		total := 0
		for k, v := range got {
			total += len(k) + len(v)
		}
		if total > len(in) {
			t.Fatalf("decoded %d bytes from %d", total, len(in))
		}
	})
}

func FuzzErrorDialects(f *testing.F) {
	for _, s := range []string{`{"detail":"x"}`, `{"detail":[{"msg":"a"}]}`, `{"error":"x"}`, `{"error":{"code":"c","message":"m"}}`,
		`{"message":"m","code":1}`, `{"title":"t","detail":"d"}`, "<html>", "plain", `{"detail":[1,{"msg":2}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, d := range []vault.Dialect{vault.DialectRFC7807, vault.DialectKeystash, vault.DialectKeymint, vault.DialectFastAPI, vault.DialectGeneric} {
			if m := d(body); len(m) > len(body)+16 {
				t.Fatalf("message of %d bytes from a body of %d", len(m), len(body))
			}
		}
	})
}

func FuzzDecodePayload(f *testing.F) {
	f.Add([]byte(`{"data":{"content":"A=1"}}`), "data.content", true)
	f.Add([]byte(`{"A":1,"B":{"c":[true]}}`), "", false)
	f.Fuzz(func(t *testing.T, body []byte, path string, dotenv bool) {
		format := vault.FormatJSON
		if dotenv {
			format = vault.FormatDotenv
		}
		_, _ = vault.DecodePayload(body, format, path)
	})
}

// bigDotenv is about 1 MiB of Keyway-style content, PEM keys included.
func bigDotenv() string {
	vals := map[string]string{}
	for i := 0; len(vals) < 2000; i++ {
		k := "KEY_" + strings.Repeat("X", i%7) + "_" + string(rune('A'+i%26)) + strings.Repeat("0", i%3) + itoa(i)
		if i%10 == 0 {
			vals[k] = pemKey + strings.Repeat("\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC", 10)
		} else {
			vals[k] = strings.Repeat("v", 300) + " with spaces"
		}
	}
	return devvault.Dotenv(vals)
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

func BenchmarkParseDotenv1MiB(b *testing.B) {
	in := bigDotenv()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := vault.ParseDotenv(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCachedFetch(b *testing.B) {
	dev := devvault.New(testData(), devvault.Options{})
	hs := httptestServer(b, dev)
	c, err := vault.New(vault.Config{Provider: "keyway", BaseURL: hs + "/keyway", AllowInsecureHTTP: true,
		Auth: vault.AuthBearer, Token: canaryToken}, vault.Hooks{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	tgt := target("keyway", "production")
	if _, err := c.Fetch(ctx, tgt, time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Fetch(ctx, tgt, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
	if n := dev.Count("keyway.pull"); n != 1 {
		b.Fatalf("pulls = %d, want 1", n)
	}
}
