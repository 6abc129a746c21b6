package devvault

import (
	"path/filepath"
	"testing"
)

// A dev vault restarted from its state file answers the values changed before the restart.
func TestStateFileKeepsChangesAcrossARestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	s := New(&Data{Tokens: []string{"t"}}, Options{StateFile: state})
	s.SetSecret("acme/soak", "env-01", "K0", "v1")
	s.SetSecret("acme/soak", "env-01", "K0", "v2")
	d, err := LoadData(state)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Vaults["acme/soak"]["env-01"]["K0"]; got != "v2" || len(d.Tokens) != 1 {
		t.Fatalf("state after a restart: K0=%q tokens=%v, want v2 and the token", got, d.Tokens)
	}
}
