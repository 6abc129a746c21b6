# Sourced by hack/build-control-plane.sh and hack/build-node.sh: builds Kubernetes commands
# from the Go module sources of k8s.io/kubernetes (no binary downloads are possible here),
# in a throwaway module outside the repository. k8s.io/kubernetes refers to its staging
# modules through ./staging replaces that only work inside its own repository, so the
# throwaway go.mod replaces each of them with the published k8s.io/<name> v0.X.Y.
#
# The caller sets root and a log function; this sets api_version, kube_version, cache_root.

api_version=$(cd "$root" && go list -m -f '{{.Version}}' k8s.io/api)
kube_version="v1.${api_version#v0.}"
cache_root="${KEYFERRY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyferry}"

# kube_module NAME PKG... writes, in the current directory, the throwaway module NAME that
# requires k8s.io/kubernetes and imports PKG... (so that `go mod tidy` resolves them).
kube_module() {
  local name=$1
  shift
  export GOFLAGS="${GOFLAGS:-} -mod=mod"
  export GOWORK=off
  export CGO_ENABLED=0
  local kmod go_directive
  kmod=$(go mod download -json "k8s.io/kubernetes@$kube_version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [[ -f "$kmod" ]] || { log "could not download k8s.io/kubernetes@$kube_version"; return 1; }
  go_directive=$(sed -n 's/^go //p' "$kmod" | head -1)
  {
    echo "module keyferry.dev/throwaway/$name"
    echo
    echo "go $go_directive"
    echo
    echo "require k8s.io/kubernetes $kube_version"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*#\t\1 => \1 '"${api_version}"'#p' "$kmod"
    echo ")"
  } >go.mod
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    local pkg
    for pkg in "$@"; do
      echo "	_ \"$pkg\""
    done
    echo ")"
  } >tools.go
}

# kube_build NAME PKG OUT builds PKG as OUT/NAME with the version stamped as a release
# build does, printing progress (a long, silent compile is visibly alive).
kube_build() {
  local name=$1 pkg=$2 out=$3 start=$SECONDS minor pkgvar
  local ldflags="-s -w"
  minor=${kube_version#v1.}
  minor=${minor%%.*}
  for pkgvar in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkgvar.gitVersion=$kube_version -X $pkgvar.gitMajor=1 -X $pkgvar.gitMinor=$minor"
    ldflags+=" -X $pkgvar.gitTreeState=clean -X $pkgvar.buildDate=1970-01-01T00:00:00Z"
  done
  log "building $name ..."
  ( while sleep 60; do log "  still building $name ($((SECONDS - start))s)"; done ) &
  local ticker=$!
  go build -trimpath -ldflags "$ldflags" -o "$out/$name" "$pkg" >&2 || { kill "$ticker"; return 1; }
  kill "$ticker" 2>/dev/null || true
  log "built $name in $((SECONDS - start))s"
}

# kube_install FROM DEST moves the built binaries into the cache at once (a reader never
# sees half a set).
kube_install() {
  local from=$1 dest=$2
  mkdir -p "$dest.tmp"
  mv "$from"/* "$dest.tmp"/
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
  log "cached in $dest"
}
