//go:build e2e

// Package e2e drives the shipped binaries the way users run them: the manager binary and
// the real kubectl against a local kube-apiserver, with the development vault as the
// provider. Run with `make test-e2e`.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keyferry/keyferry/internal/dev/localstack"
	"github.com/keyferry/keyferry/internal/dev/testenv"
)

var stack *localstack.Stack

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	root := repoRoot()
	ctx := context.Background()
	var err error
	stack, err = localstack.Start(ctx, localstack.Options{RepoRoot: root,
		ManagerArgs: []string{"--credentials-poll-interval", "1s", "--restart-debounce", "2s"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stack.Stop()
	if err := stack.StartManager(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := stack.ApplyDemo(ctx); err != nil {
		out, _ := stack.Kubectl(ctx, "get", "sb", "-n", "demo")
		fmt.Fprintln(os.Stderr, err, out)
		return 1
	}
	code := m.Run()
	if code != 0 {
		if b, err := os.ReadFile(stack.ManagerLog); err == nil {
			fmt.Fprintf(os.Stderr, "--- manager log (last 4 KiB)\n%s\n", tail(b, 4096))
		}
	}
	return code
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := stack.Kubectl(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func secretValue(t *testing.T, name, key string) string {
	t.Helper()
	out := kubectl(t, "get", "secret", name, "-n", "demo", "-o", "jsonpath={.data."+key+"}")
	v, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testenv.Eventually(t, timeout, 250*time.Millisecond, what, cond)
}

// getSB returns `kubectl get sb NAME` as printed, header included.
func getSB(t *testing.T, name string) string {
	return kubectl(t, "get", "sb", name, "-n", "demo")
}

func waitSB(t *testing.T, name, reason string) {
	t.Helper()
	waitFor(t, 60*time.Second, name+" "+reason, func() (bool, string) {
		out := getSB(t, name)
		return strings.Contains(out, " "+reason+" "), out
	})
}

func annotateRefresh(t *testing.T, name string) {
	kubectl(t, "annotate", "sb", name, "-n", "demo", "--overwrite",
		fmt.Sprintf("keyferry.dev/refresh=%d", time.Now().UnixNano()))
}

func vaultDebug(t *testing.T, method, path string, body any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(method, stack.VaultURL+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: HTTP %d", method, path, resp.StatusCode)
	}
}

func vaultCounts(t *testing.T) map[string]int {
	t.Helper()
	resp, err := http.Get(stack.VaultURL + "/debug/counts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	counts := map[string]int{}
	if err := json.NewDecoder(resp.Body).Decode(&counts); err != nil {
		t.Fatal(err)
	}
	return counts
}

func TestFirstSync(t *testing.T) {
	kubectl(t, "wait", "--for=condition=Ready", "sb", "--all", "-n", "demo", "--timeout=30s")
	out := kubectl(t, "get", "sb", "-n", "demo")
	if strings.Count(out, " Synced ") != 7 {
		t.Fatalf("not every binding is Synced:\n%s", out)
	}
	// The demo's image pull secret: typed, checked, rendered from the vault's values.
	if typ := kubectl(t, "get", "secret", "registry-pull", "-n", "demo", "-o", "jsonpath={.type}"); typ != "kubernetes.io/dockerconfigjson" {
		t.Fatalf("registry-pull is of type %q", typ)
	}
	auth := base64.StdEncoding.EncodeToString([]byte("demo-puller:demo-registry-password-not-a-secret"))
	if v := secretValue(t, "registry-pull", `\.dockerconfigjson`); v != `{"auths":{"registry.demo.local":{"auth":"`+auth+`"}}}` {
		t.Fatalf("registry-pull holds %q", v)
	}
	if v := secretValue(t, "payments-env", "DB_USER"); v != "payments" {
		t.Fatalf("DB_USER = %q", v)
	}
	if v := secretValue(t, "payments-dsn", "DSN"); !strings.HasPrefix(v, "postgres://payments:") {
		t.Fatal("the template was not rendered")
	}
	if v := secretValue(t, "payments-env", "TLS_KEY"); !strings.Contains(v, "\nMIIB") {
		t.Fatal("the multi-line PEM value lost its newlines")
	}
}

func TestVaultChangeReachesSecretAfterRefresh(t *testing.T) {
	vaultDebug(t, http.MethodPut, "/debug/secrets/acme/payments", map[string]string{"environment": "production", "key": "STRIPE_KEY", "value": "sk_test_rotated"})
	annotateRefresh(t, "payments")
	waitFor(t, 30*time.Second, "the new value in the Secret", func() (bool, string) {
		v := secretValue(t, "payments-env", "STRIPE_KEY")
		return v == "sk_test_rotated", ""
	})
}

func TestRevokedTokenThenCredentialRotation(t *testing.T) {
	vaultDebug(t, http.MethodPost, "/debug/revoke", map[string]string{"token": localstack.DemoCredentials["keymint"]})
	annotateRefresh(t, "license")
	waitSB(t, "license", "Unauthorized")
	// What scripts and GitOps tools see: Stalled (only a change helps), and a wait for
	// Synced that fails rather than passes.
	kubectl(t, "wait", "--for=condition=Stalled", "sb/license", "-n", "demo", "--timeout=10s")
	if out, err := stack.Kubectl(context.Background(), "wait", `--for=jsonpath={.status.conditions[?(@.type=="Ready")].reason}=Synced`,
		"sb/license", "-n", "demo", "--timeout=3s"); err == nil {
		t.Fatalf("kubectl wait for Synced passed on an Unauthorized binding: %s", out)
	}
	if out := kubectl(t, "get", "vc", "keymint", "-n", "demo"); !strings.Contains(out, "Unauthorized") {
		waitFor(t, 15*time.Second, "connection Unauthorized", func() (bool, string) {
			out := kubectl(t, "get", "vc", "keymint", "-n", "demo")
			return strings.Contains(out, "Unauthorized"), out
		})
	}
	const rotated = "at_rotated_demo_token"
	vaultDebug(t, http.MethodPost, "/debug/token", map[string]string{"token": rotated})
	// The rotated Secret keeps the label that lets keyferry use it as credentials.
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: keymint-token, namespace: demo, labels: {keyferry.dev/credentials: "true"}}
stringData: {token: %s}
`, rotated)
	if _, err := stack.KubectlIn(context.Background(), manifest, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 30*time.Second, "rotated credentials in effect", func() (bool, string) {
		annotateRefresh(t, "license")
		time.Sleep(500 * time.Millisecond)
		out := getSB(t, "license")
		return strings.Contains(out, " Synced "), out
	})
	t.Logf("rotation took effect within %v", time.Since(start).Round(time.Second))
}

func TestRateLimitedVaultRecoversByItself(t *testing.T) {
	vaultDebug(t, http.MethodPost, "/debug/fault/keyway", map[string]any{
		"status": 429, "times": 1, "header": map[string]string{"Retry-After": "3"},
		"body": `{"title":"Too Many Requests","status":429,"detail":"Rate limit exceeded"}`})
	annotateRefresh(t, "payments")
	waitSB(t, "payments", "RateLimited")
	if out := kubectl(t, "get", "sb", "payments", "-n", "demo", "-o", "jsonpath={.status.retryAfter}"); out == "" {
		t.Fatal("status.retryAfter not set while rate limited")
	}
	waitSB(t, "payments", "Synced") // no further action: the binding comes back on its own
}

func TestDeletingBindingsFollowsCreationPolicy(t *testing.T) {
	// Owner: the Secret carries a controller reference, so the garbage collector deletes it
	// with the binding. (The local control plane runs no garbage collector, so the
	// reference itself is checked.)
	refs := kubectl(t, "get", "secret", "payments-env", "-n", "demo", "-o", "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].controller}")
	if refs != "SecretBinding/payments/true" {
		t.Fatalf("owner reference %q", refs)
	}
	// Orphan: the Secret stays.
	kubectl(t, "delete", "sb", "payments-dsn", "-n", "demo", "--wait=true")
	if out := kubectl(t, "get", "secret", "payments-dsn", "-n", "demo", "-o", "name"); strings.TrimSpace(out) != "secret/payments-dsn" {
		t.Fatal("the Orphan Secret went with its binding")
	}
	// Merge: only the binding's keys go.
	kubectl(t, "create", "secret", "generic", "app-config", "-n", "demo", "--from-literal=OWN=mine")
	kubectl(t, "annotate", "secret", "app-config", "-n", "demo", "keyferry.dev/allow-merge=true")
	merge := `apiVersion: keyferry.dev/v1beta1
kind: SecretBinding
metadata: {name: merged, namespace: demo}
spec:
  connectionRef: {name: keyway}
  vault: acme/payments
  environment: production
  keys: {include: ["^DB_USER$"]}
  target: {name: app-config, creationPolicy: Merge}
`
	if _, err := stack.KubectlIn(context.Background(), merge, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	waitSB(t, "merged", "Synced")
	if secretValue(t, "app-config", "DB_USER") != "payments" || secretValue(t, "app-config", "OWN") != "mine" {
		t.Fatal("merge did not add its key beside the owner's")
	}
	kubectl(t, "delete", "sb", "merged", "-n", "demo", "--wait=true")
	if keys := kubectl(t, "get", "secret", "app-config", "-n", "demo", "-o", "go-template={{range $k, $v := .data}}{{$k}} {{end}}"); strings.TrimSpace(keys) != "OWN" {
		t.Fatalf("after deleting the Merge binding the Secret has keys %q, want only OWN", keys)
	}
}

func TestMetricsAreServed(t *testing.T) {
	text := metricsText(t, stack.MetricsURL)
	for _, want := range []string{
		`keyferry_provider_requests_total{code="2xx",connection="VaultConnection/demo/keyway",op="pull"}`,
		`keyferry_provider_requests_total{code="2xx",connection="VaultConnection/demo/keystash",op="login"}`,
		`keyferry_fetches_total{connection="VaultConnection/demo/keyway",result="sent"}`,
		`keyferry_binding_syncs_total{reason="Synced"}`,
		`keyferry_secret_writes_total{result="applied"}`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// With --metrics-secure (as the cluster manifests run it) the metrics are HTTPS and only
// for a token the API server authenticates and authorizes for GET /metrics.
func TestSecureMetricsNeedAnAuthorizedToken(t *testing.T) {
	stack.StopManager()
	if err := stack.StartManager("--metrics-secure"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stack.StopManager()
		if err := stack.StartManager(); err != nil {
			t.Fatal(err)
		}
	}()
	url := strings.Replace(stack.MetricsURL, "http://", "https://", 1)
	// The manager's certificate is self-signed: the test checks who may read, not the CA.
	insecure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		var resp *http.Response
		var err error
		for i := 0; i < 50; i++ {
			if resp, err = insecure.Do(req); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Fatalf("no token: HTTP %d, want 401", code)
	}
	kubectl(t, "create", "serviceaccount", "nobody", "-n", "demo")
	if code, _ := get(strings.TrimSpace(kubectl(t, "create", "token", "nobody", "-n", "demo"))); code != http.StatusForbidden {
		t.Fatalf("a token without the metrics-reader role: HTTP %d, want 403", code)
	}
	kubectl(t, "create", "serviceaccount", "scraper", "-n", "demo")
	kubectl(t, "apply", "-f", filepath.Join(repoRoot(), "config", "rbac", "metrics_reader_role.yaml"))
	kubectl(t, "create", "clusterrolebinding", "scraper-metrics", "--clusterrole=metrics-reader", "--serviceaccount=demo:scraper")
	token := strings.TrimSpace(kubectl(t, "create", "token", "scraper", "-n", "demo"))
	var code int
	var body string
	for i := 0; i < 20; i++ { // authorization decisions are cached for a moment
		if code, body = get(token); code == http.StatusOK {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code != http.StatusOK || !strings.Contains(body, "controller_runtime_reconcile_total") {
		t.Fatalf("an authorized token: HTTP %d", code)
	}
}

// TestRestartKeepsSecretsAndDoesNotRefetch runs after the others (Go runs tests in file
// order): every binding is fresh, so a restart must cost no pull.
func TestRestartKeepsSecretsAndDoesNotRefetch(t *testing.T) {
	for _, b := range []string{"payments", "staging", "checkout", "knowledge", "license"} {
		waitSB(t, b, "Synced")
	}
	versions := kubectl(t, "get", "secrets", "-n", "demo", "-l", "keyferry.dev/binding", "-o", `go-template={{range .items}}{{.metadata.name}}={{.metadata.resourceVersion}} {{end}}`)
	before := vaultCounts(t)
	stack.StopManager()
	if err := stack.StartManager(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(8 * time.Second)
	after := vaultCounts(t)
	for _, endpoint := range []string{"keyway.pull", "keystash.secrets", "stash.config", "knowledgestack.secrets", "keymint.key"} {
		if after[endpoint] != before[endpoint] {
			t.Errorf("%s: %d requests after the restart, want none (bindings are fresh)", endpoint, after[endpoint]-before[endpoint])
		}
	}
	if now := kubectl(t, "get", "secrets", "-n", "demo", "-l", "keyferry.dev/binding", "-o", `go-template={{range .items}}{{.metadata.name}}={{.metadata.resourceVersion}} {{end}}`); now != versions {
		t.Errorf("Secrets changed across a restart:\nbefore %s\nafter  %s", versions, now)
	}
	if out := kubectl(t, "get", "sb", "-n", "demo"); strings.Contains(out, "False") {
		t.Errorf("bindings not Ready after the restart:\n%s", out)
	}
}

// metricsText reads a plain-HTTP metrics endpoint.
func metricsText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return b.String()
}

// metric reads one sample (the sum of the lines that start with prefix) from a metrics URL.
func metric(t *testing.T, url, prefix string) float64 {
	t.Helper()
	sum := 0.0
	for _, line := range strings.Split(metricsText(t, url), "\n") {
		if strings.HasPrefix(line, prefix) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}

const leaderMetric = `leader_election_master_status{name="keyferry.keyferry.dev"}`

// Two managers with leader election: exactly one reconciles; when it stops, the other
// takes over within the lease and syncs a vault change, writing the Secret once.
func TestLeaderFailover(t *testing.T) {
	stack.StopManager()
	defer func() {
		if err := stack.StartManager(); err != nil {
			t.Fatal(err)
		}
	}()
	a, err := stack.StartReplica("--leader-elect")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	waitFor(t, 30*time.Second, "a leader", func() (bool, string) { return metric(t, a.MetricsURL, leaderMetric) == 1, "" })
	b, err := stack.StartReplica("--leader-elect")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	waitFor(t, 30*time.Second, "the leader through its first passes", func() (bool, string) {
		return metric(t, a.MetricsURL, `controller_runtime_reconcile_total{controller="secretbinding"`) >= 5, ""
	})

	// One reconciles: a forced refresh costs exactly one pull, and the standby runs nothing.
	before := vaultCounts(t)["keyway.pull"]
	annotateRefresh(t, "payments")
	waitFor(t, 15*time.Second, "the refresh handled", func() (bool, string) {
		return vaultCounts(t)["keyway.pull"] > before, ""
	})
	time.Sleep(2 * time.Second)
	if n := vaultCounts(t)["keyway.pull"] - before; n != 1 {
		t.Fatalf("%d pulls for one refresh with two managers, want 1", n)
	}
	if m := metric(t, b.MetricsURL, leaderMetric); m != 0 {
		t.Fatalf("the second manager is leader too (%v)", m)
	}
	if n := metric(t, b.MetricsURL, `controller_runtime_reconcile_total{controller="secretbinding"`); n != 0 {
		t.Fatalf("the standby reconciled %v bindings", n)
	}

	// The leader stops (as in a rolling update); the standby takes over and syncs a change.
	a.Stop()
	start := time.Now()
	waitFor(t, 20*time.Second, "the standby leading", func() (bool, string) { return metric(t, b.MetricsURL, leaderMetric) == 1, "" })
	t.Logf("takeover after %v", time.Since(start).Round(100*time.Millisecond))
	vaultDebug(t, http.MethodPut, "/debug/secrets/acme/payments", map[string]string{"environment": "production", "key": "STRIPE_KEY", "value": "sk_test_failover"})
	// The new leader's first passes wait for its connection clients: the refresh must
	// survive them (it once did not: a pending pass marked it handled).
	annotateRefresh(t, "payments")
	waitFor(t, 15*time.Second, "the change synced by the new leader", func() (bool, string) {
		return secretValue(t, "payments-env", "STRIPE_KEY") == "sk_test_failover",
			kubectl(t, "get", "sb", "payments", "-n", "demo", "-o", "jsonpath={.status}")
	})
	rv := kubectl(t, "get", "secret", "payments-env", "-n", "demo", "-o", "jsonpath={.metadata.resourceVersion}")
	time.Sleep(3 * time.Second)
	if now := kubectl(t, "get", "secret", "payments-env", "-n", "demo", "-o", "jsonpath={.metadata.resourceVersion}"); now != rv {
		t.Fatal("the Secret was written again after the change was synced")
	}
	if n := metric(t, b.MetricsURL, `keyferry_secret_writes_total{result="applied"}`); n != 1 {
		t.Fatalf("the new leader applied %v writes, want exactly 1 (the change)", n)
	}
}

// TestNoSecretInLogsOrEvents runs last: it reads everything the manager logged.
func TestNoSecretInLogsOrEvents(t *testing.T) {
	log, err := os.ReadFile(stack.ManagerLog)
	if err != nil || len(log) == 0 {
		t.Fatalf("no manager log to check (%v)", err)
	}
	events := kubectl(t, "get", "events", "-A", "-o", "json")
	if !strings.Contains(events, "Unauthorized") {
		t.Fatal("no transition events were recorded: the check would prove nothing")
	}
	canaries := []string{"demo-password-not-a-secret", "sk_test_demo", "sk_test_rotated", "staging password with spaces",
		"MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAdemo", "at_rotated_demo_token", "demo-password"}
	for _, v := range localstack.DemoCredentials {
		if v != "ops@example.com" {
			canaries = append(canaries, v)
		}
	}
	for _, c := range canaries {
		if bytes.Contains(log, []byte(c)) {
			t.Errorf("the manager log contains %q", c)
		}
		if strings.Contains(events, c) {
			t.Errorf("an event contains %q", c)
		}
	}
}
