// Package localnode runs a real Kubernetes node on this machine for development and tests:
// containerd (Debian's, with its own root, state and socket), runc and the CNI bridge
// plugin, and kubelet, kube-proxy and kube-scheduler built from the same module sources as
// the local control plane (hack/build-node.sh).
//
// The node lives in a network namespace of its own (kfnode), joined to the host by a veth
// pair (10.89.0.1 on the host, 10.89.0.2 the node's address): its bridge (kfbr0), its pods
// (10.88.0.0/16), its Services (10.0.0.0/24) and kube-proxy's and the kubelet's iptables
// rules are all inside it, and it has no default route, so nothing the project runs can
// send traffic anywhere but loopback, that namespace and the veth pair. kube-apiserver
// listens on the host end of the veth, where pods reach it through the kubernetes Service.
// The ranges are checked at start against the machine's routes.
//
// Only development uses it: it needs root, holds a machine-wide lock (one node per
// machine), and when it stops (or at the next start, after a crash) it removes the
// namespace and restores what the kubelet changed on the host (sysctls, mounts, cgroups).
package localnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/keyferry/keyferry/internal/dev/localstack"
)

const (
	// Netns is the node's network namespace.
	Netns = "kfnode"
	// HostVeth is the host's end of the veth pair joining host and node.
	HostVeth = "kfveth0"
	// NodeVeth is the node's end.
	NodeVeth = "kfveth1"
	// HostIP is the address of the host's end (kube-apiserver listens there).
	HostIP = "10.89.0.1"
	// NodeIP is the node's address, on its end.
	NodeIP = "10.89.0.2"
	// LinkCIDR is the veth pair's range.
	LinkCIDR = "10.89.0.0/30"
	// Bridge is the node's bridge (in its namespace).
	Bridge = "kfbr0"
	// BridgeIP is the bridge's address, the pods' gateway.
	BridgeIP = "10.88.0.1"
	// PodCIDR holds the pods' addresses.
	PodCIDR = "10.88.0.0/16"
	// ServiceCIDR is the Services' range (envtest's kube-apiserver default).
	ServiceCIDR = "10.0.0.0/24"
	// NodeName is the node's name.
	NodeName = "keyferry-node"
	// SandboxImage is the pause image (hack/pause) every pod sandbox runs.
	SandboxImage = "docker.io/library/keyferry-pause:dev"

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
	// containerd is the running containerd (RestartContainerd replaces it).
	containerd *exec.Cmd
}

// hostSysctls are the machine-wide values the kubelet sets itself (protectKernelDefaults
// is off): recorded at start, restored on Stop. The network ones live in the namespace.
var hostSysctls = []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"}

// nodeSysctls are set inside the node's namespace (per namespace: the host's stay as they
// are).
var nodeSysctls = map[string]string{
	"net/ipv4/ip_forward":                 "1",
	"net/bridge/bridge-nf-call-iptables":  "1",
	"net/bridge/bridge-nf-call-ip6tables": "1",
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
	if err := checkDependencies(); err != nil {
		return nil, err
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
	if err := n.network(); err != nil {
		return nil, err
	}
	st := opts.Stack
	st.APIServerAddress = HostIP
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

// network creates the node's namespace, the veth pair, the bridge inside, and the host's
// routes to the node's ranges (through the veth), after checking that no route of the
// machine overlaps them.
func (n *Node) network() error {
	if err := checkRanges(); err != nil {
		return err
	}
	n.logf("creating network namespace %s (node %s, pods %s, Services %s)", Netns, NodeIP, PodCIDR, ServiceCIDR)
	inNode := func(args ...string) []string { return append([]string{"-n", Netns}, args...) }
	for _, args := range [][]string{
		{"netns", "add", Netns},
		{"link", "add", HostVeth, "type", "veth", "peer", "name", NodeVeth, "netns", Netns},
		{"addr", "add", HostIP + "/30", "dev", HostVeth},
		{"link", "set", HostVeth, "up"},
		inNode("link", "set", "lo", "up"),
		inNode("addr", "add", NodeIP+"/30", "dev", NodeVeth),
		inNode("link", "set", NodeVeth, "up"),
		inNode("link", "add", Bridge, "type", "bridge"),
		inNode("addr", "add", BridgeIP+"/16", "dev", Bridge),
		inNode("link", "set", Bridge, "up"),
		{"route", "add", PodCIDR, "via", NodeIP, "dev", HostVeth},
		{"route", "add", ServiceCIDR, "via", NodeIP, "dev", HostVeth},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	for key, v := range nodeSysctls {
		cmd := exec.Command("nsenter", "--net=/run/netns/"+Netns, "sh", "-c", "echo "+v+" > /proc/sys/"+key)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w: %s", key, v, Netns, err, out)
		}
	}
	for _, key := range hostSysctls {
		if old, err := os.ReadFile(filepath.Join("/proc/sys", key)); err == nil {
			n.sysctl[key] = strings.TrimSpace(string(old))
		}
	}
	return saveSysctls(n.dir, n.sysctl)
}

// checkRanges refuses to start when a route of the machine overlaps the node's ranges.
func checkRanges() error {
	out, err := exec.Command("ip", "-4", "route", "show").Output()
	if err != nil {
		return fmt.Errorf("reading the machine's routes: %w", err)
	}
	ours := []string{PodCIDR, ServiceCIDR, LinkCIDR}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		dst := f[0]
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		_, theirs, err := net.ParseCIDR(dst)
		if err != nil {
			continue
		}
		for _, c := range ours {
			_, mine, _ := net.ParseCIDR(c)
			if mine.Contains(theirs.IP) || theirs.Contains(mine.IP) {
				return fmt.Errorf("the machine routes %s, which overlaps the node's range %s: the local node cannot start here", f[0], c)
			}
		}
	}
	return nil
}

// start runs a node process with its log in the node's directory; inNode runs it in the
// node's network namespace (nsenter enters only that one: mounts and cgroups are the
// host's, as a node's are).
func (n *Node) start(inNode bool, name string, args ...string) error {
	logFile, err := os.Create(filepath.Join(n.dir, filepath.Base(name)+".log"))
	if err != nil {
		return err
	}
	if inNode {
		args = append([]string{"--net=/run/netns/" + Netns, "--", name}, args...)
		name = "nsenter"
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
