#!/usr/bin/env bash
# Where the CPU goes, per request, under the `returning` workload (1 worker thread, loopback only):
#  1. callgrind (valgrind) on sticky-proxy, HAProxy and NGINX in turn: user-space instructions per
#     request, and for sticky-proxy the top self / inclusive costs and its own functions;
#  2. strace -c on each (not under valgrind): system calls per request.
# Stops by itself; about 2 minutes.
#
#   benches/load/profile.sh                 # PROFILE_SECONDS=10 CONNS=8
#
# Writes benches/load/profile.txt and benches/load/callgrind.out (sticky-proxy's raw profile).
# Under callgrind the proxies run 20-50x slower, so wrk's rate is low: the figures are
# instruction counts (Ir), not time; kernel work is not in them (see the strace part).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
. "$HERE/confs.sh"
PROFILE_SECONDS="${PROFILE_SECONDS:-10}"
CONNS="${CONNS:-8}"
export PATH="$PATH:/usr/sbin:/sbin"
PY="$(python3 -c 'import sys; print(sys.executable)')"

need=()
for t in wrk nginx haproxy curl valgrind strace; do command -v "$t" >/dev/null 2>&1 || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || { $SUDO apt-get update -qq; $SUDO apt-get install -y -qq "${need[@]}"; }
fi
if [ -n "${STICKY_BIN:-}" ]; then
  BIN="$STICKY_BIN"
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
  (cd "$REPO" && cargo build --release --bin sticky-proxy)
  case "$CARGO_TARGET_DIR" in /*) BIN="$CARGO_TARGET_DIR/release/sticky-proxy" ;; *) BIN="$REPO/$CARGO_TARGET_DIR/release/sticky-proxy" ;; esac
fi

TMP="$(mktemp -d /tmp/sticky-profile.XXXXXX)"
PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() {
  local i
  for ((i = 0; i < 300; i++)); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/")" = 200 ] && return 0
    sleep 0.2
  done
  echo "profile.sh: nothing answers on 127.0.0.1:$1" >&2
  return 1
}

mkdir -p "$TMP/backends" "$TMP/nginx"
backends_conf "$TMP/backends" >"$TMP/backends/nginx.conf"
nginx -p "$TMP/backends" -e "$TMP/backends/error.log" -c "$TMP/backends/nginx.conf" &
PIDS+=($!)
for p in "${BACKEND_PORTS[@]}"; do wait_http "$p"; done

sticky_conf "$TMP/sticky" 1 "${PORT[sticky]}" cookie >"$TMP/sticky.yaml"
haproxy_conf 1 >"$TMP/haproxy.cfg"
nginx_conf 1 "$TMP/nginx" off >"$TMP/nginx/nginx.conf" # one process: callgrind follows it
declare -A CMD=(
  [sticky]="$BIN -c $TMP/sticky.yaml"
  [haproxy]="haproxy -db -f $TMP/haproxy.cfg"
  [nginx]="nginx -p $TMP/nginx -e $TMP/nginx/error.log -c $TMP/nginx/nginx.conf"
)
cookie_for() { # proxy → the Cookie header of the returning workload
  case $1 in
    sticky)
      curl -s -D - -o /dev/null "http://127.0.0.1:${PORT[sticky]}/" |
        sed -n 's/^[Ss]et-[Cc]ookie: \(ARRAffinity=[^;]*\).*/\1/p' | tr -d '\r' ;;
    *) echo "ARRAffinity=iis1" ;; # HAProxy's value for iis1; NGINX hashes whatever it gets
  esac
}
stop_signal() { [ "$1" = sticky ] && echo INT || echo TERM; } # Pingora: INT = fast shutdown
requests_of() { sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$1"; }

OUT="$TMP/profile.txt"
{
  echo "# benches/load/profile.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ); checkout at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "# binary $BIN, built $(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ); $(haproxy -v | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1)"
  echo "# returning workload, 1 worker thread, wrk -c$CONNS for ${PROFILE_SECONDS}s per proxy"
} >"$OUT"

# 1. callgrind
for proxy in sticky haproxy nginx; do
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$TMP/$proxy.callgrind" \
    ${CMD[$proxy]} >"$TMP/$proxy.valgrind.log" 2>&1 &
  vg=$!
  PIDS+=($vg)
  wait_http "${PORT[$proxy]}"
  cookie=$(cookie_for "$proxy")
  # Zero the counters: start-up (config, tables, listeners) is not counted.
  callgrind_control -z "$vg" >/dev/null 2>&1 || true
  timeout $((PROFILE_SECONDS + 30)) wrk -t1 -c"$CONNS" -d"${PROFILE_SECONDS}s" --timeout 5s \
    -H "Cookie: $cookie" "http://127.0.0.1:${PORT[$proxy]}/" >"$TMP/$proxy.wrk"
  kill -"$(stop_signal "$proxy")" "$vg" 2>/dev/null || true
  wait "$vg" 2>/dev/null || true
  reqs=$(requests_of "$TMP/$proxy.wrk")
  echo "callgrind $proxy: $reqs requests"
  {
    echo
    echo "## callgrind: $proxy ($reqs requests)"
    if [ "$proxy" = sticky ]; then
      "$PY" "$HERE/benchlib.py" callgrind "$TMP/$proxy.callgrind" "$reqs"
      cp "$TMP/$proxy.callgrind" "$HERE/callgrind.out"
    else
      "$PY" "$HERE/benchlib.py" callgrind "$TMP/$proxy.callgrind" "$reqs" | sed -n '1p;3,15p'
    fi
  } >>"$OUT"
done

# 2. system calls per request (strace -c -f on the running proxy, 3 s of wrk)
for proxy in sticky haproxy nginx; do
  RUST_LOG=warn ${CMD[$proxy]} >"$TMP/$proxy.log" 2>&1 &
  pid=$!
  PIDS+=($pid)
  wait_http "${PORT[$proxy]}"
  cookie=$(cookie_for "$proxy")
  timeout 10 strace -c -f -p "$pid" -o "$TMP/$proxy.strace" 2>/dev/null &
  st=$!
  sleep 1
  timeout 20 wrk -t1 -c"$CONNS" -d3s -H "Cookie: $cookie" "http://127.0.0.1:${PORT[$proxy]}/" >"$TMP/$proxy.wrk"
  kill -INT "$st" 2>/dev/null || true
  wait "$st" 2>/dev/null || true
  kill -"$(stop_signal "$proxy")" "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  reqs=$(requests_of "$TMP/$proxy.wrk")
  {
    echo
    echo "## strace -c: $proxy ($reqs requests; calls per request, top 8)"
    awk -v r="$reqs" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { n = $4; name = $NF; printf "%8.2f  %s\n", n / r, name }' \
      "$TMP/$proxy.strace" | sort -nr | head -8
    awk -v r="$reqs" '$NF == "total" { printf "%8.2f  total\n", $4 / r }' "$TMP/$proxy.strace"
  } >>"$OUT"
done
cp "$OUT" "$HERE/profile.txt"
echo "report: ${HERE#$REPO/}/profile.txt; sticky-proxy's raw profile: ${HERE#$REPO/}/callgrind.out"
