#!/usr/bin/env bash
# TLS termination beside HAProxy, same run, same origin (nginx), one worker
# thread each: full handshakes/s and resumed handshakes/s (openssl s_time,
# a new connection per request, -new / -reuse), and requests/s over
# keep-alive TLS (h2load, HTTP/1.1 and HTTP/2 by ALPN). Ratios are what to
# read; absolute numbers depend on the machine (2 vCPUs here: the client
# shares them). Not run by CI.
#
#   cargo build --release && bash benches/tls-peers.sh [seconds]
set -euo pipefail
SECS=${1:-10}
BIN=${PREDICTOR_BIN:-$(dirname "$0")/../target/release/predictor}
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$W/k.pem" -out "$W/c.pem" -days 30 -subj "/CN=s.example" \
  -addext "subjectAltName=DNS:s.example" 2>/dev/null
mkdir -p "$W/cfg/certs" && cat "$W/c.pem" "$W/k.pem" > "$W/cfg/certs/s.pem"

cat > "$W/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $W/nginx.pid; error_log $W/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:18080; location / { return 200 "ok\n"; } } }
NGINX
nginx -c "$W/nginx.conf" -p "$W" &

cat > "$W/cfg/predictor.toml" <<TOML
tenants = "tenants.tsv"
migration = "migration.toml"
[proxy]
workers = 1
[[listen]]
address = "127.0.0.1:18443"
protocol = "https"
[tls]
certificates = "certs"
# openssl s_time sends no SNI.
default_certificate = "s.pem"
[tiers.web]
pool = "web"
[pools.web]
servers = [{ id = "n", address = "127.0.0.1:18080" }]
TOML
printf 's.example\tt\tweb\tf\n' > "$W/cfg/tenants.tsv"
printf 'default = "migrated"\n' > "$W/cfg/migration.toml"
"$BIN" run --config "$W/cfg" 2>"$W/predictor.log" &

cat > "$W/haproxy.cfg" <<HAP
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend tls
  bind 127.0.0.1:19443 ssl crt $W/cfg/certs/s.pem alpn h2,http/1.1
  default_backend web
backend web
  http-reuse always
  server n 127.0.0.1:18080
HAP
haproxy -f "$W/haproxy.cfg" -db >/dev/null 2>&1 &
sleep 1.5

echo "| | predictor | HAProxy 2.6 | ratio |"
echo "|---|---:|---:|---:|"
stime() { # port mode -> connections/s
  openssl s_time -connect "127.0.0.1:$1" "$2" -time "$SECS" 2>/dev/null \
    | awk '/connections in/ && /real seconds/ { c=$1; s=$4 } END { if (s > 0) printf "%.0f", c / s }'
}
h2l() { # port extra-args -> req/s
  h2load -D "$SECS" -c 32 -m 1 $2 --connect-to="127.0.0.1:$1" "https://s.example:$1/" 2>/dev/null \
    | awk '/^finished in/ { gsub(",", "", $4); printf "%.0f", $4 }'
}
row() { # label predictor haproxy
  awk -v l="$1" -v a="$2" -v b="$3" 'BEGIN { printf "| %s | %s | %s | %.2f |\n", l, a, b, (b > 0 ? a / b : 0) }'
}
row "full handshakes/s (s_time -new)" "$(stime 18443 -new)" "$(stime 19443 -new)"
row "resumed handshakes/s (s_time -reuse)" "$(stime 18443 -reuse)" "$(stime 19443 -reuse)"
row "requests/s, keep-alive TLS, HTTP/1.1 (h2load -c 32)" "$(h2l 18443 --h1)" "$(h2l 19443 --h1)"
row "requests/s, TLS, HTTP/2 (h2load -c 32 -m 1)" "$(h2l 18443 '')" "$(h2l 19443 '')"
