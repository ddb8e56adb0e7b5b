#!/usr/bin/env bash
# Side-by-side load benchmark: sticky-proxy (cookie affinity / affinity off) vs HAProxy vs NGINX,
# same NGINX backends, loopback only, interleaved rounds. See benches/README.md.
# Rows: sticky (ARRAffinity insertion; for `sdk` its CUserID hash mode; for `learned` its
# JSESSIONID session table), sticky-off (`affinity: { enabled: false }`), haproxy (cookie insert;
# `balance hash` for sdk; a JSESSIONID stick table for learned), nginx
# (`hash $cookie_ARRAffinity consistent`; `$cookie_CUserID` for sdk; no learned row), and in
# `returning` only pingora-bare (examples/bare_pingora.rs: round robin + X-Forwarded-*, the
# least a Pingora proxy does for this work; the floor under sticky-proxy's figures).
# Configs: confs.sh.
#
#   benches/load/run.sh                      # defaults: THREADS="1 2" ROUNDS=3 DURATION=4s
#   DURATION=5s ROUNDS=5 THREADS=2 benches/load/run.sh
#
# Environment (all optional):
#   DURATION=4s      wrk duration per measured run (whole seconds)
#   ROUNDS=3         rounds; each round runs every workload on every proxy, in turn
#   THREADS="1 2"    worker threads per proxy (Pingora threads / HAProxy nbthread / NGINX workers)
#   WARMUP=1s        unrecorded warm-up per proxy after each start
#   CONNS=32         wrk connections (one wrk thread)
#   PIN=1            pin CPUs with taskset (see README); PIN=0 leaves placement to the scheduler
#   TIME_LIMIT=580   seconds since start after which no new run begins (the report notes it)
#   QUIET=20         the report adds tables of the runs during which everything else on the
#                    machine used at most this % of one core
#   CARGO_TARGET_DIR (default: target)   where `cargo build --release` puts sticky-proxy
#   STICKY_BIN=path  use this sticky-proxy binary and skip the build (BARE_BIN=path: the
#                    bare_pingora example; default: examples/bare_pingora next to STICKY_BIN)
#   KEEP_TMP=1       keep the temporary directory (configs, logs)
#   WORKLOADS="new returning rotating sdk learned"  a subset, for focused trials
#   RESULTS_DIR=dir  where results-<N>t.txt and summary.md go (default: benches/load; use another
#                    directory for trial runs so the published results stay)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
LIB="$HERE/benchlib.py"
# The interpreter itself, not a version-manager shim: it is started several times per run.
PY="$(python3 -c 'import sys; print(sys.executable)')"
LUA="$HERE/cycle.lua"
# shellcheck source=confs.sh
. "$HERE/confs.sh"

DURATION="${DURATION:-4s}"
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-1 2}"
WARMUP="${WARMUP:-1s}"
CONNS="${CONNS:-32}"
PIN="${PIN:-1}"
TIME_LIMIT="${TIME_LIMIT:-580}"
QUIET="${QUIET:-20}"
RESULTS_DIR="${RESULTS_DIR:-$HERE}"
mkdir -p "$RESULTS_DIR"
DUR_S="${DURATION%s}"
WARM_S="${WARMUP%s}"
[[ "$DUR_S" =~ ^[0-9]+$ && "$WARM_S" =~ ^[0-9]+$ && "$ROUNDS" =~ ^[0-9]+$ ]] || {
  echo "run.sh: DURATION and WARMUP must be whole seconds (e.g. 4s), ROUNDS a number" >&2
  exit 2
}

PROXIES=(sticky sticky-off haproxy nginx)
read -r -a WORKLOADS <<<"${WORKLOADS:-new returning rotating sdk learned}"
# NGINX (open source) cannot learn session ids: no row for it in `learned`.
# pingora-bare (the floor) is measured in `returning` only, when that workload runs.
BARE=0
[[ " ${WORKLOADS[*]} " == *" returning "* ]] && BARE=1
proxies_for() { # workload → the proxies measured in it
  case "$1" in
    learned) echo sticky sticky-off haproxy ;;
    returning) if [ "$BARE" = 1 ]; then echo "${PROXIES[@]}" pingora-bare; else echo "${PROXIES[@]}"; fi ;;
    *) echo "${PROXIES[@]}" ;;
  esac
}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Tools
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if [ -z "${STICKY_BIN:-}" ]; then command -v cmake >/dev/null 2>&1 || need+=(cmake); fi
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

