#!/usr/bin/env bash
# Workloads an edge sees (issue #20 item 4), sticky-proxy next to bare Pingora, HAProxy and
# NGINX in the same run, the same NGINX backends as run.sh, loopback only:
#
#   keepalive      HTTP/1.1 kept alive (wrk), the reference: run.sh's `returning` in this run
#   close          a new TCP connection per request (`Connection: close`, wrk)
#   tls-handshake  HTTPS with `Connection: close`: a full TLS handshake per request
#                  (examples/many_connections --close-for: rustls client, no session resumption;
#                  the run records HAProxy's resumption counter to show it)
#   tls-keepalive  HTTPS kept alive (wrk, HTTP/1.1)
#   h2             HTTP/2 over TLS, H2_CLIENTS connections x H2_STREAMS concurrent streams (h2load)
#   c10k           C10K_CONNS kept-alive connections, C10K_RATE requests/s spread over all of them
#                  for C10K_SECONDS (examples/many_connections): p99 from when each request was
#                  due, proxy CPU per request over that phase, peak RSS; once per thread count,
#                  last (it leaves the allocators' memory grown for the rest of the run)
#
# Every request carries a valid affinity cookie of its proxy (a returning session). HAProxy and
# NGINX use OpenSSL, sticky-proxy and bare Pingora rustls; one ECDSA P-256 certificate made at
# start. Configs: confs.sh (backends) and edge-confs.sh.
#
#   benches/load/edge.sh                       # THREADS="1 2" ROUNDS=3 DURATION=4s
#   WORKLOADS="close h2" THREADS=1 benches/load/edge.sh
#
# Environment (all optional; as run.sh where the names are the same):
#   DURATION=4s WARMUP=1s ROUNDS=3 CONNS=32 THREADS="1 2" PIN=1 TIME_LIMIT=1500 QUIET=20
#   WORKLOADS="keepalive close tls-handshake tls-keepalive h2 c10k"
#   PROXIES="sticky pingora-bare haproxy nginx"
#   H2_CLIENTS=4 H2_STREAMS=100          h2load -c / -m
#   C10K_CONNS=9900 C10K_RATE=2000 C10K_SECONDS=15   (9,900: see EDGE_MAXCONN in edge-confs.sh)
#   RESULTS_DIR=benches/load/edge        results-<N>t.txt and summary.md go there
#   CARGO_TARGET_DIR / STICKY_BIN / BARE_BIN / CLIENT_BIN as idle-memory.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
LIB="$HERE/benchlib.py"
PY="$(python3 -c 'import sys; print(sys.executable)')"
# shellcheck source=confs.sh
. "$HERE/confs.sh"
# shellcheck source=edge-confs.sh
. "$HERE/edge-confs.sh"

DURATION="${DURATION:-4s}"
WARMUP="${WARMUP:-1s}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-32}"
THREADS="${THREADS:-1 2}"
PIN="${PIN:-1}"
TIME_LIMIT="${TIME_LIMIT:-1500}"
QUIET="${QUIET:-20}"
H2_CLIENTS="${H2_CLIENTS:-4}"
H2_STREAMS="${H2_STREAMS:-100}"
C10K_CONNS="${C10K_CONNS:-9900}"
C10K_RATE="${C10K_RATE:-2000}"
C10K_SECONDS="${C10K_SECONDS:-15}"
RESULTS_DIR="${RESULTS_DIR:-$HERE/edge}"
mkdir -p "$RESULTS_DIR"
DUR_S="${DURATION%s}"
WARM_S="${WARMUP%s}"
read -r -a WORKLOADS <<<"${WORKLOADS:-keepalive close tls-handshake tls-keepalive h2 c10k}"
read -r -a PROXY_LIST <<<"${PROXIES:-sticky pingora-bare haproxy nginx}"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${need[@]}"
  }
fi
export PATH="$PATH:/usr/sbin:/sbin"

for p in "${BACKEND_PORTS[@]}" "${EDGE_PORT[@]}" "${EDGE_TLS_PORT[@]}"; do
  if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
    echo "edge.sh: port 127.0.0.1:$p is in use; stop what listens there first" >&2
    exit 1
  fi
done

# Binaries: sticky-proxy, bare_pingora and the many_connections client.
if [ -z "${STICKY_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
  log "building (cargo build --release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$REPO" && cargo build --release --bin sticky-proxy --example bare_pingora \
    --example many_connections)
