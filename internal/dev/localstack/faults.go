package localstack

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The faults a soak injects into the control plane. envtest starts etcd and kube-apiserver
// as children of this process and keeps their handles to itself, so they are found by
// parent and name in /proc.

// childProcess is the pid of this process's child named comm.
func childProcess(comm string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	me := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		j := bytes.IndexByte(stat, '(')
		if i < 0 || j < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && string(stat[j+1:i]) == comm && f[1] == strconv.Itoa(me) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no child process %s of %d", comm, me)
}

// PauseEtcd stops etcd (SIGSTOP) for d and lets it go on (SIGCONT): kube-apiserver's
// requests hang meanwhile, as with a stalled disk.
func (s *Stack) PauseEtcd(d time.Duration) error {
	pid, err := childProcess("etcd")
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("pausing etcd: %w", err)
	}
	time.Sleep(d)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		return fmt.Errorf("resuming etcd: %w", err)
	}
	return nil
}

// RestartAPIServer stops kube-apiserver (SIGTERM, as an upgrade of the control plane does)
// and starts it again with the same binary, flags and certificates, then waits until it is
// ready. Clients keep their credentials; watches end and must be resumed.
func (s *Stack) RestartAPIServer(ctx context.Context) error {
	s.mu.Lock()
	old := s.apiserver
	s.mu.Unlock()
	var pid int
	var err error
	if old != nil {
		pid = old.Process.Pid
	} else if pid, err = childProcess("kube-apiserver"); err != nil {
		return err
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return err
	}
	args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")[1:]
	if err := stopPID(pid, old, 20*time.Second); err != nil {
		return fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	logFile, err := os.OpenFile(filepath.Join(s.Dir, "kube-apiserver-restarted.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	s.mu.Lock()
	s.apiserver = cmd
	s.mu.Unlock()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := s.Kubectl(ctx, "get", "--raw", "/readyz"); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready 2m after its restart (log: %s)", logFile.Name())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// stopPID sends SIGTERM to pid and, when it has not exited within grace (kube-apiserver
// drains its requests first), SIGKILL; cmd, when not nil, is its handle here (else another
// goroutine reaps it: envtest's).
func stopPID(pid int, cmd *exec.Cmd, grace time.Duration) error {
	done := make(chan struct{})
	if cmd != nil {
		go func() { _ = cmd.Wait(); close(done) }()
	} else {
		go func() {
			for alive(pid) {
				time.Sleep(100 * time.Millisecond)
			}
			close(done)
		}()
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(grace):
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("pid %d still runs 30s after SIGKILL", pid)
	}
}

// alive says whether pid runs (a zombie waiting to be reaped does not).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
