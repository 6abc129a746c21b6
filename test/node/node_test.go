//go:build node

// Package node tests keyferry where its users run it: its own image installed by its Helm
// chart on a real node (kubelet, containerd, runc, CNI) built from the same module sources
// as the local control plane, a dev vault pod behind HTTPS, and workloads that read the
// Secrets keyferry writes. Run with `make test-cluster` (root; it builds the images and,
// once per machine, the node binaries).
package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	root := repoRoot()
	// The README's install section, for real: a release (make test-cluster writes it into
	// bin/release) is pushed to a registry on the node's veth, the chart is installed from
	// there (OCI) and brings the CRDs, and the kubelet pulls keyferry by digest; then an
	// upgrade to two replicas with a PodDisruptionBudget.
	err := startNode(root)
	if node != nil {
		defer node.Stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The hook listener over TLS from a kubernetes.io/tls Secret, as cert-manager would
	// leave it (the pods mount it, so it comes first).
	if hooksCA, err = hookCertificate(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if release, err = publishRelease(root, filepath.Join(root, "bin", "release")); err != nil {
		fmt.Fprintln(os.Stderr, "publishing the release:", err)
		return 1
	}
	for _, args := range [][]string{
		release.installArgs("install", "--create-namespace",
			"--set", "webhook.enabled=true", "--set", "webhook.tls.secretName="+hooksTLSSecret, "--wait", "--timeout", "3m"),
		release.installArgs("upgrade", "--reuse-values",
			"--set", "replicaCount=2", "--set", "podDisruptionBudget.enabled=true", "--wait", "--timeout", "3m"),
	} {
		if err := helm(root, args...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			managerLogs()
			return 1
		}
	}
	code := m.Run()
	if code != 0 {
		managerLogs()
	}
	return code
}

// The whole path a user takes: keyferry's pods (two replicas, one leading) from its image
// and chart pull from a vault over HTTPS (its CA from a Secret) into a Secret that a
// Deployment reads as an environment variable and as a file; a change in the vault reaches
// the file in place and restarts the Deployment for the variable.
func TestWorkloadReadsWhatKeyferryWrote(t *testing.T) {
	caPEM := devVault(t)
	vaultCA = caPEM
	apply(t, keywayConnection("shop", caPEM)+`---
apiVersion: keyferry.dev/v1beta1
kind: SecretBinding
metadata: {name: payments, namespace: shop}
spec:
  connectionRef: {name: keyway}
  vault: acme/payments
  environment: production
  target: {name: payments-env}
`)
	kubectl(t, "wait", "--for=condition=Ready", "--timeout=90s", "-n", "shop", "secretbinding/payments")

	apply(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: shop, namespace: shop, labels: {keyferry.dev/restart-on-change: "true"}}
spec:
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers:
      - name: app
        image: docker.io/library/keyferry-testapp:dev
        imagePullPolicy: Never
        args: ["-env", "DB_USER", "-file", "/secrets/DB_USER", "-listen", ":8080"]
        env:
        - name: DB_USER
          valueFrom: {secretKeyRef: {name: payments-env, key: DB_USER}}
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
        volumeMounts: [{name: secrets, mountPath: /secrets}]
      volumes: [{name: secrets, secret: {secretName: payments-env}}]
`)
	kubectl(t, "rollout", "status", "deployment/shop", "-n", "shop", "--timeout=90s")
	// Not opted in to restarts: it reads the file only, updated in place by the kubelet.
	apply(t, `apiVersion: v1
kind: Pod
metadata: {name: files, namespace: shop}
spec:
  containers:
  - name: app
    image: docker.io/library/keyferry-testapp:dev
    imagePullPolicy: Never
    args: ["-file", "/secrets/DB_USER", "-listen", ":8080"]
    readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
    volumeMounts: [{name: secrets, mountPath: /secrets}]
  volumes: [{name: secrets, secret: {secretName: payments-env}}]
`)
	kubectl(t, "wait", "--for=condition=Ready", "--timeout=90s", "-n", "shop", "pod/files")
	filesUID := kubectl(t, "get", "pod", "files", "-n", "shop", "-o", "jsonpath={.metadata.uid}")
	filesIP := kubectl(t, "get", "pod", "files", "-n", "shop", "-o", "jsonpath={.status.podIP}")
	show := func() (string, string) {
		ip := kubectl(t, "get", "pods", "-n", "shop", "-l", "app=shop", "--field-selector=status.phase=Running",
			"-o", "jsonpath={.items[0].status.podIP}")
		out, err := get("http://" + ip + ":8080/")
		if err != nil {
			return "", err.Error()
		}
		return out, ""
	}
	out, _ := show()
	if !strings.Contains(out, "env DB_USER=payments\n") || !strings.Contains(out, "file /secrets/DB_USER=payments\n") {
		t.Fatalf("the workload reads:\n%s", out)
	}
	first := kubectl(t, "get", "pods", "-n", "shop", "-l", "app=shop", "-o", "jsonpath={.items[0].metadata.name}")

	// A change in the vault: keyferry writes it, the kubelet updates the file in place,
	// and keyferry restarts the Deployment for its environment variable.
	setVault(t, caPEM, "acme/payments", "production", "DB_USER", "payments-v2")
	kubectl(t, "annotate", "sb", "payments", "-n", "shop", "--overwrite", "keyferry.dev/refresh=node-1")
	waitFor(t, 120*time.Second, "a new pod that reads the new value", func() (bool, string) {
		out, errText := show()
		return strings.Contains(out, "env DB_USER=payments-v2\n") && strings.Contains(out, "file /secrets/DB_USER=payments-v2\n"), out + errText
	})
	waitFor(t, 60*time.Second, "the first pod to go", func() (bool, string) {
		now := kubectl(t, "get", "pods", "-n", "shop", "-l", "app=shop", "-o", "jsonpath={.items[*].metadata.name}")
		return !strings.Contains(now, first), now
	})
	if rs := strings.Fields(kubectl(t, "get", "rs", "-n", "shop", "-l", "app=shop", "-o", "jsonpath={.items[*].metadata.name}")); len(rs) != 2 {
		t.Errorf("ReplicaSets after one change: %v, want the first and exactly one new", rs)
	}
	waitFor(t, 90*time.Second, "the volume-only pod to see the new file, unrestarted", func() (bool, string) {
		out, err := get("http://" + filesIP + ":8080/")
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(out, "file /secrets/DB_USER=payments-v2\n"), out
	})
	if uid := kubectl(t, "get", "pod", "files", "-n", "shop", "-o", "jsonpath={.metadata.uid} {.status.containerStatuses[0].restartCount}"); uid != filesUID+" 0" {
		t.Errorf("the volume-only pod was replaced or restarted: %s (was %s 0)", uid, filesUID)
	}
	if restarted := kubectl(t, "get", "deployment", "shop", "-n", "shop", "-o", `jsonpath={.spec.template.metadata.annotations.keyferry\.dev/restarted-for}`); restarted == "" {
		t.Error("the Deployment carries no keyferry.dev/restarted-for annotation")
	}
}

// Two replicas, one leader; deleting the leader's pod hands the lease over and syncing goes
// on.
func TestLeaderFailoverOnTheNode(t *testing.T) {
	holder := func() string {
		out, _ := node.Kubectl(context.Background(), "get", "lease", "-n", "keyferry-system", "-o", "jsonpath={.items[0].spec.holderIdentity}")
		return strings.TrimSpace(out)
	}
	waitFor(t, 60*time.Second, "a leader", func() (bool, string) { h := holder(); return h != "", h })
	leader := holder()
	pod := strings.SplitN(leader, "_", 2)[0]
	kubectl(t, "delete", "pod", "-n", "keyferry-system", pod, "--wait=false")
	waitFor(t, 90*time.Second, "another leader", func() (bool, string) {
		h := holder()
		return h != "" && !strings.HasPrefix(h, pod), h
	})
	before := kubectl(t, "get", "deployment", "shop", "-n", "shop", "-o", `jsonpath={.spec.template.metadata.annotations.keyferry\.dev/restarted-for}`)
	setVault(t, vaultCA, "acme/payments", "production", "DB_USER", "payments-v3")
	kubectl(t, "annotate", "sb", "payments", "-n", "shop", "--overwrite", "keyferry.dev/refresh=after-failover")
	waitFor(t, 60*time.Second, "the refresh handled by the new leader", func() (bool, string) {
		out := kubectl(t, "get", "sb", "payments", "-n", "shop", "-o", "jsonpath={.status.lastHandledRefresh}")
		return out == "after-failover", out
	})
	waitFor(t, 90*time.Second, "the Deployment restarted by the new leader", func() (bool, string) {
		now := kubectl(t, "get", "deployment", "shop", "-n", "shop", "-o", `jsonpath={.spec.template.metadata.annotations.keyferry\.dev/restarted-for}`)
		return now != before, now
	})
}

// managerPIDs are the host's view of the manager containers' processes.
func managerPIDs(t *testing.T) []string {
	t.Helper()
	out, _ := exec.Command("pgrep", "-f", "^/manager ").Output()
	pids := strings.Fields(string(out))
	if len(pids) == 0 {
		t.Fatal("no manager process found on the node")
	}
	return pids
}

// keyferry runs as its chart says: two replicas Available through their probes, one leader,
// the HMAC key Secret, and runc enforcing a non-root user and a read-only root filesystem;
// GOMEMLIMIT comes from the memory limit (its RSS under it is reported).
func TestManagerRunsAsUsersRunIt(t *testing.T) {
	// From the registry, by digest: nothing of keyferry was imported into the node.
	waitFor(t, 30*time.Second, "the release's image, pulled by digest", release.pulledByDigest)
	waitFor(t, 90*time.Second, "two available replicas", func() (bool, string) {
		n := kubectl(t, "get", "deployment", "-n", "keyferry-system", "keyferry", "-o", "jsonpath={.status.availableReplicas}")
		return n == "2", n
	})
	kubectl(t, "get", "secret", "-n", "keyferry-system", "keyferry-hmac-key")
	if n := kubectl(t, "get", "pdb", "-n", "keyferry-system", "-o", "jsonpath={.items[*].metadata.name}"); n == "" {
		t.Error("no PodDisruptionBudget after the README's upgrade")
	}
	env := kubectl(t, "get", "deployment", "-n", "keyferry-system", "keyferry", "-o",
		`jsonpath={.spec.template.spec.containers[0].env[?(@.name=="GOMEMLIMIT")].valueFrom.resourceFieldRef.resource}`)
	if env != "limits.memory" {
		t.Fatalf("GOMEMLIMIT from %q, want limits.memory", env)
	}
	for _, pid := range managerPIDs(t) {
		status, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			t.Fatal(err)
		}
		var uid, rss string
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
				uid = f[1]
			} else if len(f) > 1 && f[0] == "VmRSS:" {
				rss = f[1] + " " + f[2]
			}
		}
		if uid != "65532" {
			t.Errorf("manager %s runs as uid %s, want 65532", pid, uid)
		}
		mounts, err := os.ReadFile("/proc/" + pid + "/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		readOnly := false
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 5 && f[4] == "/" {
				readOnly = strings.HasPrefix(f[5], "ro")
			}
		}
		if !readOnly {
			t.Errorf("manager %s: its root filesystem is writable", pid)
		}
		environ, _ := os.ReadFile("/proc/" + pid + "/environ")
		limit := ""
		for _, kv := range strings.Split(string(environ), "\x00") {
			if v, ok := strings.CutPrefix(kv, "GOMEMLIMIT="); ok {
				limit = v
			}
		}
		if limit == "" {
			t.Errorf("manager %s has no GOMEMLIMIT", pid)
		}
		t.Logf("manager %s: uid %s, read-only root, GOMEMLIMIT=%s, RSS %s", pid, uid, limit, rss)
	}
}

// The metrics endpoint answers a pod whose ServiceAccount is bound to the metrics-reader
// ClusterRole (200), and refuses one without a token (401).
func TestMetricsNeedAnAuthorizedToken(t *testing.T) {
	ip := kubectl(t, "get", "svc", "-n", "keyferry-system", "keyferry-metrics", "-o", "jsonpath={.spec.clusterIP}")
	url := "https://" + ip + ":8443/metrics"
	apply(t, fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: monitoring}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: scraper, namespace: monitoring}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: scraper-reads-keyferry-metrics}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: keyferry-metrics-reader}
subjects: [{kind: ServiceAccount, name: scraper, namespace: monitoring}]
---
apiVersion: v1
kind: Pod
metadata: {name: scraper, namespace: monitoring}
spec:
  serviceAccountName: scraper
  containers:
  - name: app
    image: docker.io/library/keyferry-testapp:dev
    imagePullPolicy: Never
    args: ["-get", "%[1]s", "-token", "/var/run/secrets/kubernetes.io/serviceaccount/token", "-listen", ":8080"]
---
apiVersion: v1
kind: Pod
metadata: {name: anonymous, namespace: monitoring}
spec:
  automountServiceAccountToken: false
  containers:
  - name: app
    image: docker.io/library/keyferry-testapp:dev
    imagePullPolicy: Never
    args: ["-get", "%[1]s", "-listen", ":8080"]
`, url))
	for pod, want := range map[string]string{"scraper": "200", "anonymous": "401"} {
		kubectl(t, "wait", "--for=condition=Ready", "--timeout=90s", "-n", "monitoring", "pod/"+pod)
		podIP := kubectl(t, "get", "pod", pod, "-n", "monitoring", "-o", "jsonpath={.status.podIP}")
		waitFor(t, 60*time.Second, pod+" gets "+want, func() (bool, string) {
			out, err := get("http://" + podIP + ":8080/")
			if err != nil {
				return false, err.Error()
			}
			return strings.Contains(out, ": "+want+"\n"), out
		})
	}
}
