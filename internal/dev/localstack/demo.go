package localstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
)

// DemoNamespace holds the demo's connections and bindings.
const DemoNamespace = "demo"

// DemoCredentials are the dev vault's sample credentials (hack/devvault-data.json): not
// secrets, development values.
var DemoCredentials = map[string]string{
	"keyway":   "kw_live_demo0000000000000000000000000000000000",
	"keymint":  "at_demo_keymint_token",
	"stash":    "stash-demo-key",
	"user":     "ops@example.com",
	"password": "demo-password",
}

// DemoManifests returns connections for every provider of the dev vault and bindings that
// use them.
func (s *Stack) DemoManifests() string {
	url := func(p string) string { return s.VaultURL + "/" + p }
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: Secret
metadata: {name: keyway-token, namespace: %[1]s, labels: {keyferry.dev/credentials: "true"}}
stringData: {token: %[2]s}
---
apiVersion: v1
kind: Secret
metadata: {name: keymint-token, namespace: %[1]s, labels: {keyferry.dev/credentials: "true"}}
stringData: {token: %[3]s}
---
apiVersion: v1
kind: Secret
metadata: {name: stash-api-key, namespace: %[1]s, labels: {keyferry.dev/credentials: "true"}}
stringData: {apiKey: %[4]s}
---
apiVersion: v1
kind: Secret
metadata: {name: login, namespace: %[1]s, labels: {keyferry.dev/credentials: "true"}}
stringData: {username: %[5]s, password: %[6]s}
---
apiVersion: keyferry.dev/v1alpha1
kind: VaultConnection
metadata: {name: keyway, namespace: %[1]s}
spec:
  provider: keyway
  url: %[7]s
  allowInsecureHTTP: true
  auth: {bearer: {secretRef: {name: keyway-token, key: token}}}
---
apiVersion: keyferry.dev/v1alpha1
kind: VaultConnection
metadata: {name: keystash, namespace: %[1]s}
spec:
  provider: keystash
  url: %[8]s
  allowInsecureHTTP: true
  auth: {login: {secretRef: {name: login}}}
---
apiVersion: keyferry.dev/v1alpha1
kind: VaultConnection
metadata: {name: stash, namespace: %[1]s}
spec:
  provider: stash
  url: %[9]s
  allowInsecureHTTP: true
  auth: {apiKey: {secretRef: {name: stash-api-key, key: apiKey}}}
---
apiVersion: keyferry.dev/v1alpha1
kind: VaultConnection
metadata: {name: knowledgestack, namespace: %[1]s}
spec:
  provider: knowledgestack
  url: %[10]s
  allowInsecureHTTP: true
  auth: {login: {secretRef: {name: login}}}
---
apiVersion: keyferry.dev/v1alpha1
kind: VaultConnection
metadata: {name: keymint, namespace: %[1]s}
spec:
  provider: keymint
  url: %[11]s
  allowInsecureHTTP: true
  auth: {bearer: {secretRef: {name: keymint-token, key: token}}}
---
apiVersion: keyferry.dev/v1alpha1
kind: SecretBinding
metadata: {name: payments, namespace: %[1]s}
spec:
  connectionRef: {name: keyway}
  vault: acme/payments
  environment: production
  rename: {DB_PASS: password}
  target: {name: payments-env}
---
apiVersion: keyferry.dev/v1alpha1
kind: SecretBinding
metadata: {name: payments-dsn, namespace: %[1]s}
spec:
  connectionRef: {name: keyway}
  vault: acme/payments
  environment: production
  target:
    creationPolicy: Orphan
    template:
      data: {DSN: "postgres://{{ .DB_USER }}:{{ .DB_PASS }}@db/payments"}
---
apiVersion: keyferry.dev/v1alpha1
kind: SecretBinding
metadata: {name: staging, namespace: %[1]s}
spec:
  connectionRef: {name: keystash}
  vault: acme/payments
  environment: staging
  request: {path: "/api/v1/secrets/view?vault={vault}&environment={environment}"}
---
apiVersion: keyferry.dev/v1alpha1
kind: SecretBinding
metadata: {name: checkout, namespace: %[1]s}
spec:
  connectionRef: {name: stash}
  vault: acme/checkout
  environment: production
  request: {method: POST, path: /api/v1/sdk/config, body: '{"shop_handle":"{vault}","environment":"{environment}"}', dataPath: data}
---
apiVersion: keyferry.dev/v1alpha1
kind: SecretBinding
metadata: {name: knowledge, namespace: %[1]s}
spec:
  connectionRef: {name: knowledgestack}
  vault: acme/checkout
  environment: production
  request: {path: "/v1/secrets?tenant={vault}&env={environment}", format: dotenv, dataPath: content}
---
apiVersion: keyferry.dev/v1alpha1
kind: SecretBinding
metadata: {name: license, namespace: %[1]s}
spec:
  connectionRef: {name: keymint}
  vault: acme/payments
  environment: staging
  request: {path: "/key?productId={vault}&licenseKey={environment}", dataPath: data.license}
---
# A platform team's shared connection, lent to the namespaces labelled as teams, and one
# ClusterSecretBinding that gives each of them the same Secret.
apiVersion: keyferry.dev/v1alpha1
kind: ClusterVaultConnection
metadata: {name: platform}
spec:
  provider: keyway
  url: %[7]s
  allowInsecureHTTP: true
  auth: {bearer: {secretRef: {name: keyway-token, namespace: %[1]s, key: token}}}
  namespaceSelector: {matchLabels: {%[12]s: "true"}}
  allowedVaults: [acme/payments]
---
apiVersion: keyferry.dev/v1alpha1
kind: ClusterSecretBinding
metadata: {name: %[13]s}
spec:
  namespaceSelector: {matchLabels: {%[12]s: "true"}}
  template:
    spec:
      connectionRef: {kind: ClusterVaultConnection, name: platform}
      vault: acme/payments
      environment: production
      keys: {include: ["^DB_USER$"]}
      target: {name: shared-db-user}
`, DemoNamespace, DemoCredentials["keyway"], DemoCredentials["keymint"], DemoCredentials["stash"],
		DemoCredentials["user"], DemoCredentials["password"],
		url("keyway"), url("keystash"), url("stash"), url("knowledgestack"), url("keymint"),
		DemoTeamLabel, DemoClusterBinding) + demoTeams()
}

// DemoTeamLabel marks the demo's team namespaces; DemoClusterBinding fills each of them.
const (
	DemoTeamLabel      = "demo.keyferry.dev/team"
	DemoClusterBinding = "shared-db-user"
)

// DemoTeams are the namespaces the demo's ClusterSecretBinding fills.
var DemoTeams = []string{"team-a", "team-b", "team-c"}

func demoTeams() string {
	var b strings.Builder
	for _, ns := range DemoTeams {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {%s: \"true\"}}\n", ns, DemoTeamLabel)
	}
	return b.String()
}

// ApplyDemo applies the demo's objects and waits until every binding is Ready.
func (s *Stack) ApplyDemo(ctx context.Context) error {
	if _, err := s.KubectlIn(ctx, s.DemoManifests(), "apply", "-f", "-"); err != nil {
		return err
	}
	if _, err := s.Kubectl(ctx, "wait", "--for=condition=Ready", "--timeout=90s", "-n", DemoNamespace, "secretbindings", "--all"); err != nil {
		return err
	}
	_, err := s.Kubectl(ctx, "wait", "--for=condition=Ready", "--timeout=60s", "clustersecretbinding/"+DemoClusterBinding)
	return err
}

// SecretKeys lists each synced Secret of the demo namespace with its keys (never values).
func (s *Stack) SecretKeys(ctx context.Context) (string, error) {
	out, err := s.Kubectl(ctx, "get", "secrets", "-n", DemoNamespace, "-l", "keyferry.dev/binding",
		"-o", `go-template={{range .items}}{{.metadata.name}}:{{range $k, $v := .data}} {{$k}}{{end}}{{"\n"}}{{end}}`)
	return strings.TrimSpace(out), err
}

// demoWorkload opted in to restarts: it reads DB_USER of payments-env.
const demoWorkload = `apiVersion: apps/v1
kind: Deployment
metadata: {name: shop, namespace: demo, labels: {keyferry.dev/restart-on-change: "true"}}
spec:
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers:
        - name: shop
          image: example.com/shop:1
          env:
            - name: DB_USER
              valueFrom: {secretKeyRef: {name: payments-env, key: DB_USER}}
`

// DemoRollout shows a restart: an opted-in Deployment, a change of the key it reads in the
// dev vault, a refresh, and the rollout history that follows (kube-controller-manager
// makes the new ReplicaSet).
func (s *Stack) DemoRollout(ctx context.Context) (string, error) {
	if _, err := s.KubectlIn(ctx, demoWorkload, "apply", "-f", "-"); err != nil {
		return "", err
	}
	if err := s.waitKubectl(ctx, 60*time.Second, func(out string) bool { return strings.Contains(out, kf.LabelPrefixConsumed) },
		"get", "deployment", "shop", "-n", DemoNamespace, "-o", `jsonpath={.metadata.labels}`); err != nil {
		return "", fmt.Errorf("the Deployment was not seen by keyferry: %w", err)
	}
	body, _ := json.Marshal(map[string]string{"environment": "production", "key": "DB_USER", "value": "payments-rotated"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.VaultURL+"/debug/secrets/acme/payments", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	_ = resp.Body.Close()
	if _, err := s.Kubectl(ctx, "annotate", "sb", "payments", "-n", DemoNamespace, "--overwrite",
		fmt.Sprintf("keyferry.dev/refresh=demo-%d", time.Now().Unix())); err != nil {
		return "", err
	}
	if err := s.waitKubectl(ctx, 60*time.Second, func(out string) bool { return len(strings.Fields(out)) >= 2 },
		"get", "rs", "-n", DemoNamespace, "-l", "app=shop", "-o", "name"); err != nil {
		return "", fmt.Errorf("no rollout followed the change: %w", err)
	}
	return s.Kubectl(ctx, "rollout", "history", "deployment/shop", "-n", DemoNamespace)
}

// waitKubectl runs kubectl until ok accepts its output.
func (s *Stack) waitKubectl(ctx context.Context, timeout time.Duration, ok func(string) bool, args ...string) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := s.Kubectl(ctx, args...)
		if err == nil && ok(strings.TrimSpace(out)) {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("timed out waiting for kubectl %s: %w", strings.Join(args, " "), err)
			}
			return fmt.Errorf("timed out waiting for kubectl %s (last: %q)", strings.Join(args, " "), out)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
