//go:build node

package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyferry/keyferry/internal/dev/devcert"
)

// hooksTLSSecret holds the hook listener's serving certificate, for the name its Service
// has in the cluster (there is no DNS on the node: callers connect to the Service's
// address and verify that name).
const (
	hooksTLSSecret = "keyferry-hooks-tls"
	hooksName      = "keyferry-hooks.keyferry-system.svc"
)

// hooksCA is the CA of the listener's certificate.
var hooksCA string

// hookCertificate makes the listener's certificate and its Secret in keyferry-system.
func hookCertificate() (string, error) {
	ca, err := devcert.NewCA("keyferry-hooks-ca")
	if err != nil {
		return "", err
	}
	pair, err := ca.Serving("keyferry-hooks", []string{hooksName, "keyferry-hooks.keyferry-system.svc.cluster.local"}, nil)
	if err != nil {
		return "", err
	}
	q := func(b []byte) string { j, _ := json.Marshal(string(b)); return string(j) }
	_, err = node.KubectlIn(context.Background(), fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: keyferry-system}
---
apiVersion: v1
kind: Secret
metadata: {name: %s, namespace: keyferry-system}
type: kubernetes.io/tls
stringData: {tls.crt: %s, tls.key: %s}
`, hooksTLSSecret, q(pair.CertPEM), q(pair.KeyPEM)), "apply", "-f", "-")
	return string(ca.CertPEM), err
}

// A pod in another namespace calls a team's receiver through the chart's Service over
// TLS (verifying the listener's certificate), with the receiver's token from a Secret of
// its own: the team's binding pulls the vault's new value at once.
func TestHookFromAPodThroughTheService(t *testing.T) {
	if vaultCA == "" {
		vaultCA = devVault(t)
	}
	const token = "node-hook-token-0123456789abcdef"
	apply(t, keywayConnection("hooked", vaultCA)+`---
apiVersion: v1
kind: Secret
metadata: {name: ci-hook, namespace: hooked, labels: {keyferry.dev/credentials: "true"}}
stringData: {token: `+token+`}
---
apiVersion: keyferry.dev/v1beta1
kind: RefreshReceiver
metadata: {name: ci, namespace: hooked}
spec:
  type: token
  secretRef: {name: ci-hook}
  selector: {matchLabels: {app: hooked}}
---
apiVersion: keyferry.dev/v1beta1
kind: SecretBinding
metadata: {name: hooked, namespace: hooked, labels: {app: hooked}}
spec:
  connectionRef: {name: keyway}
  vault: acme/hooked
  environment: production
  target: {name: hooked}
`)
	setVault(t, vaultCA, "acme/hooked", "production", "API_TOKEN", "before-the-hook")
	kubectl(t, "wait", "--for=condition=Ready", "--timeout=90s", "-n", "hooked", "sb/hooked", "rr/ci")
	path := kubectl(t, "get", "rr", "ci", "-n", "hooked", "-o", "jsonpath={.status.webhookPath}")
	ip := kubectl(t, "get", "svc", "keyferry-hooks", "-n", "keyferry-system", "-o", "jsonpath={.spec.clusterIP}")
	setVault(t, vaultCA, "acme/hooked", "production", "API_TOKEN", "after-the-hook")

	caJSON, _ := json.Marshal(hooksCA)
	apply(t, fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: ci}
---
apiVersion: v1
kind: Secret
metadata: {name: hook, namespace: ci}
stringData: {token: %[1]s, ca.crt: %[2]s}
---
apiVersion: v1
kind: Pod
metadata: {name: caller, namespace: ci}
spec:
  automountServiceAccountToken: false
  containers:
  - name: app
    image: docker.io/library/keyferry-testapp:dev
    imagePullPolicy: Never
    args: ["-get", "https://%[3]s:443%[4]s", "-method", "POST", "-token", "/etc/hook/token", "-ca", "/etc/hook/ca.crt",
           "-server-name", "%[5]s", "-listen", ":8080"]
    volumeMounts: [{name: hook, mountPath: /etc/hook}]
  volumes: [{name: hook, secret: {secretName: hook}}]
`, token, caJSON, ip, path, hooksName))
	kubectl(t, "wait", "--for=condition=Ready", "--timeout=90s", "-n", "ci", "pod/caller")
	podIP := kubectl(t, "get", "pod", "caller", "-n", "ci", "-o", "jsonpath={.status.podIP}")
	waitFor(t, 60*time.Second, "the caller's hook accepted over verified TLS", func() (bool, string) {
		out, err := get("http://" + podIP + ":8080/")
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(out, ": 202 verified"), out
	})
	start := time.Now()
	waitFor(t, 30*time.Second, "the new value in the team's Secret", func() (bool, string) {
		v := kubectl(t, "get", "secret", "hooked", "-n", "hooked", "-o", "jsonpath={.data.API_TOKEN}")
		b, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
		return string(b) == "after-the-hook", string(b)
	})
	t.Logf("the Secret held the new value %v after the caller's hook was accepted", time.Since(start).Round(time.Millisecond))
	kubectl(t, "delete", "namespace", "ci", "--wait=false")
}
