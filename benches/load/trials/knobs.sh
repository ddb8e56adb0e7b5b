#!/usr/bin/env bash
# The request-path knobs of issue #20 item 2, in user-space instructions per request
# (callgrind-one.sh: cookie affinity, returning session, 1 worker thread, wrk -t1 -c8, 8 s).
# BIN must be a sticky-proxy built with knobs.patch applied (environment switches, read once:
# TRIAL_L4_READ / TRIAL_L4_WRITE = Pingora's per-connection buffer sizes, TRIAL_PRESERVE =
# PeerOptions.http_upstream_request_policy = preserve(), TRIAL_STRIP = our own hop-by-hop and
# Connection-nominated stripping in upstream_request_filter, TRIAL_NOCASE = the upstream request
# rebuilt without Pingora's case-preserving header map). Also `strace -c` for the buffer sizes.
#   BIN=/path/to/sticky-proxy benches/load/trials/knobs.sh > knobs.txt
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../confs.sh"
export PATH="$PATH:/usr/sbin:/sbin"
TMP="$(mktemp -d /tmp/sticky-knobs.XXXXXX)"
mkdir -p "$TMP/backends"
backends_conf "$TMP/backends" >"$TMP/backends/nginx.conf"
nginx -p "$TMP/backends" -e "$TMP/backends/error.log" -c "$TMP/backends/nginx.conf" &
NG=$!
trap 'kill $NG 2>/dev/null; wait $NG 2>/dev/null; rm -rf "$TMP"' EXIT
sleep 1
conf() { # name extra-server-conf-line
  sticky_conf "$TMP/$1" 1 6201 cookie >"$TMP/$1.yaml"
  [ -n "${2:-}" ] && sed -i "s/^threads: 1$/threads: 1\n$2/" "$TMP/$1.yaml"
  echo "$TMP/$1.yaml"
}
# A valid cookie, from an instance that is not measured.
RUST_LOG=warn "$BIN" -c "$(conf issue)" >/dev/null 2>&1 &
p=$!
for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:6201/ && break; sleep 0.1; done
VALUE=$(curl -s -D - -o /dev/null http://127.0.0.1:6201/ | sed -n 's/^[Ss]et-[Cc]ookie: ARRAffinity=\([^;]*\).*/\1/p' | tr -d '\r')
kill -INT $p; wait $p
echo "# knobs.sh $(date -u +%Y-%m-%dT%H:%M:%SZ); BIN=$BIN built $(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ); cookie ARRAffinity=$VALUE"
one() { # label env... -- conf-line
  local label=$1; shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" SECS=8 "$HERE/callgrind-one.sh" "$label" "ARRAffinity=$VALUE" "$BIN" -c "$(conf "$label" "${1:-}")" | tail -1
  cp "/tmp/exp/$label.summary" "$HERE/knobs-$label.txt"
}
if [ "${STRACE_ONLY:-0}" != 1 ]; then
  one read64k TRIAL_L4_READ=65536 --
  one read0 --
  one read0-write0 TRIAL_L4_WRITE=0 --
  one preserve TRIAL_PRESERVE=1 --
  one preserve-strip TRIAL_PRESERVE=1 TRIAL_STRIP=1 --
  one nocase TRIAL_NOCASE=1 --
  one nosteal -- "work_stealing: false"
  one pool8 -- "upstream_keepalive_pool_size: 8"
  one pool1024 -- "upstream_keepalive_pool_size: 1024"
fi
# System calls per request (strace attached to the running proxy, not under valgrind).
for v in "read64k TRIAL_L4_READ=65536" "read0" "read0-write0 TRIAL_L4_WRITE=0"; do
  set -- $v
  label=$1
  shift
  env "$@" RUST_LOG=warn "$BIN" -c "$(conf "s-$label")" >/dev/null 2>&1 &
  p=$!
  for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:6201/ && break; sleep 0.1; done
  timeout 15 strace -c -f -p "$p" -o "$TMP/$label.strace" 2>/dev/null &
  st=$!
  sleep 1
  n=$(timeout 30 wrk -t1 -c8 -d4s -H "Cookie: ARRAffinity=$VALUE" http://127.0.0.1:6201/ | sed -n 's/^ *\([0-9]*\) requests in.*/\1/p')
  kill -INT $st
  wait $st
  kill -INT $p
  wait $p
  echo "## strace -c $label: $n requests; calls per request"
  awk -v n="$n" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { printf "%8.2f  %s\n", $4 / n, $NF }' "$TMP/$label.strace" | sort -rn | head -8
done
