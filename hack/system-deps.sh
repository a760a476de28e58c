#!/usr/bin/env bash
# Installs the Debian packages sundial's tests and demo use, only when they are missing.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v ip >/dev/null || [[ -x /usr/sbin/ip ]] || need+=(iproute2)   # the link-local test adds an address to lo
command -v go >/dev/null || need+=(golang-go)
[[ ${#need[@]} -eq 0 ]] && exit 0
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
echo "system-deps: installing ${need[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged services; sundial never uses them, its fixtures start private ones.
