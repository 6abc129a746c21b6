package localnode

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"time"
)

// RestartContainerd stops the node's containerd (SIGTERM to it alone: its shims, and so
// the pods' containers, run on) and starts it again with the same configuration, as a
// package upgrade on a node does; it returns once containerd answers again.
func (n *Node) RestartContainerd(ctx context.Context) error {
	old := n.containerd
	if old == nil {
		return fmt.Errorf("containerd is not running")
	}
	if err := old.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping containerd: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = old.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = old.Process.Kill()
		<-done
	}
	n.logf("containerd stopped; starting it again")
	return n.runContainerd(ctx, filepath.Join(n.dir, "containerd", "config.toml"))
}
