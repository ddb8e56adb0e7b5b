#!/usr/bin/env bash
# `make run`: the demo backends iis1/iis2/iis3 on 127.0.0.1:9001-9003 and the proxy on
# 127.0.0.1:6188 with conf/demo.yaml (or CONF=conf/<other>.yaml). Ctrl-C stops everything.
set -euo pipefail
bin=${CARGO_TARGET_DIR:-target}/release
"$bin/demo-backend" iis1=127.0.0.1:9001 iis2=127.0.0.1:9002 iis3=127.0.0.1:9003 &
backends=$!
redis=""
trap 'kill $backends $proxy $redis 2>/dev/null || true' EXIT INT TERM
conf=${CONF:-conf/demo.yaml}
# A config with a Redis session store: start a throw-away redis-server on 127.0.0.1:6379
# unless one already answers there (without it the proxy still runs, on its local table).
if grep -q "type: redis" "$conf" && command -v redis-server >/dev/null \
  && ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  redis-server --save "" --appendonly no --bind 127.0.0.1 --port 6379 >/dev/null &
  redis=$!
  sleep 0.3
fi
RUST_LOG=${RUST_LOG:-info} "$bin/sticky-proxy" -c "$conf" &
proxy=$!
sleep 1
[ "$conf" = conf/demo.yaml ] || { echo "sticky-proxy runs $conf on http://127.0.0.1:6188"; wait $proxy; exit; }
cat <<'TXT'

sticky-proxy is listening on http://127.0.0.1:6188 (backends iis1, iis2). Try:

  curl -i http://127.0.0.1:6188/                       # hello iis1 + Set-Cookie: ARRAffinity=...
  curl -s -c /tmp/jar http://127.0.0.1:6188/           # keep the cookie in a jar ...
  for i in 1 2 3 4; do curl -s -b /tmp/jar http://127.0.0.1:6188/; done   # ... same backend every time
  for i in 1 2 3 4; do curl -s http://127.0.0.1:6188/; done               # no cookie: iis1, iis2, iis1, ...
  curl -i http://127.0.0.1:6188/disable-affinity       # no ARRAffinity cookie, no opt-out header

  curl -s http://127.0.0.1:6189/api/pools              # admin: backends, states, activity
  curl -s -X POST -H "Authorization: Bearer $(cat conf/demo-admin-token)" \
       -d '{"state":"draining"}' http://127.0.0.1:6189/api/pools/web/backends/iis1/state
  curl -s http://127.0.0.1:6189/metrics | grep sticky_requests_total

Press Ctrl-C to stop.
TXT
wait $proxy
