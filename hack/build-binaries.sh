#!/usr/bin/env bash
# Builds (once) and caches the real control-plane binaries the tests and `make demo` use:
# etcd, kube-apiserver, kube-controller-manager and helm, all from the Go module proxy.
# Prints the cache directory. A second run finds them and returns at once.
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_VERSION="${K8S_VERSION:-$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$HACK/k8s/go.mod")}"
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
CACHE="${SUNDIAL_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sundial/k8s-$K8S_VERSION}"
mkdir -p "$CACHE"

log() { echo "build-binaries: $*" >&2; }

if ! command -v go >/dev/null; then
  log "go is required to build the control plane (none found on PATH)"; exit 1
fi
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

build_k8s() {
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local V=k8s.io/component-base/version
  log "building kube-apiserver and kube-controller-manager $K8S_VERSION (first run only, several minutes)"
  (cd "$HACK/k8s" && go build -trimpath \
    -ldflags "-s -w -X $V.gitVersion=$K8S_VERSION -X $V.gitMajor=1 -X $V.gitMinor=$minor -X $V.gitTreeState=clean" \
    -o "$CACHE/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
}

build_etcd() {
  log "building etcd (first run only)"
  (cd "$HACK/etcd" && go build -trimpath -ldflags "-s -w" -o "$CACHE/etcd" go.etcd.io/etcd/server/v3)
}

build_helm() {
  log "building helm $HELM_VERSION (first run only)"
  GOBIN="$CACHE" GOFLAGS= go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# etcd and helm are small; build them beside the big one so two cores stay busy.
pids=()
[[ -x "$CACHE/etcd" ]] || { build_etcd & pids+=($!); }
[[ -x "$CACHE/helm" ]] || { build_helm & pids+=($!); }
if [[ ! -x "$CACHE/kube-apiserver" || ! -x "$CACHE/kube-controller-manager" ]]; then build_k8s; fi
for p in "${pids[@]}"; do wait "$p"; done
for b in etcd kube-apiserver kube-controller-manager helm; do
  [[ -x "$CACHE/$b" ]] || { log "missing $CACHE/$b after build"; exit 1; }
done
echo "$CACHE"
