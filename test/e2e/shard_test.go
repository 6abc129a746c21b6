//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyferry/keyferry/internal/shard"
)

// namespaceIn returns the first name prefix-<k> that the hash puts in shard idx of count.
func namespaceIn(prefix string, idx, count int) string {
	for k := 0; ; k++ {
		if ns := fmt.Sprintf("%s-%d", prefix, k); shard.Of(ns, count) == idx {
			return ns
		}
	}
}

// shardTenant is one namespace with a token, a VaultConnection and two bindings: one on
// its own connection, one on the shared ClusterVaultConnection.
func shardTenant(ns, token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s, labels: {keyferry-e2e/shard: "true"}}
---
apiVersion: v1
kind: Secret
metadata: {name: keyway-token, namespace: %[1]s, labels: {keyferry.dev/credentials: "true"}}
stringData: {token: %[2]s}
---
apiVersion: keyferry.dev/v1beta1
kind: VaultConnection
metadata: {name: keyway, namespace: %[1]s}
spec:
  provider: keyway
  url: %[3]s/keyway
  allowInsecureHTTP: true
  auth: {bearer: {secretRef: {name: keyway-token, key: token}}}
---
apiVersion: keyferry.dev/v1beta1
kind: SecretBinding
metadata: {name: own, namespace: %[1]s}
spec: {connectionRef: {name: keyway}, vault: acme/payments, environment: production}
---
apiVersion: keyferry.dev/v1beta1
kind: SecretBinding
metadata: {name: shared, namespace: %[1]s}
spec: {connectionRef: {kind: ClusterVaultConnection, name: shard-e2e}, vault: acme/payments, environment: production}
`, ns, token, stack.VaultURL)
}

// statusManagers lists the field managers of an object's status.
func statusManagers(t *testing.T, args ...string) string {
	return kubectl(t, append(args, "-o", `jsonpath={range .metadata.managedFields[?(@.subresource=="status")]}{.manager} {end}`)...)
}

// providerPulls sums a manager's pull requests for one connection.
func providerPulls(t *testing.T, url, connection string) float64 {
	sum := 0.0
	for _, line := range strings.Split(metricsText(t, url), "\n") {
		if strings.HasPrefix(line, "keyferry_provider_requests_total{") && strings.Contains(line, `connection="`+connection+`"`) && strings.Contains(line, `op="pull"`) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}

// Two shards side by side: each namespace is reconciled by exactly the shard its hash
// names (its status field manager and its connection's requests show it), a
// ClusterVaultConnection serves both (its status written by shard 0 alone), each shard
// holds its own lease, and a namespace added later lands in one shard.
func TestTwoShards(t *testing.T) {
	stack.StopManager()
	defer func() {
		if err := stack.StartManager(); err != nil {
			t.Fatal(err)
		}
	}()
	var shards [2]string // metrics URLs
	for i := range shards {
		r, err := stack.StartReplica("--leader-elect", "--shard-count", "2", "--shard-index", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Stop()
		shards[i] = r.MetricsURL
	}
	token := secretValue(t, "keyway-token", "token")
	nss := []string{namespaceIn("shard-e2e", 0, 2), namespaceIn("shard-e2e", 1, 2)}
	defer func() {
		// While both shards run, so the connections' finalizers are handled.
		kubectl(t, append([]string{"delete", "namespace", "--wait=true", "--timeout=60s"}, nss...)...)
		kubectl(t, "delete", "clustervaultconnection", "shard-e2e", "--wait=true", "--timeout=30s")
	}()
	cvc := fmt.Sprintf(`apiVersion: keyferry.dev/v1beta1
kind: ClusterVaultConnection
metadata: {name: shard-e2e}
spec:
  provider: keyway
  url: %s/keyway
  allowInsecureHTTP: true
  auth: {bearer: {secretRef: {name: keyway-token, namespace: %s, key: token}}}
  namespaceSelector: {matchLabels: {keyferry-e2e/shard: "true"}}
