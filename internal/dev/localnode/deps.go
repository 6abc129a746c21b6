package localnode

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// dependency is a program or file the node needs from the machine, and the Debian package
// that brings it.
type dependency struct {
	what    string // a program on PATH, or an absolute path
	pkg     string
	purpose string
}

// cniDir is where Debian's containernetworking-plugins puts the plugins (containerd's
// config names it).
const cniDir = "/usr/lib/cni"

var dependencies = []dependency{
	{"containerd", "containerd", "the container runtime"},
	{"runc", "runc", "containerd's OCI runtime"},
	{filepath.Join(cniDir, "bridge"), "containernetworking-plugins", "pod networking"},
	{filepath.Join(cniDir, "host-local"), "containernetworking-plugins", "pod addresses"},
	{filepath.Join(cniDir, "portmap"), "containernetworking-plugins", "host ports"},
	{filepath.Join(cniDir, "loopback"), "containernetworking-plugins", "pods' loopback"},
	{"iptables", "iptables", "kube-proxy's Services"},
	{"conntrack", "conntrack", "kube-proxy's connection cleanup"},
	{"ip", "iproute2", "the node's network namespace and veth"},
	{"nsenter", "util-linux", "sysctls inside the node's namespace"},
	{"pgrep", "procps", "cleaning up after a crashed run"},
}

// missingDependencies lists what of deps the machine lacks; lookPath and stat stand for
// exec.LookPath and os.Stat (tests).
func missingDependencies(deps []dependency, lookPath func(string) (string, error), stat func(string) (os.FileInfo, error)) []dependency {
	var missing []dependency
	for _, d := range deps {
		var err error
		if filepath.IsAbs(d.what) {
			_, err = stat(d.what)
		} else {
			_, err = lookPath(d.what)
		}
		if err != nil {
			missing = append(missing, d)
		}
	}
	return missing
}

// checkDependencies fails at once, naming the packages to install, when the machine
// lacks what the node runs on (rather than timing out later waiting for containerd).
func checkDependencies() error {
	return dependencyError(missingDependencies(dependencies, exec.LookPath, os.Stat))
}

func dependencyError(missing []dependency) error {
	if len(missing) == 0 {
		return nil
	}
	var lines, pkgs []string
	for _, d := range missing {
		lines = append(lines, fmt.Sprintf("  %s (%s): package %s", d.what, d.purpose, d.pkg))
		if !slices.Contains(pkgs, d.pkg) {
			pkgs = append(pkgs, d.pkg)
		}
	}
	return fmt.Errorf("the local node needs what this machine lacks:\n%s\ninstall it with: apt-get update && apt-get install -y %s",
		strings.Join(lines, "\n"), strings.Join(pkgs, " "))
}
