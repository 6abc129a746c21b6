// Package localstack runs keyferry the way users do, on one machine and without a
// cluster: a local kube-apiserver and etcd (built by hack/build-control-plane.sh), the CRDs
// installed with kubectl, the development vault and the manager as separate processes. The
// demo and the end-to-end tests both use it.
package localstack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// LocalEgressDeny is the manager's default egress deny list without loopback, so that the
// local manager reaches the local dev vault and nothing else the default refuses.
const LocalEgressDeny = "169.254.0.0/16,fe80::/10,0.0.0.0/8,100.100.100.200/32,fd00:ec2::254/128"

// Options configure a stack.
type Options struct {
	// RepoRoot is the keyferry checkout (for hack/, config/ and go build).
	RepoRoot string
	// Dir holds the kubeconfig, binaries and logs; a temporary one when empty.
	Dir string
	// VaultArgs are extra flags for the dev vault.
	VaultArgs []string
	// VaultData is the dev vault's data file; hack/devvault-data.json when empty.
	VaultData string
	// ManagerArgs are extra flags for the manager.
	ManagerArgs []string
	// ManagerEnv are extra environment variables for the manager (e.g. GOMEMLIMIT).
	ManagerEnv []string
	// Progress receives what the stack is doing; os.Stderr when nil.
	Progress io.Writer
	// APIServerAddress is where kube-apiserver listens and what it advertises (the local
	// node's bridge address, so that pods reach it); 127.0.0.1 when empty. With it, the
	// ServiceAccount admission plugin is on, so pods get their tokens.
	APIServerAddress string
}

// Stack is a running local control plane with the dev vault; the manager runs on demand.
type Stack struct {
	opts       Options
	env        *envtest.Environment
	Dir        string
	Kubeconfig string
	KubectlBin string
	VaultURL   string
	// ManagerLog is the manager's combined output (every run appends).
	ManagerLog string
	// MetricsURL is the manager's metrics endpoint while it runs.
	MetricsURL string
	// HookURL is the manager's hook listener (RefreshReceivers) while it runs.
	HookURL string

	mu                sync.Mutex
	vault             *exec.Cmd
	manager           *exec.Cmd
	replicas          []*Replica
	controllerManager *exec.Cmd
	// apiserver is kube-apiserver once RestartAPIServer started it again (before, envtest
	// holds it).
	apiserver *exec.Cmd
	ownDir    bool
	// envtestLog receives the control plane harness's own log lines.
	envtestLog *os.File
}

func (s *Stack) logf(format string, args ...any) {
	w := s.opts.Progress
	if w == nil {
		w = os.Stderr
	}
	_, _ = fmt.Fprintf(w, "[keyferry] "+format+"\n", args...)
}

