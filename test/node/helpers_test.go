//go:build node || upgrade || soak

package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyferry/keyferry/internal/dev/devcert"
	"github.com/keyferry/keyferry/internal/dev/localnode"
	"github.com/keyferry/keyferry/internal/dev/localstack"
)

var node *localnode.Node

// release is the keyferry release the node installed from its registry.
var release *published

// vaultCA is the dev vault pod's CA (set by the first test).
var vaultCA string

// vaultStateDir, when set, is a host directory the dev vault pod keeps its changes in
// (the soak kills the pod and expects the vault's data to survive, as a real vault's does).
var vaultStateDir string

// vaultIP is the dev vault Service's fixed ClusterIP (no DNS on the node: the connection
// and the certificate name the address).
const vaultIP = "10.0.0.100"

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}

// startNode starts the local node with the dev vault's and the test app's images imported
// (keyferry itself comes from a registry) and removes the CRDs the local stack applied: the
// chart brings its own.
func startNode(root string) error {
	var err error
	node, err = localnode.Start(context.Background(), localnode.Options{RepoRoot: root,
		Images: []string{filepath.Join(root, "bin", "keyferry-testapp.tar"), filepath.Join(root, "bin", "keyferry-devvault.tar")},
		Stack:  localstack.Options{}})
	if err != nil {
		return fmt.Errorf("starting the local node: %w", err)
	}
	if _, err := node.Kubectl(context.Background(), "delete", "-f", filepath.Join(root, "config", "crd", "bases"), "--wait"); err != nil {
		return err
	}
	return nil
}

// helm runs the pinned helm (HELM, or bin/helm) against the node's control plane.
func helm(root string, args ...string) error {
	bin := os.Getenv("HELM")
	if bin == "" {
		bin = filepath.Join(root, "bin", "helm")
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+node.Kubeconfig)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("helm %s: %w\n%s", args[0], err, out)
	}
	return nil
}

func managerLogs() {
	out, _ := node.Kubectl(context.Background(), "logs", "-n", "keyferry-system", "-l", "app.kubernetes.io/name=keyferry", "--tail", "40", "--prefix")
	fmt.Fprintf(os.Stderr, "--- manager pods' log\n%s\n", out)
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := node.Kubectl(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func apply(t *testing.T, manifest string) {
	t.Helper()
	if _, err := node.KubectlIn(context.Background(), manifest, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last: %s", what, last)
}

// get fetches url (a pod address on the node) and returns the body.
func get(url string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// devVault runs the dev vault as a pod behind a Service at vaultIP, serving HTTPS with a
// certificate of a CA made here; it returns the CA's PEM.
func devVault(t *testing.T) string {
	t.Helper()
	ca, err := devcert.NewCA("dev-vault-ca")
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Serving("dev-vault", nil, []net.IP{net.ParseIP(vaultIP)})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(repoRoot(), "hack", "devvault-data.json"))
	if err != nil {
		t.Fatal(err)
	}
	q := func(b []byte) string { j, _ := json.Marshal(string(b)); return string(j) }
	args, mounts, volumes := "", "", ""
	if vaultStateDir != "" {
		// The dev vault runs as 65532 (hack/internal/ociimage).
		if err := os.MkdirAll(vaultStateDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(vaultStateDir, 65532, 65532); err != nil {
			t.Fatal(err)
		}
		args = `, "--state", "/var/lib/devvault/state.json"`
		mounts = `, {name: state, mountPath: /var/lib/devvault}`
		volumes = fmt.Sprintf(`, {name: state, hostPath: {path: %q, type: Directory}}`, vaultStateDir)
	}
	apply(t, fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: vault}
---
apiVersion: v1
kind: Secret
metadata: {name: tls, namespace: vault}
stringData: {tls.crt: %s, tls.key: %s, data.json: %s}
---
apiVersion: v1
kind: Service
metadata: {name: devvault, namespace: vault}
spec:
  clusterIP: %s
  selector: {app: devvault}
  ports: [{port: 8443, targetPort: 8443}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: devvault, namespace: vault}
spec:
  selector: {matchLabels: {app: devvault}}
  template:
    metadata: {labels: {app: devvault}}
    spec:
      containers:
      - name: devvault
        image: docker.io/library/keyferry-devvault:dev
        imagePullPolicy: Never
        args: ["--listen", ":8443", "--data", "/etc/devvault/data.json", "--tls-cert", "/etc/devvault/tls.crt", "--tls-key", "/etc/devvault/tls.key", "--keyway-limit", "0"%[5]s]
        readinessProbe: {tcpSocket: {port: 8443}, periodSeconds: 1}
        volumeMounts: [{name: tls, mountPath: /etc/devvault}%[6]s]
      volumes: [{name: tls, secret: {secretName: tls}}%[7]s]
`, q(serving.CertPEM), q(serving.KeyPEM), q(data), vaultIP, args, mounts, volumes))
	kubectl(t, "rollout", "status", "deployment/devvault", "-n", "vault", "--timeout=90s")
	return string(ca.CertPEM)
}

// manifestVersion is the apiVersion the suites' manifests use: the upgrade proof writes
// them as the previous release's users did (v1alpha1).
var manifestVersion = "keyferry.dev/v1beta1"

// keywayConnection is a namespace with a Keyway connection to the dev vault pod over
// HTTPS (its CA in the credentials Secret).
func keywayConnection(ns, caPEM string) string {
	caJSON, _ := json.Marshal(caPEM)
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: Secret
metadata: {name: keyway, namespace: %[1]s, labels: {keyferry.dev/credentials: "true"}}
stringData: {token: %[2]s, ca.crt: %[3]s}
---
apiVersion: %[5]s
kind: VaultConnection
metadata: {name: keyway, namespace: %[1]s}
spec:
  provider: keyway
  url: https://%[4]s:8443/keyway
  caBundleSecretRef: {name: keyway, key: ca.crt}
  auth: {bearer: {secretRef: {name: keyway, key: token}}}
`, ns, localstack.DemoCredentials["keyway"], caJSON, vaultIP, manifestVersion)
}

// setVault changes a value in the dev vault pod (its debug endpoint, through its Service),
// trusting the dev vault's CA.
func setVault(t *testing.T, caPEM, vaultName, env, key, value string) {
	t.Helper()
	if err := trySetVault(caPEM, vaultName, env, key, value); err != nil {
		t.Fatal(err)
	}
}

func trySetVault(caPEM, vaultName, env, key, value string) error {
	body, _ := json.Marshal(map[string]string{"environment": env, "key": key, "value": value})
	return vaultDebug(caPEM, http.MethodPut, "/debug/secrets/"+vaultName, string(body))
}

// vaultDebug calls a debug endpoint of the dev vault pod (204 expected).
func vaultDebug(caPEM, method, path, body string) error {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(caPEM))
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	req, err := http.NewRequest(method, fmt.Sprintf("https://%s:8443%s", vaultIP, path), strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("dev vault %s: %w", path, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("dev vault %s: HTTP %d", path, resp.StatusCode)
	}
	return nil
}
