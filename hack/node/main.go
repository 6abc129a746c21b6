// Command node runs keyferry's local node for development: the control plane on the
// node's bridge, containerd, kubelet, kube-proxy and kube-scheduler, with keyferry's images
// imported (make image first). Root only. Ctrl-C stops it and restores the host.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/keyferry/keyferry/internal/dev/localnode"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
}

func run() error {
	root, _ := os.Getwd()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bin := filepath.Join(root, "bin")
	n, err := localnode.Start(ctx, localnode.Options{RepoRoot: root, Images: []string{
		filepath.Join(bin, "keyferry.tar"), filepath.Join(bin, "keyferry-devvault.tar"), filepath.Join(bin, "keyferry-testapp.tar")}})
	if n != nil {
		defer n.Stop()
	}
	if err != nil {
		return err
	}
	fmt.Printf("node %s is Ready.\n  export KUBECONFIG=%s\n  logs: %s\nCtrl-C stops it and restores the host.\n", localnode.NodeName, n.Kubeconfig, n.Dir())
	<-ctx.Done()
	return nil
}
