// Command demo runs keyferry locally with no cluster: a local kube-apiserver and etcd, the
// CRDs, the development vault, sample connections and bindings for several providers, and
// the manager binary. It stays up until Ctrl-C; with --once (or KEYFERRY_DEMO_ONCE=1) it
// exits after the first successful sync.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	kf "github.com/keyferry/keyferry/api/v1beta1"

	"github.com/keyferry/keyferry/internal/dev/localnode"
	"github.com/keyferry/keyferry/internal/dev/localstack"
)

func main() {
	once := flag.Bool("once", os.Getenv("KEYFERRY_DEMO_ONCE") != "", "Exit after the first successful sync (for scripts).")
	onNode := flag.Bool("node", os.Getenv("KEYFERRY_DEMO_NODE") != "", "Also run a real local node (root; make image first) and a pod that reads a synced Secret.")
	flag.Parse()
	if err := run(*once, *onNode); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(once, onNode bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	dir := filepath.Join(os.TempDir(), "keyferry-demo")
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var st *localstack.Stack
	var node *localnode.Node
	if onNode {
		bin := filepath.Join(root, "bin")
		node, err = localnode.Start(ctx, localnode.Options{RepoRoot: root, Stack: localstack.Options{Dir: dir},
			Images: []string{filepath.Join(bin, "keyferry-testapp.tar")}})
		if node != nil {
			defer node.Stop()
		}
		if err != nil {
			return err
		}
		st = node.Stack
	} else {
		if st, err = localstack.Start(ctx, localstack.Options{RepoRoot: root, Dir: dir}); err != nil {
			return err
		}
		defer st.Stop()
	}
	fmt.Fprintln(os.Stderr, "[keyferry] starting the manager")
	if err := st.StartManager(); err != nil {
		return fmt.Errorf("%w (log: %s)", err, st.ManagerLog)
	}
	fmt.Fprintln(os.Stderr, "[keyferry] applying connections and bindings for keyway, keystash, stash, knowledgestack and keymint")
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := st.ApplyDemo(wctx); err != nil {
		out, _ := st.Kubectl(ctx, "get", "secretbindings", "-n", localstack.DemoNamespace)
		return fmt.Errorf("%w\n%s(manager log: %s)", err, out, st.ManagerLog)
	}
	fmt.Printf("\nEvery binding is Ready (%.1fs after apply).\n\n", time.Since(start).Seconds())
	out, err := st.Kubectl(ctx, "get", "vaultconnections,secretbindings", "-A")
	if err != nil {
		return err
	}
	fmt.Println("$ kubectl get vaultconnections,secretbindings -A")
	fmt.Println(out)
	keys, err := st.SecretKeys(ctx)
	if err != nil {
		return err
	}
	fmt.Println("Synced Secrets and their keys (values are not shown):")
	fmt.Println(keys)
	fanned, err := st.Kubectl(ctx, "get", "secretbindings", "-A", "-l", kf.LabelClusterSecretBinding+"="+localstack.DemoClusterBinding)
	if err != nil {
		return err
	}
	csb, err := st.Kubectl(ctx, "get", "clustersecretbinding", localstack.DemoClusterBinding)
	if err != nil {
		return err
	}
	fmt.Printf("\nOne ClusterSecretBinding fills the namespaces labelled %s:\n", localstack.DemoTeamLabel)
	fmt.Println("$ kubectl get clustersecretbinding " + localstack.DemoClusterBinding)
	fmt.Println(strings.TrimSpace(csb))
	fmt.Println("$ kubectl get secretbindings -A -l " + kf.LabelClusterSecretBinding + "=" + localstack.DemoClusterBinding)
	fmt.Println(strings.TrimSpace(fanned))
	fmt.Fprintln(os.Stderr, "\n[keyferry] a Deployment labelled keyferry.dev/restart-on-change reads DB_USER; changing it in the vault")
	history, err := st.DemoRollout(wctx)
	if err != nil {
		return err
	}
	fmt.Println("\n$ kubectl rollout history deployment/shop -n demo   # after DB_USER changed in the vault")
	fmt.Println(strings.TrimSpace(history))
	if node != nil {
		out, err := podReadingSecret(wctx, st)
		if err != nil {
			return err
		}
		fmt.Printf("\n$ kubectl logs reader -n demo   # a pod on the local node %s reads payments-env\n%s\n", localnode.NodeName, out)
	}
	if once {
		return nil
	}
	fmt.Printf(`
Poke at it (the dev vault and this control plane are throwaway and local):
  export KUBECONFIG=%[1]s
  %[2]s get sb -n demo -w
  %[2]s annotate sb payments -n demo keyferry.dev/refresh="$(date +%%s)" --overwrite
  %[2]s get secret payments-env -n demo -o yaml
  curl %[3]s/debug/counts        # requests the dev vault served, per endpoint
  %[2]s get rr ci -n demo           # hooks go to %[5]s + its status.webhookPath (README: "Refresh from CI";
                                    # the demo's secret is %[6]s)
  tail -f %[4]s

Ctrl-C stops everything this command started.
`, st.Kubeconfig, st.KubectlBin, st.VaultURL, st.ManagerLog, st.HookURL, localstack.DemoCredentials["hook"])
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "\n[keyferry] stopping")
	return nil
}

// podReadingSecret runs a pod on the local node that reads payments-env as an environment
// variable and as a file, and returns what it printed.
func podReadingSecret(ctx context.Context, st *localstack.Stack) (string, error) {
	const pod = `apiVersion: v1
kind: Pod
metadata: {name: reader, namespace: demo}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: docker.io/library/keyferry-testapp:dev
    imagePullPolicy: Never
    args: ["-env", "DB_USER", "-file", "/secrets/DB_USER"]
    env:
    - name: DB_USER
      valueFrom: {secretKeyRef: {name: payments-env, key: DB_USER}}
    volumeMounts: [{name: secrets, mountPath: /secrets}]
  volumes: [{name: secrets, secret: {secretName: payments-env}}]
`
	if _, err := st.KubectlIn(ctx, pod, "apply", "-f", "-"); err != nil {
		return "", err
	}
	if _, err := st.Kubectl(ctx, "wait", "--for=condition=Ready", "--timeout=90s", "-n", "demo", "pod/reader"); err != nil {
		return "", err
	}
	out, err := st.Kubectl(ctx, "logs", "reader", "-n", "demo")
	return strings.TrimSpace(out), err
}
