#!/usr/bin/env bash
# What affinity costs per request, in user-space instructions (callgrind), which unlike CPU time
# does not depend on what else the machine is doing. Same binary, same request bytes, 1 worker
# thread, wrk -c$CONNS for PROFILE_SECONDS against each sticky-proxy configuration in turn:
#   cookie   affinity.cookie (as the load benchmark's `sticky` row), Cookie: ARRAffinity=<valid>
#   off      affinity: { enabled: false }, the same Cookie header
#   learn    affinity.learn (preset j2ee), Cookie: JSESSIONID=<id> (a table hit after the first)
#   off-j    affinity: { enabled: false }, the same JSESSIONID header
#   bare     examples/bare_pingora.rs: the least a Pingora proxy does for the same work (round
#            robin, the three X-Forwarded-* headers), the ARRAffinity header: Pingora's floor
# Counters are zeroed after start-up. Loopback only; everything started is stopped on exit.
#
#   benches/load/affinity-cost.sh          # PROFILE_SECONDS=8 CONNS=8; about 2 minutes
#   ADMIN_PORT=9190 benches/load/affinity-cost.sh   # with the admin listener, and an open
#                                                   # dashboard's reads every 2 s (issue #21)
#
# FILTERS=noop gives every sticky-proxy configuration's listener `filters: [noop]`: the cost of
# Rust filters (docs/extending.md). The stock binary registers none, so run it with a binary
# that does, e.g. the release build of examples/filters.rs:
#   STICKY_BIN=target/release/examples/filters BARE_BIN=target/release/examples/bare_pingora \
#     FILTERS=noop benches/load/affinity-cost.sh
#
# Writes benches/load/affinity-cost.txt. Kernel time is not in these figures.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
. "$HERE/confs.sh"
PROFILE_SECONDS="${PROFILE_SECONDS:-8}"
CONNS="${CONNS:-8}"
export PATH="$PATH:/usr/sbin:/sbin"
PY="$(python3 -c 'import sys; print(sys.executable)')"
for t in wrk nginx curl valgrind; do
  command -v "$t" >/dev/null 2>&1 || { echo "affinity-cost.sh: needs $t (benches/load/profile.sh installs it)" >&2; exit 1; }
done
locate_binaries
[ -x "$BIN" ] || { echo "affinity-cost.sh: no sticky-proxy binary at $BIN" >&2; exit 1; }
[ -x "$BARE_BIN" ] || { echo "affinity-cost.sh: no bare_pingora binary at $BARE_BIN (set BARE_BIN)" >&2; exit 1; }

TMP="$(mktemp -d /tmp/sticky-affcost.XXXXXX)"
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
  echo "affinity-cost.sh: nothing answers on 127.0.0.1:$1" >&2
  return 1
}

with_filters() { # the listener of a sticky_conf document gets `filters: [$FILTERS]`, if set
  if [ -n "${FILTERS:-}" ]; then
    sed "s/^    - addr: \(127.0.0.1:[0-9]*\)$/    - addr: \1\n      filters: [$FILTERS]/"
  else
    cat
  fi
}

mkdir -p "$TMP/backends"
backends_conf "$TMP/backends" >"$TMP/backends/nginx.conf"
nginx -p "$TMP/backends" -e "$TMP/backends/error.log" -c "$TMP/backends/nginx.conf" &
PIDS+=($!)
for p in "${BACKEND_PORTS[@]}"; do wait_http "$p"; done

# A valid ARRAffinity value: the keyed format depends only on the secret and the backend name,
# so a value issued by a plain (not profiled) instance is valid for the profiled one.
PORT_A=${PORT[sticky]}
sticky_conf "$TMP/issue" 1 "$PORT_A" cookie | with_filters >"$TMP/issue.yaml"
RUST_LOG=warn "$BIN" -c "$TMP/issue.yaml" >"$TMP/issue.log" 2>&1 &
issuer=$!
PIDS+=($issuer)
wait_http "$PORT_A"
VALUE=$(curl -s -D - -o /dev/null "http://127.0.0.1:$PORT_A/" |
  sed -n 's/^[Ss]et-[Cc]ookie: \(ARRAffinity=[^;]*\).*/\1/p' | tr -d '\r')
kill -INT "$issuer"
wait "$issuer" 2>/dev/null || true
[ -n "$VALUE" ] || { echo "affinity-cost.sh: no ARRAffinity issued" >&2; exit 1; }
JSID="JSESSIONID=0123456789ABCDEF0123456789ABCDEF"

