#!/usr/bin/env bash
# Builds the local node's Kubernetes binaries (kubelet, kube-scheduler, kube-proxy) from Go
# module sources exactly as hack/build-control-plane.sh builds kube-apiserver (the same
# throwaway module and staging replaces: hack/lib/kube-source.sh), and caches them per
# Kubernetes version beside it. Only the node needs them (make test-cluster, make
# demo-node); kubelet takes ~6 min cold on 2 cores.
#
# Prints the directory holding the three binaries on stdout (progress goes to stderr).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[node] %s\n' "$*" >&2; }
# shellcheck source=hack/lib/kube-source.sh
source "$root/hack/lib/kube-source.sh"
dest="$cache_root/node/$kube_version"

have_all() {
  [[ -x "$dest/kubelet" && -x "$dest/kube-scheduler" && -x "$dest/kube-proxy" ]]
}

if have_all; then
  log "using cached $kube_version binaries in $dest"
  echo "$dest"
  exit 0
fi

mkdir -p "$cache_root/node"
exec 9>"$cache_root/node/.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi
if have_all; then
  echo "$dest"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/keyferry-node.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "building Kubernetes $kube_version kubelet, kube-scheduler and kube-proxy from module sources (once per machine)"
cd "$work"
kube_module node k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy
log "resolving modules"
go mod tidy >&2
mkdir -p bin
kube_build kubelet k8s.io/kubernetes/cmd/kubelet bin
kube_build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler bin
kube_build kube-proxy k8s.io/kubernetes/cmd/kube-proxy bin
kube_install bin "$dest"
echo "$dest"
