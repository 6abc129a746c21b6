#!/usr/bin/env bash
# Copies the generated CRDs (config/crd/bases) into the Helm chart as templates, so they are
# installed and upgraded with the release (Helm's crds/ directory is never upgraded), behind
# crds.install and, with crds.keep, kept on uninstall. Run by `make manifests`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/charts/keyferry/templates/crds"
rm -rf "$out"
mkdir -p "$out"
for f in "$root"/config/crd/bases/*.yaml; do
  {
    echo "{{- if .Values.crds.install }}"
    # Descriptions quote Go templates ({{ .DB_USER }}): escape them from Helm's.
    awk '
      { gsub(/\{\{/, "{{ \"{{\" }}") }
      /^  annotations:$/ && !done {
        print
        print "    {{- if .Values.crds.keep }}"
        print "    helm.sh/resource-policy: keep"
        print "    {{- end }}"
        done = 1
        next
      }
      /^  name: / && !named {
        print "  labels:"
        print "    {{- include \"keyferry.labels\" . | nindent 4 }}"
        named = 1
      }
      { print }
    ' "$f"
    echo "{{- end }}"
  } >"$out/$(basename "$f")"
done