OUT="$TMP/affinity-cost.txt"
{
  echo "# benches/load/affinity-cost.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ); checkout at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?') (uncommitted changes under src/ and examples/: $(git -C "$REPO" status --porcelain -- src examples 2>/dev/null | wc -l) files)"
  echo "# filters on the listener: [${FILTERS:-}]"
  echo "# binary $BIN, built $(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ); bare_pingora built $(date -u -r "$BARE_BIN" +%Y-%m-%dT%H:%M:%SZ); 1 worker thread; wrk -t1 -c$CONNS -d${PROFILE_SECONDS}s per configuration"
  echo "# configuration  cookie-header  requests  Ir-total  Ir/request"
} >"$OUT"

declare -A IR=()
BACKENDS=()
for p in "${BACKEND_PORTS[@]}"; do BACKENDS+=("127.0.0.1:$p"); done
for run in "cookie:$VALUE" "off:$VALUE" "learn:$JSID" "off-j:$JSID" "bare:$VALUE"; do
  conf=${run%%:*}
  header=${run#*:}
  aff=$conf
  [ "$conf" = off-j ] && aff=off
  if [ "$conf" = bare ]; then
    cmd=("$BARE_BIN" "127.0.0.1:$PORT_A" 1 "${BACKENDS[@]}")
  else
    sticky_conf "$TMP/$conf" 1 "$PORT_A" "$aff" | with_filters >"$TMP/$conf.yaml"
    cmd=("$BIN" -c "$TMP/$conf.yaml")
  fi
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$TMP/$conf.callgrind" \
    "${cmd[@]}" >"$TMP/$conf.valgrind.log" 2>&1 &
  vg=$!
  PIDS+=($vg)
  wait_http "$PORT_A"
  # One request first, so the learned id is in the table before counting starts.
  curl -s -o /dev/null -H "Cookie: $header" "http://127.0.0.1:$PORT_A/"
  callgrind_control -z "$vg" >/dev/null 2>&1 || true
  poller=
  if [ -n "${ADMIN_PORT:-}" ] && [ "$conf" != bare ]; then
    # An open dashboard: /api/status and /api/pools every 2 s, as the page reads them.
    (while sleep 2; do
      curl -s -o /dev/null "http://127.0.0.1:$ADMIN_PORT/api/status"
      curl -s -o /dev/null "http://127.0.0.1:$ADMIN_PORT/api/pools"
    done) &
    poller=$!
    PIDS+=($poller)
  fi
  timeout $((PROFILE_SECONDS + 30)) wrk -t1 -c"$CONNS" -d"${PROFILE_SECONDS}s" --timeout 5s \
    -H "Cookie: $header" "http://127.0.0.1:$PORT_A/" >"$TMP/$conf.wrk"
  [ -z "$poller" ] || kill "$poller" 2>/dev/null || true
  kill -INT "$vg" 2>/dev/null || true
  wait "$vg" 2>/dev/null || true
  reqs=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$TMP/$conf.wrk")
  total=$("$PY" "$HERE/benchlib.py" callgrind "$TMP/$conf.callgrind" "$reqs" | sed -n '1s/^total \([0-9,]*\) Ir.*/\1/p' | tr -d ,)
  IR[$conf]=$((total / reqs))
  printf '%-8s %-52s %8d %14d %8d\n' "$conf" "$header" "$reqs" "$total" "${IR[$conf]}" | tee -a "$OUT"
done
{
  echo
  awk -v a="${IR[cookie]}" -v b="${IR[off]}" 'BEGIN { printf "cookie affinity vs off: %+d Ir/request (%.3f x)\n", a - b, a / b }'
  awk -v a="${IR[learn]}" -v b="${IR[off-j]}" 'BEGIN { printf "learned session (table hit) vs off: %+d Ir/request (%.3f x)\n", a - b, a / b }'
  awk -v a="${IR[off]}" -v b="${IR[bare]}" 'BEGIN { printf "affinity off vs bare Pingora: %+d Ir/request (%.3f x)\n", a - b, a / b }'
  awk -v a="${IR[cookie]}" -v b="${IR[bare]}" 'BEGIN { printf "cookie affinity vs bare Pingora: %+d Ir/request (%.3f x)\n", a - b, a / b }'
} | tee -a "$OUT"
cp "$OUT" "$HERE/affinity-cost.txt"
