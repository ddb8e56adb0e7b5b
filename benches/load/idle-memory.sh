#!/usr/bin/env bash
# Memory per idle kept-alive connection (issue #20 item 3): each proxy is started fresh, warmed
# up (one wave of 200 connections, opened and closed), then `examples/many_connections` opens
# N connections, sends one request on each and holds them idle; the growth of the proxy's
# resident memory (VmRSS, every process of the proxy) divided by N is the cost of one idle
# connection. Loopback only; each wave is bounded (opening 120 s, 2 s idle, then closed).
#
#   benches/load/idle-memory.sh                  # CONNS="2000 9900", every proxy, plain HTTP
#   TLS=1 PROXIES="sticky pingora-bare" benches/load/idle-memory.sh   # HTTPS connections
#
# Environment (all optional):
#   CONNS="2000 9900"    connections held idle (one run each, a fresh proxy each time; at most
#                        9,900: HAProxy's limit here, see EDGE_MAXCONN in edge-confs.sh)
#   PROXIES="sticky pingora-bare haproxy nginx"
#   TLS=0                1: HTTPS connections (the same certificate for every proxy)
#   THREADS=1            worker threads of each proxy
#   OUT=file             also append the raw output there (default: stdout only)
#   CARGO_TARGET_DIR / STICKY_BIN / BARE_BIN / CLIENT_BIN   as in run.sh; CLIENT_BIN defaults to
#                        examples/many_connections next to STICKY_BIN (built with the others)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=confs.sh
. "$HERE/confs.sh"
# shellcheck source=edge-confs.sh
. "$HERE/edge-confs.sh"

CONNS="${CONNS:-2000 9900}"
read -r -a PROXY_LIST <<<"${PROXIES:-sticky pingora-bare haproxy nginx}"
TLS="${TLS:-0}"
THREADS="${THREADS:-1}"
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
out() { if [ -n "${OUT:-}" ]; then echo "$*" | tee -a "$OUT"; else echo "$*"; fi; }

locate_edge_binaries() { # BIN, BARE_BIN, CLIENT
  if [ -z "${STICKY_BIN:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
    (cd "$REPO" && cargo build --release --bin sticky-proxy --example bare_pingora \
      --example many_connections)
  fi
  locate_binaries
  CLIENT="${CLIENT_BIN:-$(dirname "$BIN")/examples/many_connections}"
  for b in "$BIN" "$BARE_BIN" "$CLIENT"; do
    [ -x "$b" ] || { echo "no binary at $b" >&2; exit 1; }
  done
}
locate_edge_binaries

TMP="$(mktemp -d /tmp/sticky-idle.XXXXXX)"
STARTED=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${STARTED[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for p in "${BACKEND_PORTS[@]}" "${EDGE_PORT[@]}" "${EDGE_TLS_PORT[@]}"; do
  if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
    echo "idle-memory.sh: port 127.0.0.1:$p is in use" >&2
    exit 1
  fi
done

wait_port() { # port: until something accepts (10 s at most)
  local i
  for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "idle-memory.sh: nothing listens on 127.0.0.1:$1" >&2
  return 1
}

mkdir -p "$TMP/backends" "$TMP/certs"
make_cert "$TMP/certs"
backends_conf "$TMP/backends" >"$TMP/backends/nginx.conf"
nginx -p "$TMP/backends" -e "$TMP/backends/error.log" -c "$TMP/backends/nginx.conf" &
STARTED+=($!)
for p in "${BACKEND_PORTS[@]}"; do wait_port "$p"; done

start_proxy() { # name → sets PROXY_PID
  local name=$1 dir="$TMP/$1"
  mkdir -p "$dir"
  case $name in
    sticky)
      edge_sticky_conf "$dir/sticky" "$THREADS" "$TMP/certs" >"$dir/sticky.yaml"
      RUST_LOG=warn "$BIN" -c "$dir/sticky.yaml" >"$dir/log" 2>&1 &
      ;;
    pingora-bare)
      RUST_LOG=warn "$BARE_BIN" --tls "127.0.0.1:${EDGE_TLS_PORT[pingora-bare]}" \
        "$TMP/certs/cert.pem" "$TMP/certs/key.pem" "127.0.0.1:${EDGE_PORT[pingora-bare]}" \
        "$THREADS" 127.0.0.1:9101 127.0.0.1:9102 127.0.0.1:9103 >"$dir/log" 2>&1 &
      ;;
    haproxy)
      edge_haproxy_conf "$THREADS" "$TMP/certs" >"$dir/haproxy.cfg"
      haproxy -db -f "$dir/haproxy.cfg" >"$dir/log" 2>&1 &
      ;;
    nginx)
      edge_nginx_conf "$THREADS" "$dir" "$TMP/certs" >"$dir/nginx.conf"
      nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
      ;;
  esac
  PROXY_PID=$!
  STARTED+=($PROXY_PID)
  wait_port "${EDGE_PORT[$name]}"
  wait_port "${EDGE_TLS_PORT[$name]}"
}

stop_proxy() { # name pid: SIGINT for Pingora (fast shutdown), SIGTERM for the others; 10 s
  local i sig=TERM
  case $1 in sticky | pingora-bare) sig=INT ;; esac
  kill -"$sig" "$2" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$2" 2>/dev/null || true
  wait "$2" 2>/dev/null || true
}

client() { # name connections → the client's key=value lines
  local name=$1 n=$2 port
  if [ "$TLS" = 1 ]; then
    port=${EDGE_TLS_PORT[$name]}
    timeout -k 5 200 "$CLIENT" "127.0.0.1:$port" "$n" --pids "$PROXY_PID" --tls "$TMP/certs/cert.pem"
  else
    port=${EDGE_PORT[$name]}
    timeout -k 5 200 "$CLIENT" "127.0.0.1:$port" "$n" --pids "$PROXY_PID"
  fi
}

out "# idle-memory.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git -C "$REPO" rev-parse --short HEAD)" \
  "(uncommitted files under src/: $(git -C "$REPO" status --porcelain -- src | wc -l))"
out "# sticky-proxy $BIN built $(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ); $(haproxy -v | head -1); $(nginx -v 2>&1)"
out "# threads=$THREADS tls=$TLS conns='$CONNS' env: TRIAL_L4_READ=${TRIAL_L4_READ:-unset} TRIAL_L4_WRITE=${TRIAL_L4_WRITE:-unset}"
for n in $CONNS; do
  for name in "${PROXY_LIST[@]}"; do
    log "$name: $n idle connections (tls=$TLS)"
    start_proxy "$name"
    client "$name" 200 >/dev/null # warm-up wave: opened, answered, closed
    result=$(client "$name" "$n" | tr '\n' ' ')
    out "RESULT proxy=$name connections=$n tls=$TLS threads=$THREADS $result"
    stop_proxy "$name" "$PROXY_PID"
  done
done
