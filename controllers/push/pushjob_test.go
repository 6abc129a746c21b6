package push

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/vault"
)

var digest = newDigester([]byte("test-key"))

func TestDecide(t *testing.T) {
	replace := policies{update: kf.UpdatePolicyReplace}
	for _, tc := range []struct {
		name            string
		current, pushed string
		exists          bool
		p               policies
		want            action
	}{
		{"missing: write", "", "", false, replace, actWrite},
		{"same value: nothing", "v", "", true, replace, actInSync},
		{"other value, never pushed: Replace writes", "x", "", true, replace, actWrite},
		{"other value, still what keyferry pushed: write", "old", digest("K", "old"), true, replace, actWrite},
		{"other value, changed since keyferry pushed: conflict", "theirs", digest("K", "old"), true, replace, actConflict},
		{"changed since, Overwrite: write", "theirs", digest("K", "old"), true, policies{update: kf.UpdatePolicyReplace, conflict: kf.ConflictPolicyOverwrite}, actWrite},
		{"exists, IfNotExists: left", "x", "", true, policies{update: kf.UpdatePolicyIfNotExists}, actExists},
		{"missing, IfNotExists: write", "", "", false, policies{update: kf.UpdatePolicyIfNotExists}, actWrite},
	} {
		if got := decide("K", "v", tc.current, tc.exists, tc.pushed, tc.p, digest); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

type fakeVault struct {
	env    map[string]string
	writes []string
	fail   map[string]error
}

func (f *fakeVault) ReadEnvironment(context.Context, vault.Target) (map[string]string, error) {
	return f.env, nil
}

func (f *fakeVault) PushKey(_ context.Context, _ vault.PushTarget, key, value string) error {
	if err := f.fail[key]; err != nil {
		return err
	}
	f.writes = append(f.writes, key)
	f.env[key] = value
	return nil
}

func TestRunWritesOnlyWhatDiffers(t *testing.T) {
	f := &fakeVault{env: map[string]string{"SAME": "1", "OLD": "a", "OTHER": "x"}}
	j := pushJob{want: map[string]string{"SAME": "1", "OLD": "b", "NEW": "n"}, pushed: map[string]string{}, digest: digest,
		p: policies{update: kf.UpdatePolicyReplace}}
	res := j.run(context.Background(), f)
	if !slices.Equal(f.writes, []string{"NEW", "OLD"}) || res.wrote != 2 || len(res.pushed) != 3 || res.err != nil {
		t.Fatalf("writes %v, result %+v", f.writes, res)
	}
	if f.env["OTHER"] != "x" {
		t.Fatal("a key not in the Secret was touched")
	}
	// Again, nothing changed: zero writes.
	f.writes = nil
	j.pushed = res.pushed
	if res := j.run(context.Background(), f); len(f.writes) != 0 || res.wrote != 0 {
		t.Fatalf("nothing changed, writes %v", f.writes)
	}
}

func TestRunStopsAtAFailureAndKeepsWhatItKnew(t *testing.T) {
	denied := &vault.Error{Reason: vault.ReasonForbidden, Op: "push", StatusCode: 403, Message: "API key missing required scope(s): write:secrets"}
	f := &fakeVault{env: map[string]string{"B": "old"}, fail: map[string]error{"B": denied}}
	j := pushJob{want: map[string]string{"A": "1", "B": "2", "C": "3"}, pushed: map[string]string{"B": digest("B", "old")}, digest: digest,
		p: policies{update: kf.UpdatePolicyReplace}}
	res := j.run(context.Background(), f)
	if !errors.Is(res.err, denied) || res.wrote != 1 || res.pushed["A"] == "" || res.pushed["B"] != digest("B", "old") || res.pushed["C"] != "" {
		t.Fatalf("result %+v", res)
	}
	st := computeStatus(kf.SecretPushStatus{}, outcome{generation: 1, result: &res}, time.Unix(0, 0))
	ready := meta.FindStatusCondition(st.Conditions, kf.ConditionReady)
	if ready.Reason != kf.ReasonForbidden || !strings.Contains(ready.Message, "write:secrets") || !meta.IsStatusConditionTrue(st.Conditions, kf.ConditionStalled) {
		t.Fatalf("conditions %+v", st.Conditions)
	}
	if st.LastPushTime == nil || st.PushedKeys != 2 {
		t.Fatalf("status %+v", st)
	}
}

func TestConflictStatusNamesTheKeys(t *testing.T) {
	res := pushResult{pushed: map[string]string{"A": "d"}, conflicts: []string{"B", "C"}}
	st := computeStatus(kf.SecretPushStatus{}, outcome{generation: 3, result: &res}, time.Unix(0, 0))
	ready := meta.FindStatusCondition(st.Conditions, kf.ConditionReady)
	if ready.Reason != kf.ReasonConflict || !strings.Contains(ready.Message, "keys B, C") || st.ObservedGeneration != 3 {
		t.Fatalf("Ready %+v", ready)
	}
	if d := requeueAfter(outcome{result: &res}, 0, time.Hour, 0.5, time.Unix(0, 0)); d != time.Hour {
		t.Fatalf("a conflict is checked again after %v, want the interval", d)
	}
}
