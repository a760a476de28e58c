#!/usr/bin/env bash
# make demo: a local control plane, the operator with embedded defaults (SQLite, in-process
# locks), the example CronConfigs, and `kubectl get cronconfigs` refreshing as runs happen.
# Ctrl-C stops everything and removes the demo's state.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.cluster/demo"
DEMO_SECONDS="${DEMO_SECONDS:-0}"   # >0: stop by itself after that many seconds (used by CI smoke runs)
mkdir -p "$DIR"
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "demo: stopping"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$ROOT/hack/cluster.sh" down "$DIR/cluster" >/dev/null 2>&1 || true
}
trap cleanup INT TERM EXIT

eval "$("$ROOT/hack/cluster.sh" up "$DIR/cluster")"
kubectl apply -f "$ROOT/crds/" >/dev/null
kubectl wait --for condition=established --timeout=30s crd/cronconfigs.sundial.io >/dev/null

python3 "$ROOT/hack/receiver.py" 8765 >"$DIR/receiver.log" 2>&1 & pids+=($!)
rm -f "$DIR/sundial.db"
(cd "$DIR" && SUNDIAL_HANDLERS=sundial.examples SUNDIAL_DATABASE_URL="sqlite:///$DIR/sundial.db" SUNDIAL_HTTP_PORT="${SUNDIAL_HTTP_PORT:-8080}" \
  exec "$ROOT/.venv/bin/sundial" run >"$DIR/operator.log" 2>&1) & pids+=($!)

for f in "$ROOT"/manifests/examples/*.yaml; do
  if [[ "$(basename "$f")" == one-shot.yaml ]]; then
    sed "s/runAt: .*/runAt: \"$(date -u -d '+30 seconds' +%Y-%m-%dT%H:%M:%SZ)\"/" "$f" | kubectl apply -f -
  else
    kubectl apply -f "$f"
  fi
done
echo "demo: operator log $DIR/operator.log, receiver log $DIR/receiver.log"
echo "demo: run history: SUNDIAL_DATABASE_URL=sqlite:///$DIR/sundial.db $ROOT/.venv/bin/sundial runs http-every-10s"
start=$(date +%s)
while :; do
  sleep 3
  echo "---- $(date -u +%H:%M:%S)  kubectl get cronconfigs"
  kubectl get cronconfigs
  if [[ "$DEMO_SECONDS" -gt 0 && $(( $(date +%s) - start )) -ge "$DEMO_SECONDS" ]]; then
    SUNDIAL_DATABASE_URL="sqlite:///$DIR/sundial.db" "$ROOT/.venv/bin/sundial" runs http-every-10s --limit 5
    break
  fi
done