// Start builds what is missing and starts the control plane and the dev vault.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	s := &Stack{opts: opts, Dir: opts.Dir}
	if s.Dir == "" {
		d, err := os.MkdirTemp("", "keyferry-local-")
		if err != nil {
			return nil, err
		}
		s.Dir, s.ownDir = d, true
	}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	// envtest logs through controller-runtime's logger; without one set, its first line
	// after 30s is a "SetLogger was never called" stack trace on the user's terminal.
	envtestLog, err := os.OpenFile(filepath.Join(s.Dir, "envtest.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	s.envtestLog = envtestLog
	ctrllog.SetLogger(zap.New(zap.WriteTo(envtestLog)))
	s.logf("local control plane: building it once per machine if needed (hack/build-control-plane.sh)")
	assets, err := s.controlPlane(ctx)
	if err != nil {
		return nil, err
	}
	s.KubectlBin = filepath.Join(assets, "kubectl")
	s.logf("building the manager and the dev vault")
	for _, b := range []struct{ name, pkg string }{{"manager", "./cmd/manager"}, {"devvault", "./hack/devvault"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(s.Dir, "bin", b.name), b.pkg)
		cmd.Dir = opts.RepoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	s.logf("starting etcd and kube-apiserver")
	s.env = &envtest.Environment{BinaryAssetsDirectory: assets}
	if addr := opts.APIServerAddress; addr != "" {
		api := s.env.ControlPlane.GetAPIServer()
		// envtest keeps the address only with a port (else it picks both on loopback).
		l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			return nil, fmt.Errorf("no free port on %s: %w", addr, err)
		}
		api.Port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		_ = l.Close()
		api.Address = addr
		// Pods dial the kubernetes Service's address (the first of envtest's 10.0.0.0/24).
		api.CertDir = filepath.Join(s.Dir, "apiserver-certs")
		ca, err := writeServingCert(api.CertDir, net.ParseIP(addr), net.IPv4(10, 0, 0, 1))
		if err != nil {
			return nil, err
		}
		api.CA = ca
		args := api.Configure()
		args.Set("advertise-address", addr)
		// envtest turns ServiceAccount admission off (it has no node); pods need it.
		args.Disable("disable-admission-plugins")
		// Reach the kubelet (logs, exec) at its address, never through a DNS lookup.
		args.Set("kubelet-preferred-address-types", "InternalIP")
	}
	if _, err := s.env.Start(); err != nil {
		return nil, fmt.Errorf("starting the local control plane: %w", err)
	}
	user, err := s.env.AddUser(envtest.User{Name: "keyferry-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	s.Kubeconfig = filepath.Join(s.Dir, "kubeconfig")
	if err := os.WriteFile(s.Kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	s.logf("installing the CRDs with kubectl")
	if _, err := s.Kubectl(ctx, "apply", "--server-side", "-f", filepath.Join(opts.RepoRoot, "config", "crd", "bases")); err != nil {
		return nil, err
	}
	if _, err := s.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		return nil, err
	}
	if _, err := s.Kubectl(ctx, "create", "namespace", "keyferry-system"); err != nil {
		return nil, err
	}
	if err := s.startControllerManager(assets); err != nil {
		return nil, err
	}
	if err := s.startVault(); err != nil {
		return nil, err
	}
	s.ManagerLog = filepath.Join(s.Dir, "manager.log")
	ok = true
	return s, nil
}

func (s *Stack) controlPlane(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.opts.RepoRoot, "hack", "build-control-plane.sh"))
	cmd.Dir = s.opts.RepoRoot
	cmd.Stderr = s.opts.Progress
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building the local control plane: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// localControllers are the kube-controller-manager controllers that make sense without
// nodes: garbage collection (Owner Secrets go with their binding), the workload controllers
// (rollouts are real), namespace lifecycle and ServiceAccount tokens.
var localControllers = []string{"garbage-collector-controller", "deployment-controller", "replicaset-controller",
	"statefulset-controller", "daemonset-controller", "namespace-controller", "serviceaccount-controller",
	"serviceaccount-token-controller", "root-ca-certificate-publisher-controller", "node-lifecycle-controller",
	"endpointslice-controller"}

// startControllerManager runs kube-controller-manager against the local apiserver, signing
// ServiceAccount tokens with the apiserver's own key.
func (s *Stack) startControllerManager(assets string) error {
	s.logf("starting kube-controller-manager (%s)", strings.Join(localControllers, ", "))
	logFile, err := os.Create(filepath.Join(s.Dir, "kube-controller-manager.log"))
	if err != nil {
		return err
	}
	// The apiserver's serving CA, which the root CA publisher puts in every namespace
	// (kube-root-ca.crt, mounted into pods).
	rootCA := filepath.Join(s.Dir, "apiserver-ca.crt")
	if err := os.WriteFile(rootCA, s.env.ControlPlane.APIServer.CA, 0o644); err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig", s.Kubeconfig,
		"--root-ca-file", rootCA,
		"--controllers", strings.Join(localControllers, ","),
		"--service-account-private-key-file", filepath.Join(s.env.ControlPlane.APIServer.CertDir, "sa-signer.key"),
		"--use-service-account-credentials=false",
		"--leader-elect=false",
		"--secure-port=0",
		// Quick garbage collection and rollouts, for a local stack.
		"--concurrent-gc-syncs=5", "--concurrent-deployment-syncs=5")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	s.controllerManager = cmd
	return nil
}

func (s *Stack) startVault() error {
	data := s.opts.VaultData
	if data == "" {
		data = filepath.Join(s.opts.RepoRoot, "hack", "devvault-data.json")
	}
	args := append([]string{"--listen", "127.0.0.1:0", "--data", data}, s.opts.VaultArgs...)
	cmd := exec.Command(filepath.Join(s.Dir, "bin", "devvault"), args...)
	logFile, err := os.Create(filepath.Join(s.Dir, "devvault.log"))
	if err != nil {
		return err
	}
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.vault = cmd
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return fmt.Errorf("dev vault did not start: %w", err)
	}
	s.VaultURL = strings.TrimSpace(strings.TrimPrefix(line, "devvault listening on "))
	go func() { _, _ = io.Copy(logFile, stdout) }()
	s.logf("dev vault (development tool) at %s", s.VaultURL)
	return nil
}

