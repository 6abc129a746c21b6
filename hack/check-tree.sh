#!/usr/bin/env bash
# Fails when the tree carries what belongs in no commit: a build output (an ELF binary), a
# file over 1 MiB outside testdata/ and docs/, or a go.mod that `go mod tidy` would change
# (a direct import listed as indirect, a requirement nothing uses).
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r -d '' f; do
  [[ -f "$f" ]] || continue
  case "$f" in */testdata/*|testdata/*|docs/*) continue ;; esac
  if [[ "$(head -c4 "$f" | od -An -c | tr -d ' ')" == '177ELF' ]]; then
    echo "tracked build output (ELF binary): $f"; bad=1
  elif (( $(stat -c %s "$f") > 1048576 )); then
    echo "tracked file over 1 MiB outside testdata/ and docs/: $f"; bad=1
  fi
done < <(git ls-files -z)
if ! out=$(go mod tidy -diff 2>&1); then
  echo "go mod tidy would change go.mod/go.sum; run it and commit the result:"
  echo "$out"; bad=1
fi
exit "$bad"
