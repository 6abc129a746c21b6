// Package localnode runs a real Kubernetes node on this machine for development and tests:
// containerd (Debian's, with its own root, state and socket), runc and the CNI bridge
// plugin, and kubelet, kube-proxy and kube-scheduler built from the same module sources as
// the local control plane (hack/build-node.sh). Pods live in network namespaces on a bridge
// the node creates (kfbr0, 10.88.0.0/16); kube-apiserver listens on the bridge's address so
// that pods reach it through the kubernetes Service. Only development uses it: it changes
// the host (sysctls, iptables chains, a bridge, mounts, cgroups), needs root, holds a
// machine-wide lock (one node per machine), restores what it changed when it stops, and
// cleans up after a run that crashed.
package localnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/keyferry/keyferry/internal/localstack"
)

const (
	// Bridge is the node's bridge; pods get addresses on it.
	Bridge = "kfbr0"
	// NodeIP is the bridge's address: the node's and kube-apiserver's.
	NodeIP = "10.88.0.1"
	// PodCIDR holds the pods' addresses.
	PodCIDR = "10.88.0.0/16"
	// ServiceCIDR is the Services' range (envtest's kube-apiserver default).
	ServiceCIDR = "10.0.0.0/24"
	// NodeName is the node's name.
	NodeName = "keyferry-node"
	// SandboxImage is the pause image (hack/pause) every pod sandbox runs.
	SandboxImage = "docker.io/library/keyferry-pause:dev"

	egressChain = "KEYFERRY-NODE-EGRESS"

	lockPath  = "/run/keyferry-node.lock"
	statePath = "/run/keyferry-node.state"
)

// Options configure a node.
type Options struct {
	// RepoRoot is the keyferry checkout.
	RepoRoot string
	// Images are image archives (make image) imported into the node's containerd.
	Images []string
	// Stack configures the control plane (its APIServerAddress is set to NodeIP).
	Stack localstack.Options
	// Progress receives what the node is doing; os.Stderr when nil.
	Progress io.Writer
}

// Node is a running local node beside its control plane.
type Node struct {
	*localstack.Stack
	opts   Options
	dir    string
	bins   string
	lock   *os.File
	procs  []*exec.Cmd
	sysctl map[string]string // what the node changed, with the value to restore
	// Containerd is the node's containerd socket (for ctr).
	Containerd string
}

// hostSysctls are the values the node needs; the previous ones are restored on Stop.
var hostSysctls = map[string]string{
	"net/ipv4/ip_forward":                 "1",
	"net/bridge/bridge-nf-call-iptables":  "1",
	"net/bridge/bridge-nf-call-ip6tables": "1",
	// The kubelet sets these itself (protectKernelDefaults is off); recorded to restore.
	"vm/overcommit_memory": "",
	"kernel/panic":         "",
	"kernel/panic_on_oops": "",
}

func (n *Node) logf(format string, args ...any) {
	w := n.opts.Progress
	if w == nil {
		w = os.Stderr
	}
	_, _ = fmt.Fprintf(w, "[node] "+format+"\n", args...)
}

