#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from Go module sources (no binary downloads are
# possible here) and caches them per Kubernetes version, so only a machine's first run pays.
#
# The Kubernetes version is derived from k8s.io/api in the project's go.mod (v0.X.Y -> v1.X.Y).
# The build happens in a throwaway module outside the repository: k8s.io/kubernetes refers to
# its staging modules through ./staging replaces that only work inside its own repository, so
# the throwaway go.mod replaces each of them with the published k8s.io/<name> v0.X.Y.
#
# Prints the directory holding the three binaries on stdout (progress goes to stderr).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
api_version=$(cd "$root" && go list -m -f '{{.Version}}' k8s.io/api)
kube_version="v1.${api_version#v0.}"
cache_root="${KEYFERRY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyferry}"
dest="$cache_root/control-plane/$kube_version"

log() { printf '[control-plane] %s\n' "$*" >&2; }

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
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export GOWORK=off
export CGO_ENABLED=0

kmod=$(go mod download -json "k8s.io/kubernetes@$kube_version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[[ -f "$kmod" ]] || { log "could not download k8s.io/kubernetes@$kube_version"; exit 1; }
go_directive=$(sed -n 's/^go //p' "$kmod" | head -1)

{
  echo "module keyferry.dev/throwaway/control-plane"
  echo
  echo "go $go_directive"
  echo
  echo "require k8s.io/kubernetes $kube_version"
  echo
  echo "replace ("
  sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*#\t\1 => \1 '"${api_version}"'#p' "$kmod"
  echo ")"
} >go.mod

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
cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
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
  # A ticker so a long, silent compile is visibly alive.
  ( while sleep 60; do log "  still building $name ($((SECONDS - start))s)"; done ) &
  local ticker=$!
  go build -trimpath -ldflags "$ldflags" -o "$out/$name" "$pkg" >&2 || { kill "$ticker"; return 1; }
  kill "$ticker" 2>/dev/null || true
  log "built $name in $((SECONDS - start))s"
}
build etcd ./etcd
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kubectl k8s.io/kubernetes/cmd/kubectl
# Garbage collection and the workload controllers, so that local rollouts are real.
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager

mkdir -p "$dest.tmp"
mv "$out"/* "$dest.tmp"/
rm -rf "$dest"
mv "$dest.tmp" "$dest"
log "cached in $dest"
echo "$dest"
