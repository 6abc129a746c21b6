package localnode

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Stop stops the node and the control plane and restores the host: processes, pod
// containers and cgroups, iptables chains, mounts, the bridge and the sysctls.
func (n *Node) Stop() {
	if n.dir != "" {
		n.logf("stopping and restoring the host")
		teardown(n.dir, n.logf)
	}
	if n.Stack != nil {
		n.Stack.Stop()
	}
	if n.dir != "" {
		keepLogs(n.dir)
		_ = os.RemoveAll(n.dir)
		_ = os.Remove(statePath)
	}
	if n.lock != nil {
		_ = n.lock.Close()
	}
}

// cleanupStale tears down what a run that did not stop left behind.
func cleanupStale(logf func(string, ...any)) error {
	raw, err := os.ReadFile(statePath)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	dir := strings.TrimSpace(string(raw))
	logf("an earlier node did not stop (%s): cleaning up", dir)
	teardown(dir, logf)
	_ = os.RemoveAll(dir)
	return os.Remove(statePath)
}

// teardown undoes a node's changes to the host, whatever state it is in.
func teardown(dir string, logf func(string, ...any)) {
	// 1. The node's own processes (process groups: containerd, kubelet, kube-proxy, ...).
	for _, pid := range readPIDs(dir) {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
	}
	time.Sleep(time.Second)
	for _, pid := range readPIDs(dir) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	// 2. Pod processes and containerd shims: whatever still runs in the kubepods cgroups
	// or names the node's directory.
	killCgroupTree("kubepods")
	if out, err := exec.Command("pgrep", "-f", dir).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	removeCgroupTree("kubepods")
	// 3. The iptables rules of kube-proxy and the kubelet are in the node's namespace,
	// and go with it (5).
	// 4. Mounts under the node's directory (pod volumes, network namespaces, the kubelet's
	// root), deepest first.
	for _, m := range mountsUnder(dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			logf("unmount %s: %v", m, err)
		}
	}
	// 5. The namespace, with its bridge, veth end, routes and iptables rules; the host's
	// veth end and routes go with it.
	_ = exec.Command("ip", "netns", "del", Netns).Run()
	_ = exec.Command("ip", "link", "del", HostVeth).Run()
	// 6. Sysctls back to what they were.
	for key, v := range loadSysctls(dir) {
		if v != "" {
			_ = os.WriteFile(filepath.Join("/proc/sys", key), []byte(v), 0o644)
		}
	}
}

func appendPID(dir string, pid int) error {
	f, err := os.OpenFile(filepath.Join(dir, "pids"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(strconv.Itoa(pid) + "\n")
	return err
}

func readPIDs(dir string) []int {
	raw, _ := os.ReadFile(filepath.Join(dir, "pids"))
	var out []int
	for _, f := range strings.Fields(string(raw)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			out = append(out, pid)
		}
	}
	return out
}

func saveSysctls(dir string, m map[string]string) error {
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "sysctls.json"), raw, 0o600)
}

func loadSysctls(dir string) map[string]string {
	m := map[string]string{}
	raw, err := os.ReadFile(filepath.Join(dir, "sysctls.json"))
	if err == nil {
		_ = json.Unmarshal(raw, &m)
	}
	return m
}

// cgroupRoots are the cgroup v1 hierarchies (and the v2 root) mounted on this machine.
func cgroupRoots() []string {
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	return append(out, "/sys/fs/cgroup")
}

// killCgroupTree kills every process in the named cgroup subtree of every hierarchy.
func killCgroupTree(name string) {
	for _, root := range cgroupRoots() {
		_ = filepath.WalkDir(filepath.Join(root, name), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			raw, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(raw)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
}

// removeCgroupTree removes the named cgroup subtree, leaves first.
func removeCgroupTree(name string) {
	for _, root := range cgroupRoots() {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(root, name), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs)
		for _, d := range dirs {
			_ = os.Remove(d)
		}
	}
}

// mountsUnder lists the mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// keepLogs copies the node's logs to LogsDir (the node's directory goes).
func keepLogs(dir string) {
	_ = os.RemoveAll(LogsDir())
	_ = os.MkdirAll(LogsDir(), 0o755)
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		if raw, err := os.ReadFile(l); err == nil {
			_ = os.WriteFile(filepath.Join(LogsDir(), filepath.Base(l)), raw, 0o644)
		}
	}
}
