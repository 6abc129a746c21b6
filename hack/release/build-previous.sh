#!/usr/bin/env bash
# Rebuilds the release upgrades start from (hack/release/previous) into $1, from its
# commit checked out with git worktree, with this tree's release tool: a fresh clone can
# rebuild it, no registry or earlier artifact needed. amd64 only (the node's platform).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$1"
read -r version commit < <(grep -v '^#' "$root/hack/release/previous" | grep -m1 .)
if [[ -f "$out/release.json" ]] && grep -q "\"commit\": \"$commit\"" "$out/release.json"; then
  echo "[previous] $version ($commit) already built in $out"
  exit 0
fi
tree="$(mktemp -d)/keyferry-$version"
git -C "$root" worktree add --detach --force "$tree" "$commit" >/dev/null
trap 'git -C "$root" worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT
echo "[previous] building $version from $commit"
(cd "$root" && go run ./hack/release -previous -allow-dirty -platforms amd64 -root "$tree" -version "$version" \
  -out "$out" -helm "$root/bin/helm" -cyclonedx "$root/bin/cyclonedx-gomod")