fi
locate_binaries
CLIENT="${CLIENT_BIN:-$(dirname "$BIN")/examples/many_connections}"
for b in "$BIN" "$BARE_BIN" "$CLIENT"; do
  [ -x "$b" ] || { echo "edge.sh: no binary at $b" >&2; exit 1; }
done

# 10,000 connections: as many descriptors as the hard limit allows, for everything started here.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((C10K_CONNS + 500)) ] && [[ " ${WORKLOADS[*]} " == *" c10k "* ]]; then
  log "warning: ulimit -n is $(ulimit -n): c10k may fail to open $C10K_CONNS connections"
fi

TMP="$(mktemp -d /tmp/sticky-edge.XXXXXX)"
STARTED=()
declare -A ROOT=()
stop_pid() { # pid signal: signal the process tree, wait up to 5 s, then SIGKILL what is left
  local pid=$1 sig=${2:-TERM} tree i st
  tree=$("$PY" "$LIB" tree "$pid" 2>/dev/null || echo "$pid")
  kill -"$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || break
    [ "$st" = Z ] && break
    sleep 0.1
  done
  for p in $tree; do kill -KILL "$p" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${STARTED[@]}"; do
    [ -d "/proc/$pid" ] && stop_pid "$pid" TERM
  done
  if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url: until it answers 200 (10 s at most)
  local i
  for ((i = 0; i < 100; i++)); do
    [ "$(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "$1")" = 200 ] && return 0
    sleep 0.1
  done
  echo "edge.sh: nothing answers 200 at $1" >&2
  return 1
}

NCPU=$(nproc)
if [ "$PIN" = 1 ] && [ "$NCPU" -ge 2 ]; then
  AUX_PIN=(taskset -c "$((NCPU - 1))")
else
  PIN=0
  AUX_PIN=()
fi
proxy_pin() { if [ "$PIN" = 1 ] && [ "$1" -lt "$NCPU" ]; then echo "taskset -c 0-$(($1 - 1))"; fi; }

mkdir -p "$TMP/backends" "$TMP/certs"
make_cert "$TMP/certs"
backends_conf "$TMP/backends" >"$TMP/backends/nginx.conf"
"${AUX_PIN[@]}" nginx -p "$TMP/backends" -e "$TMP/backends/error.log" -c "$TMP/backends/nginx.conf" &
BACKENDS=$!
STARTED+=($!)
for p in "${BACKEND_PORTS[@]}"; do wait_http "http://127.0.0.1:$p/"; done

start_proxies() { # threads
  local n=$1 pin dir
  pin=$(proxy_pin "$n")
  for name in "${PROXY_LIST[@]}"; do
    dir="$TMP/$name-${n}t"
    mkdir -p "$dir"
    case $name in
      sticky)
        edge_sticky_conf "$dir/sticky" "$n" "$TMP/certs" >"$dir/sticky.yaml"
        RUST_LOG=warn $pin "$BIN" -c "$dir/sticky.yaml" >"$dir/log" 2>&1 &
        ;;
      pingora-bare)
        RUST_LOG=warn $pin "$BARE_BIN" --tls "127.0.0.1:${EDGE_TLS_PORT[pingora-bare]}" \
          "$TMP/certs/cert.pem" "$TMP/certs/key.pem" "127.0.0.1:${EDGE_PORT[pingora-bare]}" \
          "$n" 127.0.0.1:9101 127.0.0.1:9102 127.0.0.1:9103 >"$dir/log" 2>&1 &
        ;;
      haproxy)
        edge_haproxy_conf "$n" "$TMP/certs" >"$dir/haproxy.cfg"
        # The stats socket (to read the TLS resumption counters) goes into the global section.
        sed -i "/^  nbthread/a\\  stats socket $dir/stats.sock level admin" "$dir/haproxy.cfg"
        haproxy -c -q -f "$dir/haproxy.cfg" || haproxy -c -f "$dir/haproxy.cfg"
        $pin haproxy -db -f "$dir/haproxy.cfg" >"$dir/log" 2>&1 &
        HAPROXY_SOCK="$dir/stats.sock"
        ;;
      nginx)
        edge_nginx_conf "$n" "$dir" "$TMP/certs" >"$dir/nginx.conf"
        $pin nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
        ;;
    esac
    ROOT[$name]=$!
    STARTED+=($!)
  done
  for name in "${PROXY_LIST[@]}"; do
    wait_http "http://127.0.0.1:${EDGE_PORT[$name]}/"
    wait_http "https://127.0.0.1:${EDGE_TLS_PORT[$name]}/"
  done
}
stop_proxies() {
  local name
  for name in "${PROXY_LIST[@]}"; do
    case $name in sticky | pingora-bare) stop_pid "${ROOT[$name]}" INT ;; *) stop_pid "${ROOT[$name]}" TERM ;; esac
  done
}