// Start takes the machine-wide lock, cleans up after a crashed run, sets up the network,
// starts the control plane on the bridge address, then containerd, kubelet, kube-proxy and
// kube-scheduler, imports the images and waits until the node is Ready.
func Start(ctx context.Context, opts Options) (*Node, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the local node needs root (it creates a bridge, mounts and cgroups)")
	}
	n := &Node{opts: opts, sysctl: map[string]string{}}
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("another local node runs on this machine (%s is locked)", lockPath)
	}
	n.lock = lock
	ok := false
	defer func() {
		if !ok {
			n.Stop()
		}
	}()
	if err := cleanupStale(n.logf); err != nil {
		return nil, fmt.Errorf("cleaning up after an earlier run: %w", err)
	}
	bins, err := n.buildNode(ctx)
	if err != nil {
		return nil, err
	}
	n.bins = bins
	if n.dir, err = os.MkdirTemp("", "keyferry-node-"); err != nil {
		return nil, err
	}
	if err := os.WriteFile(statePath, []byte(n.dir), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(n.dir, "bins"), []byte(bins), 0o600); err != nil {
		return nil, err
	}
	if err := n.network(); err != nil {
		return nil, err
	}
	st := opts.Stack
	st.APIServerAddress = NodeIP
	st.RepoRoot = opts.RepoRoot
	if n.Stack, err = localstack.Start(ctx, st); err != nil {
		return nil, err
	}
	if err := n.startContainerd(ctx); err != nil {
		return nil, err
	}
	for _, img := range append([]string{filepath.Join(opts.RepoRoot, "bin", "keyferry-pause.tar")}, opts.Images...) {
		if err := n.ctr(ctx, "images", "import", "--all-platforms", img); err != nil {
			return nil, fmt.Errorf("importing %s: %w", img, err)
		}
	}
	if err := n.startKubelet(); err != nil {
		return nil, err
	}
	if err := n.startProxyAndScheduler(); err != nil {
		return nil, err
	}
	n.logf("waiting for node %s to be Ready", NodeName)
	if err := waitFor(60*time.Second, "the node to register", func() bool {
		_, err := n.Kubectl(ctx, "get", "node", NodeName)
		return err == nil
	}); err != nil {
		return nil, fmt.Errorf("%w (logs in %s)", err, LogsDir())
	}
	if _, err := n.Kubectl(ctx, "wait", "--for=condition=Ready", "--timeout=120s", "node/"+NodeName); err != nil {
		return nil, fmt.Errorf("node not Ready: %w (logs in %s)", err, LogsDir())
	}
	ok = true
	return n, nil
}

// LogsDir is where the logs of the last node that stopped are kept.
func LogsDir() string { return filepath.Join(os.TempDir(), "keyferry-node-logs") }

// Dir holds the node's configuration, state and logs.
func (n *Node) Dir() string { return n.dir }

func (n *Node) buildNode(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(n.opts.RepoRoot, "hack", "build-node.sh"))
	cmd.Dir = n.opts.RepoRoot
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building the node binaries: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// network creates the bridge with the node's address and sets the sysctls pods need.
func (n *Node) network() error {
	n.logf("creating bridge %s (%s) and setting sysctls", Bridge, NodeIP)
	for _, args := range [][]string{
		{"link", "add", Bridge, "type", "bridge"},
		{"addr", "add", NodeIP + "/16", "dev", Bridge},
		{"link", "set", Bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	// Defence in depth: nothing from the pods is forwarded beyond the node's own networks.
	for _, args := range [][]string{
		{"-N", egressChain},
		{"-A", egressChain, "-s", PodCIDR, "-d", PodCIDR, "-j", "RETURN"},
		{"-A", egressChain, "-s", PodCIDR, "-d", ServiceCIDR, "-j", "RETURN"},
		{"-A", egressChain, "-s", PodCIDR, "-j", "DROP"},
		{"-I", "FORWARD", "-j", egressChain},
	} {
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	for key, want := range hostSysctls {
		path := filepath.Join("/proc/sys", key)
		old, err := os.ReadFile(path)
		if err != nil {
			continue // not on this kernel
		}
		n.sysctl[key] = strings.TrimSpace(string(old))
		if want != "" {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", key, want, err)
			}
		}
	}
	return saveSysctls(n.dir, n.sysctl)
}

// start runs a node process with its log in the node's directory.
func (n *Node) start(name string, args ...string) error {
	logFile, err := os.Create(filepath.Join(n.dir, filepath.Base(name)+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so a stop reaches what it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	n.procs = append(n.procs, cmd)
	return appendPID(n.dir, cmd.Process.Pid)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("timed out waiting for %s", what)
}