# The Debian packages start system services where systemd runs; nothing here uses them, and the
# ports used below are checked to be free.
for p in "${BACKEND_PORTS[@]}" "${PORT[@]}" "${SDK_PORT[@]}" "${LEARN_PORT[@]}"; do
  if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
    echo "run.sh: port 127.0.0.1:$p is in use; stop what listens there first" >&2
    exit 1
  fi
done

# ---------------------------------------------------------------------------------------------
# sticky-proxy
[ -n "${STICKY_BIN:-}" ] || log "building sticky-proxy and bare_pingora (cargo build --release, CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target})"
locate_binaries
[ -x "$BIN" ] || { echo "run.sh: no sticky-proxy binary at $BIN" >&2; exit 1; }
if [ "$BARE" = 1 ] && [ ! -x "$BARE_BIN" ]; then
  log "warning: no bare_pingora binary at $BARE_BIN (set BARE_BIN); no pingora-bare row"
  BARE=0
fi

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: everything started is killed on exit, whatever happens.
TMP="$(mktemp -d /tmp/sticky-bench.XXXXXX)"
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

wait_http() { # port: wait (10 s at most) until GET / answers 200
  local port=$1 i
  for ((i = 0; i < 100; i++)); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/")" = 200 ] && return 0
    sleep 0.1
  done
  echo "run.sh: nothing answers 200 on 127.0.0.1:$port" >&2
  return 1
}

NCPU=$(nproc)
if [ "$PIN" = 1 ] && [ "$NCPU" -ge 2 ]; then
  LAST=$((NCPU - 1))
  AUX_PIN=(taskset -c "$LAST")            # wrk and the backends: the last CPU
else
  PIN=0
  AUX_PIN=()
fi
proxy_pin() { # threads → taskset prefix for the proxy (N=1: CPU 0 only, away from wrk)
  if [ "$PIN" = 1 ] && [ "$1" -lt "$NCPU" ]; then
    echo "taskset -c 0-$(($1 - 1))"
  fi
}

# ---------------------------------------------------------------------------------------------
# Backends: one NGINX, three server blocks iis1..iis3 on 127.0.0.1:9101-9103.
mkdir -p "$TMP/backends"
backends_conf "$TMP/backends" >"$TMP/backends/nginx.conf"
"${AUX_PIN[@]}" nginx -p "$TMP/backends" -e "$TMP/backends/error.log" -c "$TMP/backends/nginx.conf" &
BACKENDS=$!
STARTED+=($!)
for p in "${BACKEND_PORTS[@]}"; do wait_http "$p"; done

start_proxies() { # threads
  local n=$1 pin dir
  pin=$(proxy_pin "$n")
  for name in sticky sticky-off sticky-sdk sticky-learn; do
    local aff port
    case $name in
      sticky) aff=cookie port=${PORT[sticky]} ;;
      sticky-off) aff=off port=${PORT[sticky-off]} ;;
      sticky-sdk) aff=hash port=${SDK_PORT[sticky]} ;;
      sticky-learn) aff=learn port=${LEARN_PORT[sticky]} ;;
    esac
    sticky_conf "$TMP/$name" "$n" "$port" "$aff" >"$TMP/$name-${n}t.yaml"
    # RUST_LOG=warn: no per-request access log line (HAProxy and NGINX log nothing either).
    RUST_LOG=warn $pin "$BIN" -c "$TMP/$name-${n}t.yaml" >"$TMP/$name-${n}t.log" 2>&1 &
    ROOT[$name]=$!
    STARTED+=($!)
  done
  haproxy_conf "$n" >"$TMP/haproxy-${n}t.cfg"
  haproxy -c -q -f "$TMP/haproxy-${n}t.cfg" || haproxy -c -f "$TMP/haproxy-${n}t.cfg"
  $pin haproxy -db -f "$TMP/haproxy-${n}t.cfg" >"$TMP/haproxy-${n}t.log" 2>&1 &
  ROOT[haproxy]=$!
  STARTED+=($!)
  dir="$TMP/nginx-${n}t"
  mkdir -p "$dir"
  nginx_conf "$n" "$dir" on >"$dir/nginx.conf"
  $pin nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
  ROOT[nginx]=$!
  STARTED+=($!)
  if [ "$BARE" = 1 ]; then
    local backends=()
    for p in "${BACKEND_PORTS[@]}"; do backends+=("127.0.0.1:$p"); done
    RUST_LOG=warn $pin "$BARE_BIN" "127.0.0.1:${PORT[pingora-bare]}" "$n" "${backends[@]}" \
      >"$TMP/pingora-bare-${n}t.log" 2>&1 &
    ROOT[pingora-bare]=$!
    STARTED+=($!)
    wait_http "${PORT[pingora-bare]}"
  fi
  for name in "${PROXIES[@]}"; do
    wait_http "${PORT[$name]}"
    wait_http "${SDK_PORT[$name]}"
    if [ -n "${LEARN_PORT[$name]:-}" ]; then wait_http "${LEARN_PORT[$name]}"; fi
  done
}

