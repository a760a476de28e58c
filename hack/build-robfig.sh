#!/usr/bin/env bash
# Builds (once) and caches robfig-next, the robfig/cron v3 reference the schedule differential test
# compares sundial with (hack/robfig: its own go.mod, from the Go module proxy). Prints the binary's
# path. The cache key is the program's own hash, so an edit rebuilds it.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/robfig"
KEY="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)"
CACHE="${SUNDIAL_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sundial}/robfig-$KEY"
BIN="$CACHE/robfig-next"

if [[ ! -x "$BIN" ]]; then
  command -v go >/dev/null || { echo "build-robfig: go is required (none found on PATH)" >&2; exit 1; }
  echo "build-robfig: building robfig-next (first run only)" >&2
  mkdir -p "$CACHE"
  (cd "$SRC" && GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN="${GOTOOLCHAIN:-local}" \
    go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" .)
  mv "$BIN.tmp" "$BIN"
fi
echo "$BIN"
