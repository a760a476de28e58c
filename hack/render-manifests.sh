#!/usr/bin/env bash
# Generates the plain manifests from the Helm chart (`make manifests`); never edit them by hand.
#
#   hack/render-manifests.sh            copy crds/ into the chart, write manifests/install.yaml
#   hack/render-manifests.sh --stdout   print what manifests/install.yaml should contain (the test
#                                       that fails when it is stale compares with this)
#
# manifests/install.yaml = namespace sundial-system + the chart's defaults: the CRD, RBAC
# (cluster-wide), ServiceAccount, Deployment (embedded SQLite, one replica), PDB, metrics Service.
# HELM may name the helm binary; by default the one hack/build-binaries.sh builds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/charts/sundial"
NAMESPACE=sundial-system
HELM="${HELM:-$("$ROOT/hack/build-binaries.sh")/helm}"

render() {
  cat <<HEADER
# sundial: plain Kubernetes manifests, generated from charts/sundial by hack/render-manifests.sh
# (\`make manifests\`). Do not edit: change the chart and regenerate.
#
#   kubectl apply -f manifests/install.yaml
#
# Installs into namespace $NAMESPACE: the CronConfig CRD, a ServiceAccount with cluster-wide
# least-privilege RBAC, and one operator replica with an embedded SQLite run history. For
# PostgreSQL, Redis, several replicas or namespaced RBAC use the Helm chart (docs/install.md).
---
apiVersion: v1
kind: Namespace
metadata:
  name: $NAMESPACE
  labels:
    app.kubernetes.io/name: sundial
    app.kubernetes.io/part-of: sundial
HEADER
  "$HELM" template sundial "$CHART" --namespace "$NAMESPACE" --kube-version 1.33.0 \
    --set crds.enabled=true --set dev.postgresql.enabled=false --set dev.redis.enabled=false
}

if [[ "${1:-}" == --stdout ]]; then
  render
  exit 0
fi
cp "$ROOT/crds/cronconfigs.sundial.io.yaml" "$CHART/files/crd-cronconfigs.yaml"
out="$ROOT/manifests/install.yaml"
render > "$out.tmp"
mv "$out.tmp" "$out"
echo "render-manifests: wrote ${out#"$ROOT"/} and charts/sundial/files/crd-cronconfigs.yaml" >&2
