#!/usr/bin/env bash
# Learned sessions: the Redis store against the local table, on this machine, loopback only.
# CPU per request of the proxy (and of redis-server beside it) and wrk's p99, for
#   hit         returning JSESSIONIDs the instance already knows (local table; with Redis: a
#               local cache hit, plus at most one TTL refresh per entry and interval)
#   miss        a fresh id on every request: nobody knows it (with Redis: a GETEX round trip
#               that misses, then a SET NX + GET from the writer task)
#   remote-hit  (Redis only) ids a first instance learned, sent to a second one: every request
#               misses locally and is answered by Redis
# Bounded: each measured run lasts DURATION seconds; the whole script a couple of minutes.
#
#   benches/load/redis-store.sh                  # DURATION=5 CONNS=16 THREADS=1
#   MODE=cluster benches/load/redis-store.sh     # the store in a 3-primary Redis Cluster
# Environment: DURATION, CONNS, THREADS (Pingora threads), CARGO_TARGET_DIR, STICKY_BIN,
# BACKEND_BIN (default: the release builds), MODE (standalone: one redis-server; sentinel: a
# primary, a replica and a sentinel, the store finding the primary through it; cluster: three
# primaries made with redis-cli --cluster create; redis-server CPU is then the sum of the
# servers'), OUT (default benches/load/results-redis-store.txt, or -<MODE>.txt).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DURATION="${DURATION:-5}"
CONNS="${CONNS:-16}"
THREADS="${THREADS:-1}"
MODE="${MODE:-standalone}"
case "$MODE" in
  standalone) OUT="${OUT:-$HERE/results-redis-store.txt}" ;;
  sentinel | cluster) OUT="${OUT:-$HERE/results-redis-store-$MODE.txt}" ;;
  *) echo "redis-store.sh: MODE is standalone, sentinel or cluster, not $MODE" >&2; exit 2 ;;
esac
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
BIN="${STICKY_BIN:-$TARGET/release/sticky-proxy}"
BACKEND="${BACKEND_BIN:-$TARGET/release/demo-backend}"
if [ ! -x "$BIN" ] || [ ! -x "$BACKEND" ]; then
  (cd "$REPO" && cargo build --release --bins --features demo)
fi
command -v wrk >/dev/null || { echo "redis-store.sh: needs wrk (apt-get install wrk)" >&2; exit 2; }
REDIS="$(command -v redis-server || echo /usr/bin/redis-server)"
[ -x "$REDIS" ] || { echo "redis-store.sh: needs redis-server (scripts/setup.sh)" >&2; exit 2; }

TMP="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

RPORT=26379; B1=29101; B2=29102; PA=26188; PB=26198
REDIS_PIDS=()
redis() { # port args... (its own directory: a cluster node keeps nodes.conf there)
  local port=$1; shift
  mkdir -p "$TMP/redis-$port"
  "$REDIS" --save "" --appendonly no --bind 127.0.0.1 --port "$port" --dir "$TMP/redis-$port" "$@" \
    >"$TMP/redis-$port.log" 2>&1 &
  REDIS_PIDS+=($!); PIDS+=($!)
}
wait_for() { # what command...
  local what=$1; shift
  for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return; sleep 0.05; done
  echo "redis-store.sh: $what never happened" >&2; exit 1
}
case "$MODE" in
  standalone)
    redis $RPORT
    STORE="address: \"127.0.0.1:$RPORT\"" ;;
  sentinel)
    redis $RPORT
    redis $((RPORT + 1)) --replicaof 127.0.0.1 $RPORT
    mkdir -p "$TMP/sentinel"
    printf 'port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor bench 127.0.0.1 %s 1\n' \
      $((RPORT + 2)) "$TMP/sentinel" $RPORT >"$TMP/sentinel/sentinel.conf"
    "$REDIS" "$TMP/sentinel/sentinel.conf" --sentinel >"$TMP/sentinel.log" 2>&1 &
    PIDS+=($!)
    wait_for "the sentinel" bash -c "redis-cli -p $((RPORT + 2)) sentinel get-master-addr-by-name bench | grep -q $RPORT"
    STORE="mode: sentinel, sentinels: [\"127.0.0.1:$((RPORT + 2))\"], service: bench" ;;
  cluster)
    for p in $RPORT $((RPORT + 1)) $((RPORT + 2)); do
      redis "$p" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000
    done
    for p in $RPORT $((RPORT + 1)) $((RPORT + 2)); do wait_for "redis on $p" redis-cli -p "$p" ping; done
    redis-cli --cluster create 127.0.0.1:$RPORT 127.0.0.1:$((RPORT + 1)) 127.0.0.1:$((RPORT + 2)) \
      --cluster-yes >"$TMP/cluster-create.log"
    for p in $RPORT $((RPORT + 1)) $((RPORT + 2)); do
      wait_for "the cluster on $p" bash -c "redis-cli -p $p cluster info | grep -q cluster_state:ok"
    done
    STORE="mode: cluster, nodes: [\"127.0.0.1:$RPORT\", \"127.0.0.1:$((RPORT + 1))\", \"127.0.0.1:$((RPORT + 2))\"]" ;;
esac
"$BACKEND" iis1=127.0.0.1:$B1 iis2=127.0.0.1:$B2 >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5

