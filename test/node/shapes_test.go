//go:build node

package node

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/keyferry/keyferry/internal/dev/devcert"
	"github.com/keyferry/keyferry/internal/dev/localnode"
)

// tlsIP is the fixed ClusterIP of the TLS test server's Service (its certificate names it).
const tlsIP = "10.0.0.101"

// privateRegistry serves images on the host's end of the node's veth, behind basic auth
// (go-containerregistry's in-memory registry); it returns its host:port and counts the
// requests it refused.
func privateRegistry(t *testing.T, user, password string) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(localnode.HostIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	refused := &atomic.Int64{}
	reg := registry.New()
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			if ok {
				refused.Add(1)
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="keyferry-test-registry"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String(), refused
}

func pushTestApp(t *testing.T, host, user, password string) string {
	t.Helper()
	img, err := tarball.ImageFromPath(filepath.Join(repoRoot(), "bin", "keyferry-testapp.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Its own image ID: containerd 1.6's CRI keys images by config digest, and a second
	// name for the imported image's ID would take the name the other tests run from.
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config
	cfg.Labels = map[string]string{"dev.keyferry.test": "private-registry"}
	if img, err = mutate.Config(img, cfg); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/keyferry-testapp:private", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: password})); err != nil {
		t.Fatalf("pushing the test app to the private registry: %v", err)
	}
	return ref.String()
}

// waitPods waits until the pods of shapes are Ready; on a timeout it shows why.
func waitPods(t *testing.T, timeout string, pods ...string) {
	t.Helper()
	args := append([]string{"wait", "--for=condition=Ready", "--timeout=" + timeout, "-n", "shapes"}, pods...)
	out, err := node.Kubectl(context.Background(), args...)
	if err == nil {
		return
	}
	for _, p := range pods {
		desc, _ := node.Kubectl(context.Background(), "describe", "-n", "shapes", p)
		t.Logf("%s", desc)
	}
	t.Fatalf("kubectl wait %v: %v\n%s", pods, err, out)
}

func serialOf(t *testing.T, certPEM []byte) string {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// Secrets in the shapes workloads consume, on the real node: an image pull secret keyferry
// renders from the vault pulls a private image (and a wrong password shows as the pull's
// failure while the binding tells the truth); a kubernetes.io/tls Secret built from base64
// PEM values serves HTTPS that another pod verifies with the CA, and a rotated pair reaches
// the mounted files; a config.json rendered from a ConfigMap template over two
// environments is read by a pod.
func TestSecretShapesOnTheNode(t *testing.T) {
	if vaultCA == "" {
		vaultCA = devVault(t)
	}
	const user, password = "puller", "registry-password-of-the-test"
	host, refused := privateRegistry(t, user, password)
	image := pushTestApp(t, host, user, password)
	if err := node.TrustPlainHTTPRegistry(host); err != nil {
		t.Fatal(err)
	}
	setVault(t, vaultCA, "acme/registry", "production", "REGISTRY_USER", user)
	setVault(t, vaultCA, "acme/registry", "production", "REGISTRY_PASSWORD", password)
	ca, err := devcert.NewCA("shapes-ca")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Serving("tls-server", nil, []net.IP{net.ParseIP(tlsIP)})
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	setVault(t, vaultCA, "acme/tls", "production", "TLS_CRT", b64(pair.CertPEM))
	setVault(t, vaultCA, "acme/tls", "production", "TLS_KEY", b64(pair.KeyPEM))
	setVault(t, vaultCA, "acme/cfg", "common", "REGION", "eu")
	setVault(t, vaultCA, "acme/cfg", "production", "DB_USER", "app")
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	apply(t, keywayConnection("shapes", vaultCA)+fmt.Sprintf(`---
apiVersion: keyferry.dev/v1beta1
kind: SecretBinding
metadata: {name: registry-pull, namespace: shapes}
spec:
  connectionRef: {name: keyway}
  vault: acme/registry
  environment: production
  target:
    type: kubernetes.io/dockerconfigjson
    template:
      data:
        .dockerconfigjson: '{{ dict "auths" (dict %s (dict "auth" (printf "%%s:%%s" .REGISTRY_USER .REGISTRY_PASSWORD | b64enc))) | toJson }}'
---
apiVersion: keyferry.dev/v1beta1
kind: SecretBinding
metadata: {name: shop-tls, namespace: shapes}
spec:
  connectionRef: {name: keyway}
  vault: acme/tls
  environment: production
  decodingStrategy: Base64
  rename: {TLS_CRT: tls.crt, TLS_KEY: tls.key}
  target: {type: kubernetes.io/tls}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: app-templates, namespace: shapes, labels: {keyferry.dev/template: "true"}}
data:
  config.json: '{{ dict "user" .DB_USER "region" .REGION | toJson }}'
---
apiVersion: keyferry.dev/v1beta1
kind: SecretBinding
metadata: {name: app-config, namespace: shapes}
spec:
  connectionRef: {name: keyway}
  vault: acme/cfg
  environment: production
  sources: [{vault: acme/cfg, environment: common}]
  target:
    templateFrom: [{configMap: {name: app-templates, items: [{key: config.json}]}}]
`, q(host)))
	for _, b := range []string{"registry-pull", "shop-tls", "app-config"} {
		kubectl(t, "wait", "--for=condition=Ready", "--timeout=90s", "-n", "shapes", "secretbinding/"+b)
	}
	if got := kubectl(t, "get", "sb", "shop-tls", "-n", "shapes", "-o", "jsonpath={.status.certificateNotAfter}"); got == "" {
		t.Error("the TLS binding shows no certificateNotAfter")
	}

	pod := func(podName, img, pull, args, volumes, mounts string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: shapes, labels: {app: %s}}
spec:
  %s
  containers:
  - name: app
    image: %s
    imagePullPolicy: %s
    args: %s
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
    volumeMounts: %s
  volumes: %s
`, podName, podName, pull, img, map[bool]string{true: "Always", false: "Never"}[pull != ""], args, mounts, volumes)
	}
	const testapp = "docker.io/library/keyferry-testapp:dev"
	// The private image, pulled with the rendered pull secret.
	apply(t, pod("private", image, "imagePullSecrets: [{name: registry-pull}]", `["-listen", ":8080"]`, "[]", "[]"))
	waitPods(t, "120s", "pod/private")

	// A pod reading config.json rendered from the ConfigMap template over two environments.
	apply(t, pod("config", testapp, "", `["-file", "/cfg/config.json", "-listen", ":8080"]`,
		"[{name: cfg, secret: {secretName: app-config}}]", "[{name: cfg, mountPath: /cfg}]"))
	waitPods(t, "90s", "pod/config")
	cfgIP := kubectl(t, "get", "pod", "config", "-n", "shapes", "-o", "jsonpath={.status.podIP}")
	if out, err := get("http://" + cfgIP + ":8080/"); err != nil || !strings.Contains(out, `file /cfg/config.json={"region":"eu","user":"app"}`) {
		t.Errorf("the config pod reads: %s %v", out, err)
	}

	// HTTPS with the TLS Secret, verified by another pod with the CA.
	apply(t, fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: ca, namespace: shapes}
data: {ca.crt: %s}
---
apiVersion: v1
kind: Service
metadata: {name: tls-server, namespace: shapes}
spec:
  clusterIP: %s
  selector: {app: tls-server}
  ports: [{port: 8443, targetPort: 8443}]
`, q(string(ca.CertPEM)), tlsIP))
	apply(t, strings.Replace(pod("tls-server", testapp, "", `["-listen", ":8443", "-tls-cert", "/tls/tls.crt", "-tls-key", "/tls/tls.key"]`,
		"[{name: tls, secret: {secretName: shop-tls}}]", "[{name: tls, mountPath: /tls}]"), "port: 8080", "port: 8443", 1))
	apply(t, pod("tls-client", testapp, "", fmt.Sprintf(`["-listen", ":8080", "-get", "https://%s:8443/", "-ca", "/ca/ca.crt"]`, tlsIP),
		"[{name: ca, configMap: {name: ca}}]", "[{name: ca, mountPath: /ca}]"))
	waitPods(t, "90s", "pod/tls-server", "pod/tls-client")
	clientIP := kubectl(t, "get", "pod", "tls-client", "-n", "shapes", "-o", "jsonpath={.status.podIP}")
	verified := func(serial string) {
		waitFor(t, 150*time.Second, "the client verifies the server's certificate "+serial, func() (bool, string) {
			out, err := get("http://" + clientIP + ":8080/")
			if err != nil {
				return false, err.Error()
			}
			return strings.Contains(out, "200 verified serial="+serial+"\n"), out
		})
	}
	verified(serialOf(t, pair.CertPEM))
	rotated, err := ca.Serving("tls-server", nil, []net.IP{net.ParseIP(tlsIP)})
	if err != nil {
		t.Fatal(err)
	}
	setVault(t, vaultCA, "acme/tls", "production", "TLS_CRT", b64(rotated.CertPEM))
	setVault(t, vaultCA, "acme/tls", "production", "TLS_KEY", b64(rotated.KeyPEM))
	kubectl(t, "annotate", "sb", "shop-tls", "-n", "shapes", "--overwrite", "keyferry.dev/refresh=rotate-1")
	verified(serialOf(t, rotated.CertPEM))

	// A wrong password in the vault: keyferry syncs it faithfully (Ready), the node's pull
	// is refused by the registry.
	setVault(t, vaultCA, "acme/registry", "production", "REGISTRY_PASSWORD", "a-wrong-password")
	kubectl(t, "annotate", "sb", "registry-pull", "-n", "shapes", "--overwrite", "keyferry.dev/refresh=wrong-1")
	wrongAuth := base64.StdEncoding.EncodeToString([]byte(user + ":a-wrong-password"))
	waitFor(t, 60*time.Second, "the pull secret to carry the new password", func() (bool, string) {
		raw := kubectl(t, "get", "secret", "registry-pull", "-n", "shapes", "-o", `jsonpath={.data.\.dockerconfigjson}`)
		cfg, _ := base64.StdEncoding.DecodeString(raw)
		return strings.Contains(string(cfg), wrongAuth), "not yet"
	})
	before := refused.Load()
	apply(t, pod("private-wrong", image, "imagePullSecrets: [{name: registry-pull}]", `["-listen", ":8080"]`, "[]", "[]"))
	waitFor(t, 120*time.Second, "the pull to fail", func() (bool, string) {
		reason := kubectl(t, "get", "pod", "private-wrong", "-n", "shapes", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}")
		return reason == "ErrImagePull" || reason == "ImagePullBackOff", reason
	})
	if refused.Load() == before {
		t.Error("the registry refused no request: the wrong credentials never reached it")
	}
	if r := kubectl(t, "get", "sb", "registry-pull", "-n", "shapes", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].reason}`); r != "Synced" {
		t.Errorf("the binding says %s: it synced what the vault holds", r)
	}
}
