//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // GitHub still sends the legacy SHA-1 header beside SHA-256; the test sends both as GitHub does
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyferry/keyferry/internal/dev/localstack"
)

// The README's "refresh from CI" snippet, run as written (only the host, namespace and
// secret file are this stack's): openssl signs, curl sends, the Secret holds the vault's
// new value within seconds, with no annotation and no wait for the interval.
func TestReadmeCurlRefreshesFromCI(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- refresh-from-ci -->\\s*```sh\n(.*?)```").FindSubmatch(raw)
	if m == nil {
		t.Fatal("README.md has no refresh-from-ci snippet")
	}
	secretFile := filepath.Join(t.TempDir(), "hook-secret")
	if err := os.WriteFile(secretFile, []byte(localstack.DemoCredentials["hook"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := strings.NewReplacer("https://hooks.example.com", stack.HookURL, "-n shop", "-n demo", "./hook-secret", secretFile).Replace(string(m[1]))
	waitFor(t, 30*time.Second, "receiver ci Listening", func() (bool, string) {
		out := kubectl(t, "get", "rr", "ci", "-n", "demo")
		return strings.Contains(out, "Listening"), out
	})
	vaultDebug(t, http.MethodPut, "/debug/secrets/acme/payments", map[string]string{"environment": "production", "key": "STRIPE_KEY", "value": "sk_test_from_ci"})
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+stack.Kubeconfig, "PATH="+filepath.Dir(stack.KubectlBin)+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's snippet failed: %v\n%s", err, out)
	}
	start := time.Now()
	waitFor(t, 15*time.Second, "the new value in the Secret", func() (bool, string) {
		return secretValue(t, "payments-env", "STRIPE_KEY") == "sk_test_from_ci", ""
	})
	t.Logf("the Secret held the new value %v after the hook", time.Since(start).Round(time.Millisecond))
}

// githubPush is a push delivery's body as GitHub sends it (trimmed).
const githubPush = `{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",` +
	`"repository":{"id":186853002,"name":"payments","full_name":"acme/payments","private":true,"owner":{"login":"acme"}},` +
	`"pusher":{"name":"ci-bot","email":"ci@example.com"},"sender":{"login":"ci-bot","type":"Bot"},` +
	`"head_commit":{"id":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","message":"keyway push production","timestamp":"2026-12-04T10:00:00Z"}}`

// A GitHub repository webhook calls a github receiver directly, with GitHub's headers
// (both signatures, a delivery id, its user agent): the bindings refresh, the same
// delivery sent again is refused, and the listener's metric counts both.
func TestGitHubDeliveryAsGitHubSendsIt(t *testing.T) {
	const secret = "gh-webhook-secret-e2e-0123456789"
	if _, err := stack.KubectlIn(context.Background(), `apiVersion: v1
kind: Secret
metadata: {name: github-hook, namespace: demo, labels: {keyferry.dev/credentials: "true"}}
stringData: {token: `+secret+`}
---
apiVersion: keyferry.dev/v1beta1
kind: RefreshReceiver
metadata: {name: github, namespace: demo}
spec:
  type: github
  secretRef: {name: github-hook}
  selector: {matchLabels: {app: payments}}
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = stack.Kubectl(context.Background(), "delete", "rr", "github", "-n", "demo") })
	var path string
	waitFor(t, 30*time.Second, "receiver github Listening", func() (bool, string) {
		path = kubectl(t, "get", "rr", "github", "-n", "demo", "-o", "jsonpath={.status.webhookPath}")
		return strings.HasPrefix(path, "/hook/") && strings.Contains(kubectl(t, "get", "rr", "github", "-n", "demo"), "Listening"), path
	})
	body := []byte(githubPush)
	deliver := func(event, delivery string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, stack.HookURL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		sha256mac := hmac.New(sha256.New, []byte(secret))
		sha256mac.Write(body)
		sha1mac := hmac.New(sha1.New, []byte(secret))
		sha1mac.Write(body)
		for k, v := range map[string]string{
			"User-Agent": "GitHub-Hookshot/044aadd", "Content-Type": "application/json", "Accept": "*/*",
			"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "X-GitHub-Hook-ID": "292430182",
			"X-GitHub-Hook-Installation-Target-ID": "186853002", "X-GitHub-Hook-Installation-Target-Type": "repository",
			"X-Hub-Signature":     "sha1=" + hex.EncodeToString(sha1mac.Sum(nil)),
			"X-Hub-Signature-256": "sha256=" + hex.EncodeToString(sha256mac.Sum(nil)),
		} {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	vaultDebug(t, http.MethodPut, "/debug/secrets/acme/payments", map[string]string{"environment": "production", "key": "STRIPE_KEY", "value": "sk_test_from_github"})
	const delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
	if got := deliver("push", delivery); got != http.StatusAccepted {
		t.Fatalf("GitHub's push delivery: %d", got)
	}
	waitFor(t, 15*time.Second, "the new value in the Secret", func() (bool, string) {
		return secretValue(t, "payments-env", "STRIPE_KEY") == "sk_test_from_github", ""
	})
	if got := deliver("push", delivery); got != http.StatusUnauthorized {
		t.Errorf("the same delivery again (a replay): %d, want 401", got)
	}
	if got := deliver("ping", "0d9f3a2e-cc78-11e3-81ab-4c9367dc0958"); got != http.StatusOK {
		t.Errorf("GitHub's ping: %d, want 200", got)
	}
	waitFor(t, 10*time.Second, "the hook metrics", func() (bool, string) {
		resp, err := http.Get(stack.MetricsURL)
		if err != nil {
			return false, err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		m := string(b)
		ok := strings.Contains(m, `keyferry_webhook_requests_total{receiver="demo/github",result="accepted"} 1`) &&
			strings.Contains(m, `keyferry_webhook_requests_total{receiver="demo/github",result="replay"} 1`) &&
			strings.Contains(m, `keyferry_webhook_rounds_total{receiver="demo/github",result="ok"}`)
		return ok, grepLines(m, "keyferry_webhook_")
	})
	// Every binding the selector picks (other tests delete some of the demo's).
	picked := len(strings.Fields(kubectl(t, "get", "sb", "-n", "demo", "-l", "app=payments", "-o", "name")))
	waitFor(t, 10*time.Second, "status.lastHandled", func() (bool, string) {
		out := kubectl(t, "get", "rr", "github", "-n", "demo", "-o", "jsonpath={.status.lastHandled.refreshed}")
		return out == strconv.Itoa(picked) && picked > 0, out
	})
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