stop_proxies() {
  stop_pid "${ROOT[sticky]}" INT
  stop_pid "${ROOT[sticky-off]}" INT
  stop_pid "${ROOT[sticky-sdk]}" INT
  stop_pid "${ROOT[sticky-learn]}" INT
  stop_pid "${ROOT[haproxy]}" TERM
  stop_pid "${ROOT[nginx]}" TERM
  if [ "$BARE" = 1 ]; then stop_pid "${ROOT[pingora-bare]}" INT; fi
}

# ---------------------------------------------------------------------------------------------
# Cookies: ask each proxy for the values it issues.
declare -A VALID=()   # proxy → space-separated affinity values (one per backend)
collect_cookies() { # proxy
  local name=$1 port=${PORT[$1]} seen="" v i
  for ((i = 0; i < 30; i++)); do
    v=$(curl -s -D - -o /dev/null "http://127.0.0.1:$port/" |
      sed -n 's/^[Ss]et-[Cc]ookie: ARRAffinity=\([^;]*\).*/\1/p' | tr -d '\r' | head -1)
    [ -n "$v" ] && [[ " $seen " != *" $v "* ]] && seen="$seen $v"
    [ "$(wc -w <<<"$seen")" -ge 3 ] && break
  done
  [ "$(wc -w <<<"$seen")" -eq 3 ] || { echo "run.sh: $name issued ${seen:-no} cookies, expected 3" >&2; exit 1; }
  VALID[$name]="${seen# }"
}
check_sticky() { # proxy value: the cookie must pin 5 requests to one backend
  local port=${PORT[$1]} bodies
  bodies=$(for i in 1 2 3 4 5; do curl -s -H "Cookie: ARRAffinity=$2" "http://127.0.0.1:$port/"; done | sort -u)
  [ "$(wc -l <<<"$bodies")" -eq 1 ] || { echo "run.sh: $1 is not sticky: $bodies" >&2; exit 1; }
}

check_hash() { # proxy: on its sdk port, one CUserID must always reach one backend, no cookie
  local port=${SDK_PORT[$1]} bodies
  bodies=$(for i in 1 2 3 4 5; do curl -s -H "Cookie: CUserID=u42" "http://127.0.0.1:$port/"; done | sort -u)
  [ "$(wc -l <<<"$bodies")" -eq 1 ] || { echo "run.sh: $1 does not hash CUserID: $bodies" >&2; exit 1; }
  if curl -s -D - -o /dev/null -H "Cookie: CUserID=u42" "http://127.0.0.1:$port/" | grep -qi '^set-cookie'; then
    echo "run.sh: $1 inserts a cookie in hash mode" >&2
    exit 1
  fi
}

check_learn() { # proxy: on its learned port, a JSESSIONID seen once must keep its backend
  local port=${LEARN_PORT[$1]} bodies
  bodies=$(for i in 1 2 3 4 5 6; do curl -s -H "Cookie: JSESSIONID=BENCHCHECK$1" "http://127.0.0.1:$port/"; done | sort -u)
  [ "$(wc -l <<<"$bodies")" -eq 1 ] || { echo "run.sh: $1 does not learn JSESSIONID: $bodies" >&2; exit 1; }
  if curl -s -D - -o /dev/null -H "Cookie: JSESSIONID=BENCHCHECK$1" "http://127.0.0.1:$port/" | grep -qi '^set-cookie'; then
    echo "run.sh: $1 inserts a cookie in learned mode" >&2
    exit 1
  fi
}

seed_learn() { # proxy: send every id of learned.txt once (at least) so the table holds them all
  local port=${LEARN_PORT[$1]} n
  "${AUX_PIN[@]}" timeout -k 2 20 wrk -t1 -c"$CONNS" -d2s -s "$LUA" "http://127.0.0.1:$port/" \
    -- "$TMP/learned.txt" >"$TMP/seed-$1.out" 2>&1 || true
  n=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$TMP/seed-$1.out")
  echo "# learned: seeded $1 with ${n:-0} requests over 10000 ids" >>"$RAW"
  [ "${n:-0}" -ge 10000 ] || log "warning: $1 saw only ${n:-0} seed requests; part of its learned table fills during round 1"
}