// Kubectl runs the real kubectl against the stack and returns its stdout.
func (s *Stack) Kubectl(ctx context.Context, args ...string) (string, error) {
	return s.KubectlIn(ctx, "", args...)
}

// KubectlIn runs kubectl with stdin.
func (s *Stack) KubectlIn(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.KubectlBin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.Kubeconfig)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// StartManager runs the manager binary against the stack.
func (s *Stack) StartManager(extraArgs ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.manager != nil {
		return errors.New("the manager is already running")
	}
	r, err := s.launch(extraArgs)
	if err != nil {
		return err
	}
	s.manager, s.MetricsURL, s.HookURL = r.cmd, r.MetricsURL, r.HookURL
	return nil
}

// Replica is a further manager process (high-availability tests).
type Replica struct {
	cmd *exec.Cmd
	// MetricsURL is its plain-HTTP metrics endpoint.
	MetricsURL string
	// HookURL is its hook listener (plain HTTP on loopback), without a path.
	HookURL string
}

// Stop ends the replica (SIGTERM, then SIGKILL after 10s).
func (r *Replica) Stop() { stopProcess(r.cmd) }

// PID is the replica's process id.
func (r *Replica) PID() int { return r.cmd.Process.Pid }

// StartReplica runs one more manager process beside StartManager's; Stop ends it too.
func (s *Stack) StartReplica(extraArgs ...string) (*Replica, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.launch(extraArgs)
	if err != nil {
		return nil, err
	}
	s.replicas = append(s.replicas, r)
	return r, nil
}

func (s *Stack) launch(extraArgs []string) (*Replica, error) {
	metrics, err := freePort()
	if err != nil {
		return nil, err
	}
	probes, err := freePort()
	if err != nil {
		return nil, err
	}
	hooks, err := freePort()
	if err != nil {
		return nil, err
	}
	// The hook listener on loopback over plain HTTP: a local stack has no ingress to
	// terminate TLS, and nothing outside this machine can reach it.
	args := append([]string{"--namespace", "keyferry-system", "--egress-deny-cidrs", LocalEgressDeny,
		"--metrics-bind-address", "127.0.0.1:" + strconv.Itoa(metrics),
		"--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(probes),
		"--webhook-bind-address", "127.0.0.1:" + strconv.Itoa(hooks), "--webhook-allow-http"}, s.opts.ManagerArgs...)
	args = append(args, extraArgs...)
	logFile, err := os.OpenFile(s.ManagerLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(s.Dir, "bin", "manager"), args...)
	cmd.Env = append(append(os.Environ(), s.opts.ManagerEnv...), "KUBECONFIG="+s.Kubeconfig)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &Replica{cmd: cmd, MetricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics), HookURL: fmt.Sprintf("http://127.0.0.1:%d", hooks)}
	if err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/healthz", probes), 30*time.Second); err != nil {
		stopProcess(cmd)
		return nil, err
	}
	return r, nil
}

// StopManager stops the manager (SIGTERM, then SIGKILL after 10s).
func (s *Stack) StopManager() {
	s.mu.Lock()
	defer s.mu.Unlock()
	stopProcess(s.manager)
	s.manager = nil
}

// ManagerPID returns the manager's process id, 0 when it is not running.
func (s *Stack) ManagerPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.manager == nil {
		return 0
	}
	return s.manager.Process.Pid
}

// Stop ends every process the stack started and removes its temporary directory.
func (s *Stack) Stop() {
	s.StopManager()
	s.mu.Lock()
	for _, r := range s.replicas {
		r.Stop()
	}
	s.replicas = nil
	s.mu.Unlock()
	stopProcess(s.vault)
	s.vault = nil
	stopProcess(s.controllerManager)
	s.controllerManager = nil
	stopProcess(s.apiserver)
	s.apiserver = nil
	if s.env != nil {
		_ = s.env.Stop()
		s.env = nil
	}
	if s.envtestLog != nil {
		_ = s.envtestLog.Close()
		s.envtestLog = nil
	}
	if s.ownDir && os.Getenv("KEYFERRY_KEEP_DIR") == "" {
		_ = os.RemoveAll(s.Dir)
	}
}

func stopProcess(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url) //nolint:noctx // a short local poll
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v", url, timeout)
}
