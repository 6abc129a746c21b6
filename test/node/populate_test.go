//go:build upgrade || soak

// Helpers of the suites that fill the node with many objects: the upgrade proof and the soak.

package node

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/keyferry/keyferry/internal/dev/localstack"
)

// vaultCounts reads the dev vault pod's request counters.
func vaultCounts(t *testing.T) map[string]int {
	t.Helper()
	out, err := tryVaultCounts()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tryVaultCounts() (map[string]int, error) {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(vaultCA))
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	resp, err := c.Get("https://" + vaultIP + ":8443/debug/counts")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	out := map[string]int{}
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// platformConnection is a namespace holding Keyway credentials and the ClusterVaultConnection
// "platform" on them, lent to the namespaces labelled selector (key: "true").
func platformConnection(ns, selector, caPEM string) string {
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
apiVersion: %[6]s
kind: ClusterVaultConnection
metadata: {name: platform}
spec:
  provider: keyway
  url: https://%[4]s:8443/keyway
  caBundleSecretRef: {name: keyway, namespace: %[1]s, key: ca.crt}
  auth: {bearer: {secretRef: {name: keyway, namespace: %[1]s, key: token}}}
  namespaceSelector: {matchLabels: {%[5]s: "true"}}
`, ns, localstack.DemoCredentials["keyway"], caJSON, vaultIP, selector, manifestVersion)
}

// restartingApp is a Deployment opted in to restarts that reads key of Secret secret as an
// environment variable (and nothing else of it).
func restartingApp(ns, name, secret, key string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[2]s, namespace: %[1]s, labels: {keyferry.dev/restart-on-change: "true"}}
spec:
  selector: {matchLabels: {app: %[2]s}}
  template:
    metadata: {labels: {app: %[2]s}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: docker.io/library/keyferry-testapp:dev
        imagePullPolicy: Never
        args: ["-env", %[4]q, "-listen", ":8080"]
        env: [{name: %[4]s, valueFrom: {secretKeyRef: {name: %[3]s, key: %[4]s}}}]
        resources: {requests: {cpu: 1m, memory: 8Mi}}
`, ns, name, secret, key)
}
