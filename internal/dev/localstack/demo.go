package localstack

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"text/template"
	"time"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// DemoNamespace holds the demo's connections and bindings.
const DemoNamespace = "demo"

// DemoCredentials are the dev vault's sample credentials (hack/devvault-data.json): not
// secrets, development values.
var DemoCredentials = map[string]string{
	"keyway": "kw_live_demo0000000000000000000000000000000000",
	// keyway-admin is a key with admin:api-keys, held by the connection that rotates it.
	"keyway-admin": "kw_live_rotate00000000000000000000000000000000",
	"keymint":      "at_demo_keymint_token",
	"stash":        "stash-demo-key",
	"user":         "ops@example.com",
	"password":     "demo-password",
	// hook signs the demo's RefreshReceiver calls.
	"hook": "demo-hook-secret-0000000000000000",
}

// DemoManifests returns connections for every provider of the dev vault and bindings that
// use them.
func (s *Stack) DemoManifests() string {
	url := func(p string) string { return s.VaultURL + "/" + p }
	var b strings.Builder
	err := demoTemplate.Execute(&b, demoFields{
		Namespace: DemoNamespace, TeamLabel: DemoTeamLabel, ClusterBinding: DemoClusterBinding,
		KeywayToken: DemoCredentials["keyway"], KeywayAdminKey: DemoCredentials["keyway-admin"], KeymintToken: DemoCredentials["keymint"], StashKey: DemoCredentials["stash"],
		User: DemoCredentials["user"], Password: DemoCredentials["password"], HookSecret: DemoCredentials["hook"],
		KeywayURL: url("keyway"), KeystashURL: url("keystash"), StashURL: url("stash"),
		KnowledgeStackURL: url("knowledgestack"), KeymintURL: url("keymint"),
	})
	if err != nil {
		panic(err) // an embedded template over plain strings: cannot fail but for a bug
	}
	return b.String() + demoTeams()
}

//go:embed demo.yaml.tmpl
var demoYAML string

var demoTemplate = template.Must(template.New("demo").Option("missingkey=error").Parse(demoYAML))

// demoFields are what demo.yaml.tmpl names.
type demoFields struct {
	Namespace, TeamLabel, ClusterBinding                                string
	KeywayToken, KeywayAdminKey, KeymintToken, StashKey, User, Password string
	HookSecret                                                          string
	KeywayURL, KeystashURL, StashURL, KnowledgeStackURL, KeymintURL     string
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
