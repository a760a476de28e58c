#!/usr/bin/env bash
# A real, local Kubernetes control plane for development and tests: etcd, kube-apiserver and
# kube-controller-manager on free loopback ports, with generated certificates and an admin
# kubeconfig. No kubelet, so Pods never run; everything that talks to the API is real.
#
#   hack/cluster.sh up   [DIR]   start (DIR default: .cluster/), print `export KUBECONFIG=...`
#   hack/cluster.sh down [DIR]   stop and remove DIR
#   hack/cluster.sh status [DIR]
#
# CONTROLLER_MANAGER=0 skips kube-controller-manager (garbage collection, Jobs, service accounts).
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HACK")"
CMD="${1:-up}"
DIR="$(mkdir -p "${2:-$ROOT/.cluster}" && cd "${2:-$ROOT/.cluster}" && pwd)"

log() { echo "cluster: $*" >&2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stop() {
  for name in kube-controller-manager kube-apiserver etcd; do
    if [[ -f "$DIR/$name.pid" ]]; then
      local pid; pid="$(cat "$DIR/$name.pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
}

certs() {
  local d="$DIR/pki"; mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sundial-local-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  # serving certificate of the API server
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$d/apiserver.key" \
    -out "$d/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' > "$d/apiserver.ext"
  openssl x509 -req -in "$d/apiserver.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 3650 -extfile "$d/apiserver.ext" -out "$d/apiserver.crt" 2>/dev/null
  # admin client certificate (group system:masters)
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=sundial-admin" -keyout "$d/admin.key" \
    -out "$d/admin.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' > "$d/client.ext"
  openssl x509 -req -in "$d/admin.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 3650 -extfile "$d/client.ext" -out "$d/admin.crt" 2>/dev/null
  # service-account signing key pair
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
}

kubeconfig() {  # $1 server URL
  cat > "$DIR/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: sundial-local
  cluster:
    server: $1
    certificate-authority: $DIR/pki/ca.crt
users:
- name: sundial-admin
  user:
    client-certificate: $DIR/pki/admin.crt
    client-key: $DIR/pki/admin.key
contexts:
- name: sundial-local
  context: {cluster: sundial-local, user: sundial-admin, namespace: default}
current-context: sundial-local
KC
}

wait_ready() {  # $1 url, $2 what, $3 log file
  for _ in $(seq 600); do
    if curl -fsS --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" --key "$DIR/pki/admin.key" \
        "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  log "$2 did not become ready; last lines of $3:"; tail -n 40 "$3" >&2; return 1
}

up() {
  local bin; bin="$("$HACK/build-binaries.sh")"
  stop
  rm -rf "$DIR/etcd-data"; mkdir -p "$DIR"
  [[ -f "$DIR/pki/sa.key" ]] || certs
  local etcd_port etcd_peer api_port
  etcd_port="$(free_port)"; etcd_peer="$(free_port)"; api_port="$(free_port)"

  "$bin/etcd" --name sundial --data-dir "$DIR/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "sundial=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync --quota-backend-bytes 4294967296 \
    >"$DIR/etcd.log" 2>&1 &
  echo $! > "$DIR/etcd.pid"
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break; sleep 0.1; done

  "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$DIR/pki/apiserver.crt" --tls-private-key-file "$DIR/pki/apiserver.key" \
    --client-ca-file "$DIR/pki/ca.crt" --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$DIR/pki/sa.pub" --service-account-signing-key-file "$DIR/pki/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true \
    --disable-admission-plugins ServiceAccount \
    --cert-dir "$DIR/pki" >"$DIR/kube-apiserver.log" 2>&1 &
  echo $! > "$DIR/kube-apiserver.pid"
  kubeconfig "https://127.0.0.1:$api_port"
  wait_ready "https://127.0.0.1:$api_port/readyz" kube-apiserver "$DIR/kube-apiserver.log"

  if [[ "${CONTROLLER_MANAGER:-1}" != 0 ]]; then
    "$bin/kube-controller-manager" --kubeconfig "$DIR/kubeconfig" \
      --authentication-kubeconfig "$DIR/kubeconfig" --authorization-kubeconfig "$DIR/kubeconfig" \
      --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
      --service-account-private-key-file "$DIR/pki/sa.key" --root-ca-file "$DIR/pki/ca.crt" \
      --controllers '*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-route,-persistentvolume-binder,-attachdetach,-persistentvolume-expander,-ephemeral-volume,-pvc-protection,-pv-protection' \
      >"$DIR/kube-controller-manager.log" 2>&1 &
    echo $! > "$DIR/kube-controller-manager.pid"
  fi
  echo "$bin" > "$DIR/bin-dir"
  log "ready: kube-apiserver on https://127.0.0.1:$api_port ($DIR)"
  echo "export KUBECONFIG=$DIR/kubeconfig"
}

case "$CMD" in
  up) up ;;
  down) stop; rm -rf "$DIR"; log "stopped and removed $DIR" ;;
  status) for n in etcd kube-apiserver kube-controller-manager; do
            if [[ -f "$DIR/$n.pid" ]] && kill -0 "$(cat "$DIR/$n.pid")" 2>/dev/null; then echo "$n: running"; else echo "$n: stopped"; fi
          done ;;
  *) echo "usage: $0 up|down|status [DIR]" >&2; exit 2 ;;
esac
