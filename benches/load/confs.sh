# Configurations and set-up shared by the benchmark scripts (sourced; bash). Loopback only.

# Loopback only. Backends are fixed by the benchmark's definition; proxies get their own ports.
BACKEND_PORTS=(9101 9102 9103)
# Each proxy row is a process (tree) measured on its own. `sticky` inserts ARRAffinity like
# HAProxy; `sticky-off` is sticky-proxy with `affinity: { enabled: false }`.
declare -A PORT=([sticky]=6201 [sticky-off]=6202 [haproxy]=6203 [nginx]=6204 [pingora-bare]=6205)
# The `sdk` workload uses each proxy's application-cookie hash mode (hash of CUserID on a
# consistent ring, no Set-Cookie): a separate sticky-proxy process (`sticky-sdk`, port 6211) and a
# second frontend/server block of the HAProxy and NGINX processes. sticky-off has no affinity and
# gets the same request on its usual port.
declare -A SDK_PORT=([sticky]=6211 [sticky-off]=6202 [haproxy]=6213 [nginx]=6214)
# The `learned` workload (JSESSIONID ids the proxy learns on first sight): sticky-proxy with
# `affinity.learn` (preset j2ee) as its own process (`sticky-learn`, port 6221); HAProxy's
# equivalent, a stick table keyed on the JSESSIONID cookie, as a third frontend. sticky-off gets
# the same requests on its usual port. NGINX has no row: open-source NGINX cannot learn a session
# id (`sticky learn` is NGINX Plus), and hashing the cookie is already the `sdk` workload.
declare -A LEARN_PORT=([sticky]=6221 [sticky-off]=6202 [haproxy]=6223)

backends_conf() { # dir: one NGINX, three server blocks iis1..iis3 on 127.0.0.1:9101-9103
  local dir=$1 t i
  echo "worker_processes 1; daemon off; master_process on; pid $dir/nginx.pid;"
  echo "error_log $dir/error.log warn;"
  echo "events { worker_connections 4096; }"
  echo "http {"
  echo "  access_log off; default_type text/plain;"
  echo "  keepalive_requests 10000000; keepalive_timeout 300s;"
  for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $dir/$t;"; done
  for i in 1 2 3; do
    echo "  server { listen 127.0.0.1:$((9100 + i)); location / { return 200 \"hello iis$i\\n\"; } }"
  done
  echo "}"
}

sticky_conf() { # path-prefix threads port affinity(cookie|hash|learn|off); env ADMIN_PORT: admin listener
  local name=$1 n=$2 port=$3 aff=$4
  cat <<EOF
version: 1
threads: $n
pid_file: $name.pid
upgrade_sock: $name.sock
grace_period_seconds: 1
graceful_shutdown_timeout_seconds: 1
sticky:
  listeners:
    - addr: 127.0.0.1:$port
  hide_headers: []
  pools:
    - name: web
      balance: round_robin
      backends:
        - { name: iis1, addr: 127.0.0.1:9101, weight: 1 }
        - { name: iis2, addr: 127.0.0.1:9102, weight: 1 }
        - { name: iis3, addr: 127.0.0.1:9103, weight: 1 }
EOF
  case "$aff" in
    cookie)
      cat <<EOF
      affinity:
        cookie:
          name: ARRAffinity
          format: keyed
          secret: bench-secret-0123456789abcdef-0123456789
          path: /
          http_only: true
          indirect: true
          nocache: true
EOF
      ;;
    hash) echo "      affinity: { hash: { sources: [ { type: cookie, name: CUserID } ] } }" ;;
    # Unknown ids are recorded where they are served (answers < 400): the table fills itself.
    learn) echo "      affinity: { learn: { presets: [j2ee], table: { capacity: 100000 } } }" ;;
    off) echo "      affinity: { enabled: false }" ;;
  esac
  # ADMIN_PORT set: the admin listener too (its dashboard's rate sampler runs every 2 s).
  if [ -n "${ADMIN_PORT:-}" ]; then
    echo "  admin: { addr: 127.0.0.1:$ADMIN_PORT }"
  fi
}