# ---------------------------------------------------------------------------------------------
# One measured run
RAW=""
TRUNCATED=0
measure() { # threads round workload proxy
  local n=$1 round=$2 workload=$3 proxy=$4 port url u0 u1 k0 k1 b0 b1 s0 s1 h t0 t1 wall root
  local opts=() sargs=()
  port=${PORT[$proxy]}
  root=${ROOT[$proxy]}
  [ "$workload" = sdk ] && [ "$proxy" = sticky ] && root=${ROOT[sticky-sdk]}
  [ "$workload" = learned ] && [ "$proxy" = sticky ] && root=${ROOT[sticky-learn]}
  case "$workload" in
    new) ;;
    returning) opts=(-H "Cookie: ARRAffinity=${RETURNING[$proxy]}") ;;
    rotating) opts=(-s "$LUA"); sargs=(-- "$TMP/rotating-$proxy.txt") ;;
    sdk) opts=(-s "$LUA"); sargs=(-- "$TMP/sdk.txt"); port=${SDK_PORT[$proxy]} ;;
    learned) opts=(-s "$LUA"); sargs=(-- "$TMP/learned.txt"); port=${LEARN_PORT[$proxy]} ;;
  esac
  url="http://127.0.0.1:$port/"
  read -r u0 k0 b0 s0 _ < <("$PY" "$LIB" snap --reset "$root" "$BACKENDS")
  t0=$(date +%s.%N)
  "$PY" "$LIB" run-timed "$TMP/wrk.cpu" timeout -k 2 $((DUR_S + 20)) \
    "${AUX_PIN[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" --timeout 2s --latency \
    "${opts[@]}" "$url" "${sargs[@]}" >"$TMP/wrk.out" 2>&1 || {
    echo "run.sh: wrk failed for $proxy/$workload:" >&2
    cat "$TMP/wrk.out" >&2
    exit 1
  }
  t1=$(date +%s.%N)
  read -r u1 k1 b1 s1 h < <("$PY" "$LIB" snap "$root" "$BACKENDS")
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  {
    echo "=== threads=$n round=$round workload=$workload proxy=$proxy url=$url"
    cat "$TMP/wrk.out"
    "$PY" "$LIB" record threads="$n" round="$round" workload="$workload" proxy="$proxy" \
      wall_s="$wall" user0="$u0" user1="$u1" sys0="$k0" sys1="$k1" hwm_kb="$h" busy0="$s0" busy1="$s1" \
      back0="$b0" back1="$b1" wrk_ticks="$(cat "$TMP/wrk.cpu")" "$TMP/wrk.out"
  } >>"$RAW"
}

