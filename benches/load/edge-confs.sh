# Configurations for the edge workloads (edge.sh) and the idle-connection memory measurement
# (idle-memory.sh); sourced after confs.sh (bash). Loopback only. One listener pair per proxy:
# plain HTTP and HTTPS (HTTP/2 and HTTP/1.1 by ALPN), the same certificate for every proxy.

declare -A EDGE_PORT=([sticky]=6301 [pingora-bare]=6331 [haproxy]=6311 [nginx]=6321)
declare -A EDGE_TLS_PORT=([sticky]=6302 [pingora-bare]=6332 [haproxy]=6312 [nginx]=6322)
# HAProxy reserves two descriptors per connection it may accept (the client's and a server's)
# and refuses to start when 2 x maxconn does not fit in the hard limit of open files, 20,000 on
# this machine (`ulimit -Hn`, which cannot be raised here): hence 9,980 (the stats socket takes some too), and edge.sh's c10k
# workload holds 9,900 connections (the same for every proxy).
EDGE_MAXCONN=9980

make_cert() { # dir: cert.pem, key.pem (ECDSA P-256, self-signed, localhost and 127.0.0.1), both.pem
  local dir=$1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
  cat "$dir/cert.pem" "$dir/key.pem" >"$dir/both.pem"
}

edge_sticky_conf() { # path-prefix threads certdir: cookie affinity as the `sticky` row of run.sh
  local name=$1 n=$2 certs=$3
  cat <<EOF
version: 1
threads: $n
pid_file: $name.pid
upgrade_sock: $name.sock
grace_period_seconds: 1
graceful_shutdown_timeout_seconds: 1
sticky:
  listeners:
    - addr: 127.0.0.1:${EDGE_PORT[sticky]}
    - addr: 127.0.0.1:${EDGE_TLS_PORT[sticky]}
      tls:
        certificates: [ { cert_file: $certs/cert.pem, key_file: $certs/key.pem } ]
        alpn: [h2, http/1.1]
  hide_headers: []
  pools:
    - name: web
      balance: round_robin
      backends:
        - { name: iis1, addr: 127.0.0.1:9101, weight: 1 }
        - { name: iis2, addr: 127.0.0.1:9102, weight: 1 }
        - { name: iis3, addr: 127.0.0.1:9103, weight: 1 }
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
}

edge_haproxy_conf() { # threads certdir
  cat <<EOF
global
  nbthread $1
  maxconn $EDGE_MAXCONN
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  http-reuse always
  option forwardfor
frontend fe_edge
  bind 127.0.0.1:${EDGE_PORT[haproxy]}
  bind 127.0.0.1:${EDGE_TLS_PORT[haproxy]} ssl crt $2/both.pem alpn h2,http/1.1
  http-request set-header X-Forwarded-Proto https if { ssl_fc }
  http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  default_backend be_cookie
backend be_cookie
  balance roundrobin
  cookie ARRAffinity insert indirect nocache
  server iis1 127.0.0.1:9101 cookie iis1
  server iis2 127.0.0.1:9102 cookie iis2
  server iis3 127.0.0.1:9103 cookie iis3
EOF
}

edge_nginx_conf() { # threads dir certdir
  local n=$1 dir=$2 certs=$3 t
  echo "worker_processes $n; daemon off; master_process on; pid $dir/nginx.pid;"
  echo "error_log $dir/error.log warn;"
  echo "events { worker_connections $((EDGE_MAXCONN + 1000)); }"
  echo "http {"
  echo "  access_log off;"
  echo "  keepalive_requests 10000000; keepalive_timeout 300s;"
  for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $dir/$t;"; done
  cat <<EOF
  upstream bench_cookie {
    hash \$cookie_ARRAffinity consistent;
    server 127.0.0.1:9101; server 127.0.0.1:9102; server 127.0.0.1:9103;
    keepalive 64; keepalive_requests 10000000; keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:${EDGE_PORT[nginx]};
    listen 127.0.0.1:${EDGE_TLS_PORT[nginx]} ssl http2;
    ssl_certificate $certs/cert.pem;
    ssl_certificate_key $certs/key.pem;
    location / {
      proxy_pass http://bench_cookie;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
    }
  }
}
EOF
}