haproxy_info() { # field of HAProxy's `show info`
  [ -S "${HAPROXY_SOCK:-}" ] || return 0
  "$PY" - "$HAPROXY_SOCK" "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show info\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
for line in data.decode().splitlines():
    if line.startswith(sys.argv[2] + ":"):
        print(line.split(":", 1)[1].strip())
EOF
}

# A valid affinity cookie per proxy: sticky-proxy's and HAProxy's own; bare Pingora gets
# sticky-proxy's (same request bytes), NGINX HAProxy's (it hashes any value).
declare -A COOKIE=()
cookie_of() { # port
  curl -s -D - -o /dev/null "http://127.0.0.1:$1/" |
    sed -n 's/^[Ss]et-[Cc]ookie: ARRAffinity=\([^;]*\).*/\1/p' | tr -d '\r' | head -1
}

RAW=""
TRUNCATED=0
measure() { # threads round workload proxy
  local n=$1 round=$2 workload=$3 proxy=$4 port tport url turl u0 u1 k0 k1 b0 b1 s0 s1 h t0 t1 wall
  local root=${ROOT[$proxy]} kind=wrk cmd=() extra=()
  port=${EDGE_PORT[$proxy]}
  tport=${EDGE_TLS_PORT[$proxy]}
  url="http://127.0.0.1:$port/"
  turl="https://127.0.0.1:$tport/"
  local cookie="Cookie: ARRAffinity=${COOKIE[$proxy]}"
  local wrk=(wrk -t1 -c"$CONNS" -d"$DURATION" --timeout 2s --latency -H "$cookie")
  case "$workload" in
    keepalive) cmd=("${wrk[@]}" "$url") ;;
    close) cmd=("${wrk[@]}" -H "Connection: close" "$url") ;;
    tls-handshake)
      # Not wrk: it resumes TLS sessions (HAProxy counted 49 % resumed handshakes in a trial).
      kind=many
      cmd=("$CLIENT" "127.0.0.1:$tport" "$CONNS" --close-for "$DUR_S" --tls "$TMP/certs/cert.pem"
        --pids "$root" --header "$cookie" --header "Connection: close")
      ;;
    tls-keepalive) cmd=("${wrk[@]}" "$turl") ;;
    h2)
      kind=h2load
      rm -f "$TMP/h2.log"
      cmd=(h2load -t1 -c"$H2_CLIENTS" -m"$H2_STREAMS" -D"$DUR_S" --warm-up-time=1
        -H "cookie: ARRAffinity=${COOKIE[$proxy]}" --log-file="$TMP/h2.log" "$turl")
      extra=("$TMP/h2.log")
      ;;
    c10k)
      kind=many
      cmd=("$CLIENT" "127.0.0.1:$port" "$C10K_CONNS" "$C10K_RATE" "$C10K_SECONDS"
        --pids "$root" --header "$cookie")
      ;;
  esac
  read -r u0 k0 b0 s0 _ < <("$PY" "$LIB" snap --reset "$root" "$BACKENDS")
  t0=$(date +%s.%N)
  "$PY" "$LIB" run-timed "$TMP/tool.cpu" timeout -k 2 $((DUR_S + C10K_SECONDS + 200)) \
    "${AUX_PIN[@]}" "${cmd[@]}" >"$TMP/tool.out" 2>&1 || {
    echo "edge.sh: ${cmd[0]} failed for $proxy/$workload:" >&2
    cat "$TMP/tool.out" >&2
    exit 1
  }
  t1=$(date +%s.%N)
  read -r u1 k1 b1 s1 h < <("$PY" "$LIB" snap "$root" "$BACKENDS")
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  {
    echo "=== threads=$n round=$round workload=$workload proxy=$proxy cmd=${cmd[*]}"
    cat "$TMP/tool.out"
    if [ "$proxy" = haproxy ] && [ "$workload" = tls-handshake ]; then
      # HAProxy's share of resumed TLS sessions over the last second: 0 = full handshakes only.
      echo "# haproxy SslFrontendSessionReuse_pct at the end: $(haproxy_info SslFrontendSessionReuse_pct)"
    fi
    "$PY" "$LIB" record kind="$kind" threads="$n" round="$round" workload="$workload" \
      proxy="$proxy" wall_s="$wall" user0="$u0" user1="$u1" sys0="$k0" sys1="$k1" hwm_kb="$h" \
      busy0="$s0" busy1="$s1" back0="$b0" back1="$b1" wrk_ticks="$(cat "$TMP/tool.cpu")" \
      "$TMP/tool.out" "${extra[@]}"
  } >>"$RAW"
}

