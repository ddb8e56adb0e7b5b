#!/usr/bin/env bash
# Profile sticky-proxy (cookie affinity, 1 worker thread) under the `returning` workload with
# valgrind's callgrind, and print the top inclusive costs. Loopback only; stops by itself.
#
#   benches/load/profile.sh                 # PROFILE_SECONDS=10 CONNS=8
#
# Writes benches/load/callgrind.out (raw) and benches/load/profile.txt (callgrind_annotate).
# Under callgrind the proxy runs ~50x slower, so wrk's rate is low; the figures are instruction
# counts (Ir), not time.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PROFILE_SECONDS="${PROFILE_SECONDS:-10}"
CONNS="${CONNS:-8}"
export PATH="$PATH:/usr/sbin:/sbin"

need=()
for t in wrk nginx curl valgrind; do command -v "$t" >/dev/null 2>&1 || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || { apt-get update -qq; apt-get install -y -qq "${need[@]}"; }
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
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$TMP/b"
{
  echo "worker_processes 1; daemon off; master_process on; pid $TMP/b/nginx.pid; error_log $TMP/b/error.log warn;"
  echo "events { worker_connections 1024; }"
  echo "http { access_log off; default_type text/plain; keepalive_requests 10000000;"
  for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $TMP/b/$t;"; done
  for i in 1 2 3; do echo "  server { listen 127.0.0.1:$((9100 + i)); location / { return 200 \"hello iis$i\\n\"; } }"; done
  echo "}"
} >"$TMP/b/nginx.conf"
nginx -p "$TMP/b" -e "$TMP/b/error.log" -c "$TMP/b/nginx.conf" &
PIDS+=($!)

cat >"$TMP/sticky.yaml" <<EOF
version: 1
threads: 1
pid_file: $TMP/sticky.pid
upgrade_sock: $TMP/sticky.sock
grace_period_seconds: 1
graceful_shutdown_timeout_seconds: 1
sticky:
  listeners:
    - addr: 127.0.0.1:6201
  hide_headers: []
  pools:
    - name: web
      balance: round_robin
      backends:
        - { name: iis1, addr: 127.0.0.1:9101, weight: 1 }
        - { name: iis2, addr: 127.0.0.1:9102, weight: 1 }
        - { name: iis3, addr: 127.0.0.1:9103, weight: 1 }
      affinity:
        enabled: true
        cookie:
          name: ARRAffinity
          format: keyed
          secret: bench-secret-0123456789abcdef-0123456789
          path: /
          http_only: true
          indirect: true
          nocache: true
EOF
OUT="$HERE/callgrind.out"
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT" --collect-atstart=yes \
  "$BIN" -c "$TMP/sticky.yaml" >"$TMP/valgrind.log" 2>&1 &
VG=$!
PIDS+=($VG)
for ((i = 0; i < 300; i++)); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 http://127.0.0.1:6201/)" = 200 ] && break
  sleep 0.2
done
COOKIE=$(curl -s -D - -o /dev/null http://127.0.0.1:6201/ | sed -n 's/^[Ss]et-[Cc]ookie: \(ARRAffinity=[^;]*\).*/\1/p' | tr -d '\r')
[ -n "$COOKIE" ] || { echo "profile.sh: no cookie from the proxy" >&2; cat "$TMP/valgrind.log" >&2; exit 1; }
# Zero the counters so start-up (config parsing, HMAC table, listener setup) is not counted.
callgrind_control -z "$VG" >/dev/null 2>&1 || true
timeout $((PROFILE_SECONDS + 30)) wrk -t1 -c"$CONNS" -d"${PROFILE_SECONDS}s" --timeout 5s \
  -H "Cookie: $COOKIE" http://127.0.0.1:6201/ | tee "$TMP/wrk.out"
kill -INT "$VG"
wait "$VG" || true
REQS=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$TMP/wrk.out")
{
  echo "# callgrind, sticky-proxy threads=1, returning workload, $REQS requests ($PROFILE_SECONDS s, $CONNS conns)"
  echo "# counters zeroed after start-up; totals include the shutdown after SIGINT"
  callgrind_annotate --inclusive=yes --threshold=99 "$OUT" | head -150
} >"$HERE/profile.txt"
echo "requests profiled: $REQS; report: ${HERE#$REPO/}/profile.txt; raw: ${OUT#$REPO/}"
