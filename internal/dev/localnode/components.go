package localnode

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// containerdConfig is containerd 1.6's configuration for the node: its own root, state and
// socket; cgroupfs; no AppArmor; the OOM score restricted (the VM lacks CAP_SYS_RESOURCE:
// without it every sandbox fails with "can't get final child's PID from pipe: EOF"); pod
// network namespaces under its state dir; the Debian CNI plugins; the local pause image.
const containerdConfig = `version = 2
root = "%[1]s/containerd/root"
state = "%[1]s/containerd/state"
[grpc]
  address = "%[1]s/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "%[2]s"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "%[1]s/containerd/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "%[1]s/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
`

// cniConfig puts pods on the node's bridge; no masquerade and no default route: pods reach
// each other (the bridge), the Services (through the bridge's address, where kube-proxy
// translates them) and the host's end of the veth (kube-apiserver; the tests), never
// beyond.
const cniConfig = `{
  "cniVersion": "0.4.0",
  "name": "keyferry-node",
  "plugins": [
    {"type": "bridge", "bridge": "%[1]s", "isGateway": false, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "%[2]s", "rangeStart": "10.88.1.1", "gateway": "%[3]s"}]],
              "routes": [{"dst": "%[4]s", "gw": "%[3]s"}, {"dst": "%[5]s", "gw": "%[3]s"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`

// kubeletConfig: cgroupfs and cgroup v1 (this machine's hybrid mount), the node's
// containerd, logs and state in the node's directory, anonymous read of the kubelet API
// only from its own address.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[2]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
syncFrequency: 10s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%[1]s/containerd/containerd.sock
podLogsDir: %[1]s/pod-logs
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
clusterDomain: cluster.local
resolvConf: ""
serializeImagePulls: false
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
cgroupsPerQOS: true
enforceNodeAllocatable: []
`

func (n *Node) startContainerd(ctx context.Context) error {
	n.logf("starting containerd (%s)", n.dir)
	for _, d := range []string{"containerd", "cni/net.d", "pod-logs", "kubelet"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return err
		}
	}
	cfg := filepath.Join(n.dir, "containerd", "config.toml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, containerdConfig, n.dir, SandboxImage), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.dir, "cni", "net.d", "10-keyferry.conflist"), fmt.Appendf(nil, cniConfig, Bridge, PodCIDR, BridgeIP, ServiceCIDR, LinkCIDR), 0o644); err != nil {
		return err
	}
	n.Containerd = filepath.Join(n.dir, "containerd", "containerd.sock")
	return n.runContainerd(ctx, cfg)
}

// runContainerd starts containerd with cfg and waits until it answers on its socket.
func (n *Node) runContainerd(ctx context.Context, cfg string) error {
	if err := n.start(true, "containerd", "--config", cfg); err != nil {
		return err
	}
	n.containerd = n.procs[len(n.procs)-1]
	return waitFor(30*time.Second, "containerd's socket", func() bool {
		return exec.CommandContext(ctx, "ctr", "--address", n.Containerd, "version").Run() == nil
	})
}

// ctr runs ctr against the node's containerd, in the namespace the kubelet uses.
func (n *Node) ctr(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", n.Containerd, "--namespace", "k8s.io"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (n *Node) startKubelet() error {
	n.logf("starting kubelet (node %s at %s)", NodeName, NodeIP)
	cfg := filepath.Join(n.dir, "kubelet-config.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, kubeletConfig, n.dir, NodeIP), 0o644); err != nil {
		return err
	}
	return n.start(true, filepath.Join(n.bins, "kubelet"),
		"--config", cfg,
		"--kubeconfig", n.Kubeconfig,
		"--root-dir", filepath.Join(n.dir, "kubelet"),
		"--hostname-override", NodeName,
		"--node-ip", NodeIP,
		"--v=1")
}

func (n *Node) startProxyAndScheduler() error {
	n.logf("starting kube-proxy (iptables) and kube-scheduler")
	if err := n.start(true, filepath.Join(n.bins, "kube-proxy"),
		"--kubeconfig", n.Kubeconfig,
		"--hostname-override", NodeName,
		"--cluster-cidr", PodCIDR,
		"--proxy-mode", "iptables",
		"--metrics-bind-address", freeAddr(),
		"--healthz-bind-address", freeAddr(),
		// Leave conntrack sysctls as they are (the container may not set them).
		"--conntrack-max-per-core", "0",
		"--v=1"); err != nil {
		return err
	}
	return n.start(false, filepath.Join(n.bins, "kube-scheduler"),
		"--kubeconfig", n.Kubeconfig,
		"--leader-elect=false",
		"--secure-port", "0",
		"--v=1")
}

// freeAddr is a loopback address with a port free right now.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer l.Close()
	return l.Addr().String()
}

// hostsTLSTOML makes containerd reach one registry over HTTPS with a CA of its own.
const hostsTLSTOML = `server = "https://%[1]s"
[host."https://%[1]s"]
  capabilities = ["pull", "resolve"]
  ca = "%[2]s"
`

// hostsTOML makes containerd reach one registry over plain HTTP (a test registry on the
// host's end of the veth).
const hostsTOML = `server = "http://%[1]s"
[host."http://%[1]s"]
  capabilities = ["pull", "resolve"]
`

// TrustPlainHTTPRegistry lets the node pull from the registry at hostport (on HostIP) over
// plain HTTP; containerd reads it at the next pull.
func (n *Node) TrustPlainHTTPRegistry(hostport string) error {
	return n.trustRegistry(hostport, fmt.Sprintf(hostsTOML, hostport))
}

// TrustRegistry lets the node pull from the registry at hostport (on HostIP) over HTTPS,
// verifying it against caPEM (a CA the test stack made); containerd reads it at the next
// pull.
func (n *Node) TrustRegistry(hostport string, caPEM []byte) error {
	dir := filepath.Join(n.dir, "containerd", "certs.d", hostport)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, caPEM, 0o644); err != nil {
		return err
	}
	return n.trustRegistry(hostport, fmt.Sprintf(hostsTLSTOML, hostport, ca))
}

func (n *Node) trustRegistry(hostport, hosts string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil || host != HostIP {
		return fmt.Errorf("registry %s: the node trusts registries only on %s, the host's end of its veth", hostport, HostIP)
	}
	dir := filepath.Join(n.dir, "containerd", "certs.d", hostport)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644)
}
