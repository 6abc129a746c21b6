package localnode

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestMissingDependenciesNameTheirPackages(t *testing.T) {
	present := map[string]bool{"containerd": true, "ip": true, "nsenter": true, "pgrep": true, "/usr/lib/cni/loopback": true}
	lookPath := func(p string) (string, error) {
		if present[p] {
			return "/usr/bin/" + p, nil
		}
		return "", errors.New("not found")
	}
	stat := func(p string) (os.FileInfo, error) {
		if present[p] {
			return nil, nil
		}
		return nil, os.ErrNotExist
	}
	err := dependencyError(missingDependencies(dependencies, lookPath, stat))
	if err == nil {
		t.Fatal("no error for a machine without runc, the CNI plugins, iptables and conntrack")
	}
	msg := err.Error()
	if !strings.Contains(msg, "apt-get install -y runc containernetworking-plugins iptables conntrack") {
		t.Errorf("the install line does not list each missing package once:\n%s", msg)
	}
	for _, want := range []string{"runc (containerd's OCI runtime)", "/usr/lib/cni/bridge", "conntrack"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "package containerd") || strings.Contains(msg, "loopback") {
		t.Errorf("message names what is present:\n%s", msg)
	}
	all := func(string) (string, error) { return "/x", nil }
	allStat := func(string) (os.FileInfo, error) { return nil, nil }
	if err := dependencyError(missingDependencies(dependencies, all, allStat)); err != nil {
		t.Errorf("a complete machine: %v", err)
	}
}
