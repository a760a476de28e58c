#!/usr/bin/env bash
# sundial on a local kind cluster (needs Docker, kind, kubectl and helm on PATH):
#   1. creates the kind cluster (skipped if it exists),
#   2. builds the operator image and loads it into the cluster's nodes,
#   3. installs the chart with the bundled dev PostgreSQL and Redis (two active-active replicas),
#   4. applies the example CronConfigs from manifests/examples/.
#
#   hack/kind-up.sh            # cluster "sundial", image sundial:dev, namespace sundial-system
#   hack/kind-up.sh --down     # deletes the kind cluster
#
# Overrides: KIND_CLUSTER, IMAGE_REPOSITORY, IMAGE_TAG, NAMESPACE, HELM_EXTRA_ARGS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${KIND_CLUSTER:-sundial}"
REPOSITORY="${IMAGE_REPOSITORY:-sundial}"
TAG="${IMAGE_TAG:-dev}"
NAMESPACE="${NAMESPACE:-sundial-system}"
CONTEXT="kind-$CLUSTER"

log() { echo "kind-up: $*" >&2; }

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { log "$tool is required on PATH"; exit 1; }
done

if [[ "${1:-}" == --down ]]; then
  kind delete cluster --name "$CLUSTER"
  exit 0
fi

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "kind cluster $CLUSTER exists; reusing it"
else
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --wait 120s
fi

log "building image $REPOSITORY:$TAG"
docker build -t "$REPOSITORY:$TAG" "$ROOT"
log "loading $REPOSITORY:$TAG into kind cluster $CLUSTER"
kind load docker-image "$REPOSITORY:$TAG" --name "$CLUSTER"

log "installing the chart into namespace $NAMESPACE (dev PostgreSQL and Redis)"
# shellcheck disable=SC2086  # HELM_EXTRA_ARGS is split on purpose
helm upgrade --install sundial "$ROOT/charts/sundial" --kube-context "$CONTEXT" \
  --namespace "$NAMESPACE" --create-namespace \
  --set image.repository="$REPOSITORY" --set image.tag="$TAG" --set image.pullPolicy=IfNotPresent \
  --set dev.postgresql.enabled=true --set dev.redis.enabled=true \
  --wait --timeout 5m ${HELM_EXTRA_ARGS:-}

log "starting an HTTP receiver for the http example (receiver.default.svc:8765)"
kubectl --context "$CONTEXT" apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: receiver, namespace: default, labels: {app: receiver}}
spec:
  selector: {matchLabels: {app: receiver}}
  template:
    metadata: {labels: {app: receiver}}
    spec:
      containers:
        - name: receiver
          image: python:3.11-slim
          command: [python, -u, -c]
          args:
            - |
              from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
              class H(BaseHTTPRequestHandler):
                  def _answer(self):
                      self.rfile.read(int(self.headers.get("Content-Length") or 0))
                      print(self.command, self.path, "slot", self.headers.get("X-Sundial-Slot"))
                      self.send_response(200); self.end_headers(); self.wfile.write(b'{"ok": true}')
                  do_GET = do_POST = do_PUT = _answer
              ThreadingHTTPServer(("0.0.0.0", 8765), H).serve_forever()
          ports: [{containerPort: 8765}]
---
apiVersion: v1
kind: Service
metadata: {name: receiver, namespace: default}
spec:
  selector: {app: receiver}
  ports: [{port: 8765, targetPort: 8765}]
YAML

log "applying the examples"
kubectl --context "$CONTEXT" wait --for condition=established --timeout=60s crd/cronconfigs.sundial.io
in_a_minute="$(date -u -d '+1 minute' +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -v+1M +%Y-%m-%dT%H:%M:%SZ)"
for example in "$ROOT"/manifests/examples/*.yaml; do
  # The examples are written for `make demo` (receiver on 127.0.0.1, a fixed runAt): adapt them.
  sed -e "s#http://127.0.0.1:8765/#http://receiver.default.svc:8765/#" \
      -e "s/runAt: .*/runAt: \"$in_a_minute\"/" "$example" | kubectl --context "$CONTEXT" apply -f -
done

cat >&2 <<DONE
kind-up: done. Try:
  kubectl --context $CONTEXT get cronconfigs -A -w
  kubectl --context $CONTEXT -n $NAMESPACE logs deployment/sundial -f
  kubectl --context $CONTEXT -n $NAMESPACE exec deployment/sundial -- sundial runs handler-echo -n default
  hack/kind-up.sh --down
DONE