# ---------------------------------------------------------------------------------------------
# Main
N_THREADS=$(wc -w <<<"$THREADS")
N_RUNS=0
for w in "${WORKLOADS[@]}"; do N_RUNS=$((N_RUNS + $(proxies_for "$w" | wc -w))); done
# About half a second per run beyond DURATION (sampling /proc, starting wrk), plus start-up.
EST=$((N_THREADS * (ROUNDS * N_RUNS * (2 * DUR_S + 1) / 2 + (${#PROXIES[@]} + BARE) * (WARM_S + 1) + 2 * 3 + 10)))
log "plan: THREADS='$THREADS' ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS PIN=$PIN; about ${EST}s of measuring (limit ${TIME_LIMIT}s since start, ${SECONDS}s used)"

"$PY" "$LIB" cookies "$TMP/sdk.txt" 1000 "CUserID="
"$PY" "$LIB" cookies "$TMP/rotating-nginx.txt" 10000 "ARRAffinity="
# learned: 10,000 Tomcat-style ids (32 hex digits); each proxy learns them on first sight.
"$PY" "$LIB" jsessionids "$TMP/learned.txt" 10000
declare -A RETURNING=()

for n in $THREADS; do
  RAW="$RESULTS_DIR/results-${n}t.txt"
  {
    echo "# sticky-proxy load benchmark raw output: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" \
      "(uncommitted changes under src/ and examples/: $(git -C "$REPO" status --porcelain -- src examples 2>/dev/null | wc -l) files)"
    echo "# binary $BIN, built $(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ)"
    [ "$BARE" = 1 ] && echo "# bare_pingora $BARE_BIN, built $(date -u -r "$BARE_BIN" +%Y-%m-%dT%H:%M:%SZ)"
    echo "# $(uname -srm); nproc $NCPU; $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
    echo "# $(haproxy -v | head -1); $(nginx -v 2>&1); $(wrk -v 2>&1 | head -1)"
    echo "# threads=$n rounds=$ROUNDS duration=$DURATION conns=$CONNS wrk-threads=1 pin=$PIN" \
      "(proxy: $(proxy_pin "$n" | sed 's/^$/unpinned/'); wrk+backends: ${AUX_PIN[*]:-unpinned})"
  } >"$RAW"

  log "starting the proxies with $n worker thread(s)"
  start_proxies "$n"
  collect_cookies sticky
  collect_cookies haproxy
  for p in sticky haproxy; do
    for v in ${VALID[$p]}; do check_sticky "$p" "$v"; done
  done
  # returning: a valid cookie of that proxy. sticky-off ignores cookies: it gets sticky's (same
  # request bytes); NGINX issues none and hashes any value: it gets HAProxy's.
  RETURNING=([sticky]="${VALID[sticky]%% *}" [sticky-off]="${VALID[sticky]%% *}"
    [haproxy]="${VALID[haproxy]%% *}" [nginx]="${VALID[haproxy]%% *}"
    [pingora-bare]="${VALID[sticky]%% *}")
  # rotating: 10,000 values = the proxy's 3 valid values + 9,997 ids it never issued (NGINX: all
  # 10,000 are distinct hash keys). The unknown ids are the same 64-hex strings for every proxy.
  "$PY" "$LIB" cookies "$TMP/rotating-sticky.txt" 10000 "ARRAffinity=" ${VALID[sticky]}
  cp "$TMP/rotating-sticky.txt" "$TMP/rotating-sticky-off.txt"
  "$PY" "$LIB" cookies "$TMP/rotating-haproxy.txt" 10000 "ARRAffinity=" ${VALID[haproxy]}
  echo "# cookies: sticky=${VALID[sticky]} haproxy=${VALID[haproxy]}" >>"$RAW"
  check_hash sticky
  check_hash haproxy
  check_hash nginx
  check_learn sticky
  check_learn haproxy

  extra=()
  [ "$BARE" = 1 ] && extra=(pingora-bare)
  for p in "${PROXIES[@]}" "${extra[@]}"; do
    "${AUX_PIN[@]}" wrk -t1 -c"$CONNS" -d"$WARMUP" "http://127.0.0.1:${PORT[$p]}/" >/dev/null 2>&1
  done
  # learned: the measured runs find every id in the table (the seeding pass did the inserts).
  seed_learn sticky
  seed_learn haproxy

  for ((round = 1; round <= ROUNDS; round++)); do
    for workload in "${WORKLOADS[@]}"; do
      # Rotate which proxy goes first each round so that position effects cancel out too.
      read -r -a these <<<"$(proxies_for "$workload")"
      for ((k = 0; k < ${#these[@]}; k++)); do
        proxy=${these[$(((k + round - 1) % ${#these[@]}))]}
        if ((SECONDS + DUR_S + 2 > TIME_LIMIT)); then
          TRUNCATED=1
          break 3
        fi
        measure "$n" "$round" "$workload" "$proxy"
      done
    done
  done
  if [ "$TRUNCATED" = 1 ]; then
    echo "NOTE **Truncated**: TIME_LIMIT=${TIME_LIMIT}s reached during the ${n}-thread matrix; later runs were skipped." >>"$RAW"
  fi
  log "stopping the proxies"
  stop_proxies
  [ "$TRUNCATED" = 1 ] && break
done

# ---------------------------------------------------------------------------------------------
# Report
SUMMARY="$RESULTS_DIR/summary.md"
RAWS=()
for n in $THREADS; do [ -f "$RESULTS_DIR/results-${n}t.txt" ] && RAWS+=("$RESULTS_DIR/results-${n}t.txt"); done
{
  echo "<!-- generated by benches/load/run.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ); raw: ${RAWS[*]#$REPO/} -->"
  "$PY" "$LIB" report --quiet="$QUIET" "${RAWS[@]}"
} >"$SUMMARY"
echo
cat "$SUMMARY"
echo
log "done in ${SECONDS}s; raw output: ${RAWS[*]#$REPO/}; table: ${SUMMARY#$REPO/}"