haproxy_conf() { # threads
  cat <<EOF
global
  nbthread $1
  maxconn 4096
defaults
  mode http
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  http-reuse always
  # The same header work as sticky-proxy: X-Forwarded-For/-Proto/-Host (set per frontend).
  option forwardfor
frontend fe_cookie
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  bind 127.0.0.1:${PORT[haproxy]}
  default_backend be_cookie
backend be_cookie
  balance roundrobin
  cookie ARRAffinity insert indirect nocache
  server iis1 127.0.0.1:9101 cookie iis1
  server iis2 127.0.0.1:9102 cookie iis2
  server iis3 127.0.0.1:9103 cookie iis3
frontend fe_sdk
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  bind 127.0.0.1:${SDK_PORT[haproxy]}
  default_backend be_sdk
backend be_sdk
  balance hash req.cook(CUserID)
  hash-type consistent
  server iis1 127.0.0.1:9101
  server iis2 127.0.0.1:9102
  server iis3 127.0.0.1:9103
frontend fe_learn
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  bind 127.0.0.1:${LEARN_PORT[haproxy]}
  default_backend be_learn
backend be_learn
  # HAProxy's learned session: the JSESSIONID the client sends, stored on first sight.
  balance roundrobin
  stick-table type string len 64 size 100k expire 30m
  stick on req.cook(JSESSIONID)
  server iis1 127.0.0.1:9101
  server iis2 127.0.0.1:9102
  server iis3 127.0.0.1:9103
EOF
}

nginx_conf() { # threads dir master_process(on|off)
  local n=$1 dir=$2 master=${3:-on} t
  echo "worker_processes $n; daemon off; master_process $master; pid $dir/nginx.pid;"
  echo "error_log $dir/error.log warn;"
  echo "events { worker_connections 4096; }"
  echo "http {"
  echo "  access_log off;"
  echo "  keepalive_requests 10000000; keepalive_timeout 300s;"
  for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $dir/$t;"; done
  for up in "cookie ARRAffinity" "sdk CUserID"; do
    set -- $up
    cat <<EOF
  upstream bench_$1 {
    hash \$cookie_$2 consistent;
    server 127.0.0.1:9101; server 127.0.0.1:9102; server 127.0.0.1:9103;
    keepalive 64; keepalive_requests 10000000; keepalive_timeout 300s;
  }
EOF
  done
  for s in "cookie ${PORT[nginx]}" "sdk ${SDK_PORT[nginx]}"; do
    set -- $s
    cat <<EOF
  server {
    listen 127.0.0.1:$2;
    location / {
      proxy_pass http://bench_$1;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto http;
      proxy_set_header X-Forwarded-Host \$host;
    }
  }
EOF
  done
  echo "}"
}


locate_binaries() { # sets BIN (sticky-proxy) and BARE_BIN (examples/bare_pingora)
  # STICKY_BIN given: use it (BARE_BIN defaults to examples/bare_pingora next to it); else
  # `cargo build --release` both into $CARGO_TARGET_DIR (default target). Needs REPO.
  if [ -n "${STICKY_BIN:-}" ]; then
    BIN="$STICKY_BIN"
    BARE_BIN="${BARE_BIN:-$(dirname "$STICKY_BIN")/examples/bare_pingora}"
    return
  fi
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
  (cd "$REPO" && cargo build --release --bin sticky-proxy --example bare_pingora)
  local out
  case "$CARGO_TARGET_DIR" in
    /*) out="$CARGO_TARGET_DIR/release" ;;
    *) out="$REPO/$CARGO_TARGET_DIR/release" ;;
  esac
  BIN="$out/sticky-proxy"
  BARE_BIN="$out/examples/bare_pingora"
}
