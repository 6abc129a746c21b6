#!/usr/bin/env bash
# Builds the local node's Kubernetes binaries (kubelet, kube-scheduler, kube-proxy) from Go
# module sources, exactly as hack/build-control-plane.sh builds kube-apiserver (the same
# throwaway module and staging replaces), and caches them per Kubernetes version beside it.
# Only the node tests need them (make test-cluster); kubelet takes ~6 min cold on 2 cores.
#
# Prints the directory holding the three binaries on stdout (progress goes to stderr).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
api_version=$(cd "$root" && go list -m -f '{{.Version}}' k8s.io/api)
kube_version="v1.${api_version#v0.}"
cache_root="${KEYFERRY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyferry}"
dest="$cache_root/node/$kube_version"

log() { printf '[node] %s\n' "$*" >&2; }

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
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export GOWORK=off
export CGO_ENABLED=0

kmod=$(go mod download -json "k8s.io/kubernetes@$kube_version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[[ -f "$kmod" ]] || { log "could not download k8s.io/kubernetes@$kube_version"; exit 1; }
go_directive=$(sed -n 's/^go //p' "$kmod" | head -1)
{
  echo "module keyferry.dev/throwaway/node"
  echo
  echo "go $go_directive"
  echo
  echo "require k8s.io/kubernetes $kube_version"
  echo
  echo "replace ("
  sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*#\t\1 => \1 '"${api_version}"'#p' "$kmod"
  echo ")"
} >go.mod
cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
log "resolving modules"
go mod tidy >&2

ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  minor=${kube_version#v1.}; minor=${minor%%.*}
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
out="$work/bin"
mkdir -p "$out"
build() {
  local name=$1 pkg=$2 start=$SECONDS
  log "building $name ..."
  ( while sleep 60; do log "  still building $name ($((SECONDS - start))s)"; done ) &
  local ticker=$!
  go build -trimpath -ldflags "$ldflags" -o "$out/$name" "$pkg" >&2 || { kill "$ticker"; return 1; }
  kill "$ticker" 2>/dev/null || true
  log "built $name in $((SECONDS - start))s"
}
build kubelet k8s.io/kubernetes/cmd/kubelet
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kube-proxy k8s.io/kubernetes/cmd/kube-proxy

mkdir -p "$dest"
cp "$out"/* "$dest/"
log "cached in $dest"
echo "$dest"
