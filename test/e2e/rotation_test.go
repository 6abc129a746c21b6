//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keyferry/keyferry/internal/dev/localstack"
)

type rotationStatus struct {
	Phase                string `json:"phase"`
	CurrentKeyID         string `json:"currentKeyID"`
	LastRotationTime     string `json:"lastRotationTime"`
	LastHandledRotateNow string `json:"lastHandledRotateNow"`
}

func rotationOf(t *testing.T, conn string) rotationStatus {
	t.Helper()
	var r rotationStatus
	out := kubectl(t, "get", "vc", conn, "-n", "demo", "-o", "jsonpath={.status.rotation}")
	if strings.TrimSpace(out) != "" {
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("status.rotation %q: %v", out, err)
		}
	}
	return r
}

// The real manager binary rotates the demo's Keyway key: the hand-made key is eleven
// months old, so it is replaced at once; keyferry.dev/rotate-now replaces the new one
// too. Each rotation costs one create and one revoke, the replaced key answers 401, and
// no key ever shows in the manager's log.
func TestKeyRotationWithTheManagerBinary(t *testing.T) {
	const conn = "keyway-rotating"
	bootstrap := localstack.DemoCredentials["keyway-admin"]
	waitFor(t, 60*time.Second, "the demo key replaced (it is older than 30 days)", func() (bool, string) {
		r := rotationOf(t, conn)
		return r.LastRotationTime != "" && r.Phase == "Idle", fmt.Sprintf("%+v", r)
	})
	first := secretValue(t, "keyway-admin-key", "token")
	if first == bootstrap || !strings.HasPrefix(first, "kw_live_") {
		t.Fatalf("the Secret holds %d characters, want a new kw_live_ key", len(first))
	}
	before := vaultCounts(t)
	kubectl(t, "annotate", "vc", conn, "-n", "demo", "--overwrite", "keyferry.dev/rotate-now=e2e")
	waitFor(t, 60*time.Second, "rotate-now handled", func() (bool, string) {
		r := rotationOf(t, conn)
		return r.LastHandledRotateNow == "e2e" && r.Phase == "Idle", fmt.Sprintf("%+v", r)
	})
	after := vaultCounts(t)
	for _, ep := range []string{"keyway.api-keys.created", "keyway.api-keys.revoked"} {
		if n := after[ep] - before[ep]; n != 1 {
			t.Errorf("%s: %d, want 1", ep, n)
		}
	}
	second := secretValue(t, "keyway-admin-key", "token")
	if second == first {
		t.Fatal("rotate-now left the key as it was")
	}
	for _, tok := range []string{bootstrap, first} {
		if code := keywayPull(t, tok); code != http.StatusUnauthorized {
			t.Errorf("a replaced key answers %d, want 401", code)
		}
	}
	if code := keywayPull(t, second); code != http.StatusOK {
		t.Errorf("the current key answers %d, want 200", code)
	}
	if out := kubectl(t, "get", "vc", conn, "-n", "demo", "-o", `jsonpath={.status.conditions[?(@.type=="CredentialsHealthy")].status}`); out != "True" {
		t.Errorf("CredentialsHealthy %q", out)
	}
	log, err := os.ReadFile(stack.ManagerLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{bootstrap, first, second} {
		if strings.Contains(string(log), tok) {
			t.Error("the manager log holds an API key")
		}
	}
}

// keywayPull says what the dev vault answers to tok on Keyway's pull endpoint.
func keywayPull(t *testing.T, tok string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, stack.VaultURL+"/keyway/v1/secrets/pull?repo=acme/payments&environment=production", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}
