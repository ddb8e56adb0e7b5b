#!/usr/bin/env bash
# Where the memory of an idle kept-alive connection goes: sticky-proxy built with the system
# allocator (examples/sysalloc_proxy.rs, so that valgrind sees every allocation) runs under
# `valgrind --tool=massif`; a detailed heap snapshot is taken (vgdb) before any connection and
# again while N connections sit idle after one request each; benchlib.py prints the allocation
# sites of the difference in bytes per connection. Loopback only; about a minute.
#
#   benches/load/idle-massif.sh              # N=1000, plain HTTP
#   TLS=1 benches/load/idle-massif.sh        # HTTPS connections (rustls)
#
# Environment: N=1000, TLS=0, PROXY_BIN (default: examples/sysalloc_proxy next to CLIENT_BIN),
# CLIENT_BIN (default: $CARGO_TARGET_DIR/release/examples/many_connections, built if absent),
# OUT=file (also append the summary there).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=confs.sh
. "$HERE/confs.sh"
# shellcheck source=edge-confs.sh
. "$HERE/edge-confs.sh"
N="${N:-1000}"
TLS="${TLS:-0}"
export PATH="$PATH:/usr/sbin:/sbin"
command -v valgrind >/dev/null && command -v vgdb >/dev/null || {
  echo "idle-massif.sh: needs valgrind (apt-get install valgrind)" >&2
  exit 1
}
if [ -z "${CLIENT_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
  (cd "$REPO" && cargo build --release --example sysalloc_proxy --example many_connections)
  case "$CARGO_TARGET_DIR" in /*) out="$CARGO_TARGET_DIR/release" ;; *) out="$REPO/$CARGO_TARGET_DIR/release" ;; esac
  CLIENT_BIN="$out/examples/many_connections"
fi
PROXY_BIN="${PROXY_BIN:-$(dirname "$CLIENT_BIN")/sysalloc_proxy}"

TMP="$(mktemp -d /tmp/sticky-massif.XXXXXX)"
STARTED=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${STARTED[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  sleep 2
  for pid in "${STARTED[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
wait_port() {
  local i
  for ((i = 0; i < 600; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "idle-massif.sh: nothing listens on 127.0.0.1:$1" >&2
  return 1
}

mkdir -p "$TMP/backends" "$TMP/certs"
make_cert "$TMP/certs"
backends_conf "$TMP/backends" >"$TMP/backends/nginx.conf"
nginx -p "$TMP/backends" -e "$TMP/backends/error.log" -c "$TMP/backends/nginx.conf" &
STARTED+=($!)
for p in "${BACKEND_PORTS[@]}"; do wait_port "$p"; done

edge_sticky_conf "$TMP/sticky" 1 "$TMP/certs" >"$TMP/sticky.yaml"
RUST_LOG=warn valgrind --tool=massif --vgdb=yes --threshold=0.1 --depth=40 \
  --massif-out-file="$TMP/massif.out" "$PROXY_BIN" -c "$TMP/sticky.yaml" >"$TMP/valgrind.log" 2>&1 &
VG=$!
STARTED+=($VG)
wait_port "${EDGE_PORT[sticky]}"
wait_port "${EDGE_TLS_PORT[sticky]}"
client_args=("127.0.0.1:${EDGE_PORT[sticky]}")
if [ "$TLS" = 1 ]; then
  client_args=("127.0.0.1:${EDGE_TLS_PORT[sticky]}" --tls "$TMP/certs/cert.pem")
fi
# Warm-up wave (opened, answered, closed), then the baseline snapshot.
timeout -k 5 300 "$CLIENT_BIN" "${client_args[@]}" 50 >/dev/null
vgdb --pid="$VG" detailed_snapshot "$TMP/before.txt" >/dev/null
timeout -k 5 600 "$CLIENT_BIN" "${client_args[@]}" "$N" --pids "$VG" --hold 120 >"$TMP/client.out" &
CLIENT=$!
STARTED+=($CLIENT)
for ((i = 0; i < 3000; i++)); do
  grep -q '^holding_s=' "$TMP/client.out" && break
  kill -0 "$CLIENT" 2>/dev/null || { cat "$TMP/client.out" >&2; exit 1; }
  sleep 0.1
done
grep -q '^opened='"$N"' ' "$TMP/client.out" || { cat "$TMP/client.out" >&2; exit 1; }
vgdb --pid="$VG" detailed_snapshot "$TMP/idle.txt" >/dev/null
{
  echo "# idle-massif.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git -C "$REPO" rev-parse --short HEAD)" \
    "(uncommitted files under src/: $(git -C "$REPO" status --porcelain -- src | wc -l)); N=$N tls=$TLS;" \
    "$(basename "$PROXY_BIN") under valgrind massif (system allocator); requested bytes, without the allocator's own overhead"
  python3 "$HERE/benchlib.py" massif "$TMP/idle.txt" "$N" "$TMP/before.txt"
} | if [ -n "${OUT:-}" ]; then tee -a "$OUT"; else cat; fi