`, stack.VaultURL, nss[0])
	manifests := cvc
	for _, ns := range nss {
		manifests += "---\n" + shardTenant(ns, token)
	}
	if _, err := stack.KubectlIn(t.Context(), manifests, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	check := func(ns string, want int) {
		t.Helper()
		for _, b := range []string{"own", "shared"} {
			waitFor(t, 60*time.Second, ns+"/"+b+" Ready", func() (bool, string) {
				out := kubectl(t, "get", "sb", b, "-n", ns, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].reason}`)
				return out == "Synced", out
			})
			managers := statusManagers(t, "get", "sb", b, "-n", ns)
			if mine, other := fmt.Sprintf("keyferry-shard-%d-of-2", want), fmt.Sprintf("keyferry-shard-%d-of-2", 1-want); !strings.Contains(managers, mine) || strings.Contains(managers, other) {
				t.Errorf("%s/%s: status written by %q, want only %s", ns, b, managers, mine)
			}
		}
		conn := "VaultConnection/" + ns + "/keyway"
		if mine, other := providerPulls(t, shards[want], conn), providerPulls(t, shards[1-want], conn); mine == 0 || other != 0 {
			t.Errorf("%s: pulls by its shard %v, by the other %v", conn, mine, other)
		}
	}
	for i, ns := range nss {
		check(ns, i)
	}
	if m := statusManagers(t, "get", "clustervaultconnection", "shard-e2e"); strings.TrimSpace(m) != "keyferry-shard-0-of-2" {
		t.Errorf("ClusterVaultConnection status written by %q, want shard 0 alone", m)
	}
	for i := range shards {
		kubectl(t, "get", "lease", "-n", "keyferry-system", fmt.Sprintf("keyferry-shard-%d-of-2.keyferry.dev", i))
	}

	// A namespace created now lands in the shard its hash names, and only there.
	late := namespaceIn("shard-e2e-late", 1, 2)
	nss = append(nss, late)
	if _, err := stack.KubectlIn(t.Context(), shardTenant(late, token), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	check(late, 1)

	// A ClusterSecretBinding is provisioned by shard 0 alone, in every namespace whatever
	// its shard (each binding then synced by its own shard).
	csb := `apiVersion: keyferry.dev/v1beta1
kind: ClusterSecretBinding
metadata: {name: shard-e2e}
spec:
  namespaceSelector: {matchLabels: {keyferry-e2e/shard: "true"}}
  bindingName: fanned
  template:
    spec: {connectionRef: {kind: ClusterVaultConnection, name: shard-e2e}, vault: acme/payments, environment: production}
`
	if _, err := stack.KubectlIn(t.Context(), csb, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	defer kubectl(t, "delete", "clustersecretbinding", "shard-e2e", "--wait=true", "--timeout=30s")
	for i, ns := range nss {
		waitFor(t, 60*time.Second, ns+"/fanned Ready", func() (bool, string) {
			out := kubectl(t, "get", "sb", "fanned", "-n", ns, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].reason}`)
			return out == "Synced", out
		})
		want := shard.Of(ns, 2)
		if m := statusManagers(t, "get", "sb", "fanned", "-n", ns); !strings.Contains(m, fmt.Sprintf("keyferry-shard-%d-of-2", want)) {
			t.Errorf("%s/fanned (namespace %d of shard %d): status written by %q", ns, i, want, m)
		}
	}
	waitFor(t, 30*time.Second, "ClusterSecretBinding Ready", func() (bool, string) {
		out := kubectl(t, "get", "csb", "shard-e2e", "-o", `jsonpath={.status.readyBindings}/{.status.provisionedNamespaces}`)
		return out == fmt.Sprintf("%d/%d", len(nss), len(nss)), out
	})
	if m := statusManagers(t, "get", "csb", "shard-e2e"); strings.TrimSpace(m) != "keyferry-shard-0-of-2" {
		t.Errorf("ClusterSecretBinding status written by %q, want shard 0 alone", m)
	}
	for i, url := range shards {
		ran := strings.Contains(metricsText(t, url), `controller_runtime_reconcile_total{controller="clustersecretbinding",result="success"}`)
		if ran != (i == 0) {
			t.Errorf("shard %d ran the ClusterSecretBinding reconciler: %v", i, ran)
		}
	}
}
