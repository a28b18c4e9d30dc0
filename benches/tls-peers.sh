#!/usr/bin/env bash
# TLS termination beside HAProxy, same run, same origin (nginx), one worker
# thread each, set up as benches/peers/peers.sh does: the proxy pinned to
# CPU 1, the load generator and the origin to CPU 0. Rows: full and resumed
# TLS 1.3 handshakes (benches/handshakes.rs: a new connection per request,
# no session offered / the previous ticket offered), then requests over
# keep-alive TLS (h2load, HTTP/1.1 and HTTP/2 by ALPN). For each: what the
# client got per second, and the proxy's own CPU time per operation (from
# /proc/PID/stat over the run), whence operations per second per core =
# 1e6 / (CPU us per op), the figure to compare when the client, not the
# proxy, is the bottleneck. Ratios are what to read. Not run by CI.
#
#   cargo dist && bash benches/tls-peers.sh [seconds]
set -euo pipefail
SECS=${1:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PREDICTOR_BIN:-$ROOT/target/dist/predictor}
CLIENT_CPU=${CLIENT_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1}
(cd "$ROOT" && cargo bench -q --bench handshakes --no-run 2>/dev/null)
LOAD=$(cd "$ROOT" && ls -t target/release/deps/handshakes-* | grep -v '\.d$' | head -1)
LOAD=$ROOT/$LOAD
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
taskset -c "$CLIENT_CPU" nginx -c "$W/nginx.conf" -p "$W" &

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
taskset -c "$PROXY_CPU" "$BIN" run --config "$W/cfg" 2>"$W/predictor.log" &
PRED=$!

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
taskset -c "$PROXY_CPU" haproxy -f "$W/haproxy.cfg" -db >/dev/null 2>&1 &
HAP=$!
sleep 1.5

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# measure PID COMMAND... -> "ops/s us/op" (COMMAND prints ops/s on stdout)
measure() {
  local pid=$1; shift
  local t0 out t1
  t0=$(ticks "$pid")
  out=$("$@")
  t1=$(ticks "$pid")
  awk -v r="$out" -v d="$((t1 - t0))" -v hz="$HZ" -v s="$SECS" \
    'BEGIN { us = (r > 0 ? d / hz * 1e6 / (r * s) : 0); printf "%.0f %.1f", r, us }'
}
hs() { # port mode -> handshakes/s
  taskset -c "$CLIENT_CPU" "$LOAD" "127.0.0.1:$1" s.example "$SECS" 64 "$2" >"$W/hs.$1.$2"
  awk '{ print $4 }' "$W/hs.$1.$2"
}
h2l() { # port extra-args -> req/s
  taskset -c "$CLIENT_CPU" h2load -D "$SECS" -c 32 -m 1 $2 --connect-to="127.0.0.1:$1" "https://s.example:$1/" 2>/dev/null \
    | awk '/^finished in/ { gsub(",", "", $4); printf "%.0f", $4 }'
}
row() { # label "ops us" "ops us"
  awk -v l="$1" -v a="$2" -v b="$3" 'BEGIN {
    split(a, x, " "); split(b, y, " ");
    pa = (x[2] > 0 ? 1e6 / x[2] : 0); pb = (y[2] > 0 ? 1e6 / y[2] : 0);
    printf "| %s | %s / %s (%.2f) | %.0f / %.0f us | %.0f / %.0f (%.2f) |\n", l, x[1], y[1], (y[1] > 0 ? x[1] / y[1] : 0), x[2], y[2], pa, pb, (pb > 0 ? pa / pb : 0)
  }'
}
echo "| one worker each, proxy on CPU $PROXY_CPU | per second, predictor / HAProxy (ratio) | proxy CPU per op | per core (1e6 / CPU us) (ratio) |"
echo "|---|---:|---:|---:|"
row "full TLS 1.3 handshakes (64 clients)" "$(measure $PRED hs 18443 full)" "$(measure $HAP hs 19443 full)"
row "resumed TLS 1.3 handshakes (64 clients)" "$(measure $PRED hs 18443 resumed)" "$(measure $HAP hs 19443 resumed)"
row "requests, keep-alive TLS, HTTP/1.1 (h2load -c 32)" "$(measure $PRED h2l 18443 --h1)" "$(measure $HAP h2l 19443 --h1)"
row "requests, TLS, HTTP/2 (h2load -c 32 -m 1)" "$(measure $PRED h2l 18443 '')" "$(measure $HAP h2l 19443 '')"
echo
echo "Handshake clients (connections, resumed, errors):"
for f in "$W"/hs.*; do echo "  $(basename "$f"): $(cat "$f")"; done
