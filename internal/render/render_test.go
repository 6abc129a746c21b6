package render

import (
	"errors"
	"strings"
	"testing"
)

func TestData(t *testing.T) {
	pulled := map[string]string{"DB_USER": "app", "DB_PASS": "CANARY-pw", "DB_TEST": "x", "API": "k"}
	cases := []struct {
		name string
		spec Spec
		want map[string]string
	}{
		{"all", Spec{}, pulled},
		{"include exclude rename", Spec{Include: []string{"^DB_"}, Exclude: []string{"_TEST$"}, Rename: map[string]string{"DB_PASS": "password"}},
			map[string]string{"DB_USER": "app", "password": "CANARY-pw"}},
		{"template", Spec{Template: map[string]string{"DSN": "postgres://{{ .DB_USER }}:{{ .DB_PASS }}@db/app"}},
			map[string]string{"DSN": "postgres://app:CANARY-pw@db/app"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Data(pulled, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d keys, want %d", len(got), len(tc.want))
			}
			for k, v := range tc.want {
				if string(got[k]) != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestDataErrorsNameTheProblemNotTheValue(t *testing.T) {
	pulled := map[string]string{"A": "CANARY-1", "B": "CANARY-2", "bad key": "CANARY-3"}
	cases := []struct {
		spec     Spec
		want     string
		tooLarge bool
	}{
		{Spec{Include: []string{"("}}, "keys.include[0] is not a valid regular expression", false},
		{Spec{Template: map[string]string{"X": "{{ .MISSING }}"}}, `template for key "X" failed`, false},
		{Spec{Template: map[string]string{"X": "{{ .A "}}, `template for key "X" does not parse`, false},
		{Spec{Include: []string{"^[AB]$"}, Rename: map[string]string{"A": "C", "B": "C"}}, `two keys would be written as "C"`, false},
		{Spec{}, `key "bad key" is not a valid Secret key`, false},
	}
	for _, tc := range cases {
		_, err := Data(pulled, tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "CANARY") {
			t.Errorf("error quotes a value: %v", err)
		}
	}
	_, err := Data(map[string]string{"BIG": strings.Repeat("x", MaxSecretSize)}, Spec{})
	var re *Error
	if !errors.As(err, &re) || !re.TooLarge {
		t.Fatalf("oversized data: %v", err)
	}
}

func TestDigestIsKeyedAndStable(t *testing.T) {
	d := map[string][]byte{"A": []byte("1"), "B": []byte("2")}
	a := Digest([]byte("k1"), "Opaque", d)
	if a != Digest([]byte("k1"), "Opaque", map[string][]byte{"B": []byte("2"), "A": []byte("1")}) {
		t.Fatal("digest depends on map order")
	}
	if a == Digest([]byte("k2"), "Opaque", d) {
		t.Fatal("digest ignores the key")
	}
	if a == Digest([]byte("k1"), "Opaque", map[string][]byte{"A": []byte("12")}) {
		t.Fatal("digest ignores key/value boundaries")
	}
}
