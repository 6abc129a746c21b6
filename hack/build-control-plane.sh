#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl and etcd from Go module sources
# (no binary downloads are possible here; hack/lib/kube-source.sh) and caches them per
# Kubernetes version, so only a machine's first run pays.
#
# The Kubernetes version is derived from k8s.io/api in the project's go.mod (v0.X.Y -> v1.X.Y).
#
# Prints the directory holding the binaries on stdout (progress goes to stderr).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[control-plane] %s\n' "$*" >&2; }
# shellcheck source=hack/lib/kube-source.sh
source "$root/hack/lib/kube-source.sh"
dest="$cache_root/control-plane/$kube_version"

have_all() {
  [[ -x "$dest/kube-apiserver" && -x "$dest/kubectl" && -x "$dest/etcd" && -x "$dest/kube-controller-manager" ]]
}

if have_all; then
  log "using cached $kube_version binaries in $dest"
  echo "$dest"
  exit 0
fi

# One build per machine at a time: parallel callers wait for the first.
mkdir -p "$cache_root/control-plane"
exec 9>"$cache_root/control-plane/.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi
if have_all; then
  echo "$dest"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/keyferry-control-plane.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "building Kubernetes $kube_version (kube-apiserver, kube-controller-manager, kubectl) and etcd from module sources"
log "this happens once per machine and takes ~15 min on 2 cores; work dir $work"

cd "$work"
kube_module control-plane k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl

# etcd's server module has no main package of its own; the etcd binary's main is this call.
mkdir -p etcd
cat >etcd/main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
log "resolving modules"
go mod tidy >&2

out="$work/bin"
mkdir -p "$out"
kube_build etcd ./etcd "$out"
kube_build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$out"
kube_build kubectl k8s.io/kubernetes/cmd/kubectl "$out"
# Garbage collection and the workload controllers, so that local rollouts are real.
kube_build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$out"

kube_install "$out" "$dest"
echo "$dest"