log "plan: THREADS='$THREADS' ROUNDS=$ROUNDS DURATION=$DURATION WORKLOADS='${WORKLOADS[*]}' PROXIES='${PROXY_LIST[*]}'"
for n in $THREADS; do
  RAW="$RESULTS_DIR/results-${n}t.txt"
  {
    echo "# sticky-proxy edge workloads raw output: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" \
      "(uncommitted changes under src/ and examples/: $(git -C "$REPO" status --porcelain -- src examples 2>/dev/null | wc -l) files)"
    echo "# binary $BIN, built $(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ); bare_pingora $BARE_BIN"
    echo "# $(uname -srm); nproc $NCPU; $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
    echo "# $(haproxy -v | head -1); $(nginx -v 2>&1); $(wrk -v 2>&1 | head -1); $(h2load --version | head -1); $(openssl version)"
    echo "# threads=$n rounds=$ROUNDS duration=$DURATION conns=$CONNS h2=${H2_CLIENTS}x$H2_STREAMS" \
      "c10k=$C10K_CONNS@$C10K_RATE/s for ${C10K_SECONDS}s pin=$PIN (proxy: $(proxy_pin "$n" | sed 's/^$/unpinned/'); tools+backends: ${AUX_PIN[*]:-unpinned})"
  } >"$RAW"
  log "starting the proxies with $n worker thread(s)"
  start_proxies "$n"
  for name in "${PROXY_LIST[@]}"; do
    case $name in
      sticky | haproxy) COOKIE[$name]=$(cookie_of "${EDGE_PORT[$name]}") ;;
    esac
  done
  COOKIE[pingora-bare]=${COOKIE[sticky]:-none}
  COOKIE[nginx]=${COOKIE[haproxy]:-iis1}
  echo "# cookies: ${COOKIE[*]}" >>"$RAW"
  for name in "${PROXY_LIST[@]}"; do
    "${AUX_PIN[@]}" wrk -t1 -c"$CONNS" -d"$WARMUP" "http://127.0.0.1:${EDGE_PORT[$name]}/" >/dev/null 2>&1
    "${AUX_PIN[@]}" wrk -t1 -c"$CONNS" -d"$WARMUP" "https://127.0.0.1:${EDGE_TLS_PORT[$name]}/" >/dev/null 2>&1
  done
  for ((round = 1; round <= ROUNDS; round++)); do
    for workload in "${WORKLOADS[@]}"; do
      [ "$workload" = c10k ] && continue
      for ((k = 0; k < ${#PROXY_LIST[@]}; k++)); do
        proxy=${PROXY_LIST[$(((k + round - 1) % ${#PROXY_LIST[@]}))]}
        if ((SECONDS + DUR_S + 3 > TIME_LIMIT)); then
          TRUNCATED=1
          break 3
        fi
        measure "$n" "$round" "$workload" "$proxy"
      done
    done
  done
  if [[ " ${WORKLOADS[*]} " == *" c10k "* ]] && [ "$TRUNCATED" = 0 ]; then
    for proxy in "${PROXY_LIST[@]}"; do
      if ((SECONDS + C10K_SECONDS + 60 > TIME_LIMIT)); then
        TRUNCATED=1
        break
      fi
      log "c10k: $proxy"
      measure "$n" 1 c10k "$proxy"
    done
  fi
  [ "$TRUNCATED" = 1 ] && echo "NOTE **Truncated**: TIME_LIMIT=${TIME_LIMIT}s reached during the ${n}-thread matrix." >>"$RAW"
  log "stopping the proxies"
  stop_proxies
  [ "$TRUNCATED" = 1 ] && break
done

SUMMARY="$RESULTS_DIR/summary.md"
RAWS=()
for n in $THREADS; do [ -f "$RESULTS_DIR/results-${n}t.txt" ] && RAWS+=("$RESULTS_DIR/results-${n}t.txt"); done
{
  echo "<!-- generated by benches/load/edge.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ); raw: ${RAWS[*]#$REPO/} -->"
  "$PY" "$LIB" report --quiet="$QUIET" "${RAWS[@]}"
} >"$SUMMARY"
cat "$SUMMARY"
log "done in ${SECONDS}s; raw output: ${RAWS[*]#$REPO/}; tables: ${SUMMARY#$REPO/}"
