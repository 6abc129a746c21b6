package soakvalue

import (
	"errors"
	"testing"
)

func TestParseTellsGoodFromBad(t *testing.T) {
	v := Format("K1", 42)
	if seq, err := Parse("K1", v); err != nil || seq != 42 {
		t.Fatalf("Parse(Format) = %d, %v", seq, err)
	}
	for name, bad := range map[string]string{
		"empty":     "",
		"partial":   v[:len(v)-3],
		"other key": Format("K2", 42),
		"edited":    "k=K1;s=00000043" + v[len("k=K1;s=00000042"):],
	} {
		if _, err := Parse("K1", bad); !errors.Is(err, ErrBad) {
			t.Errorf("%s: Parse(%q) = %v, want ErrBad", name, bad, err)
		}
	}
}