conf() { # name port store(local|redis)
  local store="" admin=""
  [ "$1" = redis-b ] && admin="  admin: { addr: \"127.0.0.1:$((PB + 1))\" }"
  [ "$3" = redis ] && store="          store: { type: redis, $STORE, key_prefix: \"bench:\" }"
  cat >"$TMP/$1.yaml" <<YAML
version: 1
threads: $THREADS
pid_file: $TMP/$1.pid
upgrade_sock: $TMP/$1.sock
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 1
sticky:
  listeners: [{ addr: "127.0.0.1:$2" }]
$admin
  pools:
    - name: web
      backends:
        - { name: iis1, addr: "127.0.0.1:$B1" }
        - { name: iis2, addr: "127.0.0.1:$B2" }
      affinity:
        learn:
          presets: [j2ee]
          table: { capacity: 1000000 }
$store
YAML
}

start() { # name port -> sets PROXY_PID
  RUST_LOG=warn "$BIN" -c "$TMP/$1.yaml" >"$TMP/$1.log" 2>&1 &
  PROXY_PID=$!; PIDS+=($PROXY_PID)
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$2/" && return; sleep 0.05; done
  echo "proxy $1 did not start" >&2; cat "$TMP/$1.log" >&2; exit 1
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
redis_ticks() { local t=0 p; for p in "${REDIS_PIDS[@]}"; do t=$((t + $(ticks "$p"))); done; echo $t; }
HZ="$(getconf CLK_TCK)"

ids() { # file prefix count
  python3 -c "import sys; [print(f'JSESSIONID={sys.argv[1]}-{i:08d}') for i in range(int(sys.argv[2]))]" "$2" "$3" >"$1"
}

measure() { # label port proxy_pid cookie_file
  local p0 r0 out reqs p99 cpu rcpu
  p0=$(ticks "$3"); r0=$(redis_ticks)
  out="$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$HERE/cycle.lua" "http://127.0.0.1:$2/" -- "$4")"
  reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
  p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
  cpu="$(python3 -c "print(round(($(ticks "$3") - $p0) / $HZ * 1e6 / $reqs, 1))")"
  rcpu="$(python3 -c "print(round(($(redis_ticks) - $r0) / $HZ * 1e6 / $reqs, 1))")"
  printf '%-24s %10s req  %8.0f req/s  p99 %8s  proxy %6s µs/req  redis-server %5s µs/req\n' \
    "$1" "$reqs" "$(python3 -c "print($reqs / $DURATION)")" "$p99" "$cpu" "$rcpu" | tee -a "$OUT"
  echo "== $1" >>"$TMP/wrk-raw.txt"
  echo "$out" >>"$TMP/wrk-raw.txt"
  LAST_REQS=$reqs
}

# Enough fresh ids that no id repeats within a run (two runs' worth for the remote-hit seeding).
FRESH=$((DURATION * 60000))
ids "$TMP/hit.txt" hit 2000
: >"$OUT"
{
  echo "# benches/load/redis-store.sh  $(date -u +%FT%TZ)  MODE=$MODE DURATION=${DURATION}s CONNS=$CONNS THREADS=$THREADS"
  echo "# $(nproc) cores, shared with other jobs: figures are noisy; compare rows of one run"
} | tee -a "$OUT"

for round in 1 2; do
  for store in local redis; do
    conf "$store" $PA "$store"
    start "$store" $PA
    A=$PROXY_PID
    # Learn the 2,000 returning ids (unknown ids are recorded where they are served).
    wrk -t1 -c"$CONNS" -d2s -s "$HERE/cycle.lua" "http://127.0.0.1:$PA/" -- "$TMP/hit.txt" >/dev/null
    measure "$store hit (r$round)" $PA $A "$TMP/hit.txt"
    ids "$TMP/miss-$store-$round.txt" "miss-$store-$round" $FRESH
    measure "$store miss (r$round)" $PA $A "$TMP/miss-$store-$round.txt"
    if [ "$store" = redis ]; then
      # A second instance: every id the first just learned is a local miss and a Redis hit.
      conf redis-b $PB redis
      start redis-b $PB
      # Let A learn as many more ids (unmeasured), so that B does not run out of them.
      tail -n +"$((LAST_REQS + 1))" "$TMP/miss-$store-$round.txt" >"$TMP/rest-$round.txt"
      more="$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$HERE/cycle.lua" "http://127.0.0.1:$PA/" \
        -- "$TMP/rest-$round.txt" | awk '/requests in/ {print $1}')"
      sleep 1 # the writer's queue drains
      head -n "$((LAST_REQS + more))" "$TMP/miss-$store-$round.txt" >"$TMP/remote-$round.txt"
      measure "redis remote-hit (r$round)" $PB $PROXY_PID "$TMP/remote-$round.txt"
      # How many of those requests Redis answered (the rest: the id list wrapped, local hits).
      curl -s "http://127.0.0.1:$((PB + 1))/api/pools/web" | python3 -c \
        "import json,sys; s=json.load(sys.stdin)['stores']['learn']; print(f\"#   instance B: redis lookups hit {s['lookup_hits']}, miss {s['lookup_misses']}, failed {s['lookup_failures']}; writes dropped {s['writes_dropped']}\")" | tee -a "$OUT"
      kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true
    fi
    kill "$A"; wait "$A" 2>/dev/null || true
  done
done
keys=0
for p in $RPORT $((RPORT + 1)) $((RPORT + 2)); do
  [ "$MODE" = cluster ] || [ "$p" = $RPORT ] || continue
  keys=$((keys + $(redis-cli -p "$p" dbsize)))
done
echo "# redis keys at the end: $keys" | tee -a "$OUT"
echo "# (wrk's raw output of each run follows)" >>"$OUT"
cat "$TMP/wrk-raw.txt" >>"$OUT"
