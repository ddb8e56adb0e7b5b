#!/usr/bin/env bash
# One trial of benches/README.md's optimization log: user-space instructions per request of one
# proxy command under callgrind, wrk -t1 -c8 for SECS (8) seconds with `Cookie: HEADER`, counters
# zeroed after start-up; the same set-up as affinity-cost.sh. The NGINX backends of confs.sh
# (127.0.0.1:9101-9103) must be up and the command must listen on 127.0.0.1:$PORT_A (6201).
#   callgrind-one.sh LABEL HEADER CMD...   → /tmp/exp/LABEL.summary (benchlib.py callgrind)
set -uo pipefail
LABEL=$1; HEADER=$2; shift 2
PORT_A=${PORT_A:-6201}
SECS=${SECS:-8}
mkdir -p /tmp/exp
OUT=/tmp/exp/$LABEL
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file=$OUT.cg "$@" > $OUT.vg.log 2>&1 &
vg=$!
for i in $(seq 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 http://127.0.0.1:$PORT_A/)" = 200 ] && break; sleep 0.2; done
curl -s -o /dev/null -H "Cookie: $HEADER" http://127.0.0.1:$PORT_A/
callgrind_control -z $vg >/dev/null 2>&1
timeout $((SECS+30)) wrk -t1 -c8 -d${SECS}s --timeout 5s -H "Cookie: $HEADER" http://127.0.0.1:$PORT_A/ > $OUT.wrk
kill -INT $vg; wait $vg
reqs=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' $OUT.wrk)
python3 "$(dirname "${BASH_SOURCE[0]}")/../benchlib.py" callgrind $OUT.cg $reqs > $OUT.summary
echo "$LABEL reqs=$reqs $(head -1 $OUT.summary)"
