#!/usr/bin/env bash
# Memory per idle keep-alive client connection: predictor, HAProxy and nginx
# (one worker each) in front of a small nginx origin. For each proxy, N
# client connections are opened, each sends one proxied request and reads
# its answer, then all stay open and idle; the proxy's RSS and PSS are read
# before and after, and the difference divided by N.
#
#   usage: benches/idle-memory.sh [PREDICTOR_BIN] [N]
#          (default target/dist/predictor: `cargo dist`; N = 9000: HAProxy
#          takes two descriptors per connection, and this machine's hard
#          limit on open files is 20,000)
#   needs: python3, nginx, haproxy (a missing peer is skipped)
set -euo pipefail
# shellcheck source=benches/origin.sh
source "$(dirname "${BASH_SOURCE[0]}")/origin.sh"
bin=$(realpath "${1:-target/dist/predictor}")
n=${2:-9000}
ulimit -n "$(ulimit -Hn)"   # n for the holder, n for the proxy, each a process of its own
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_origin "$work"
  rm -rf "$work"
}
trap cleanup EXIT
base=$((10000 + RANDOM % 20000))   # below the ephemeral ports the held connections use
origin=$base

start_origin "$work" "$origin"

# Opens N connections to PORT, one request each, keeps them open until
# killed; prints "ready" once all answered.
cat > "$work/hold.py" <<'PY'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
req = b"GET / HTTP/1.1\r\nHost: bench.example\r\n\r\n"
held = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    got = b""
    while b"\r\n\r\n" not in got or not got.endswith(b"ok\n"):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit(f"connection {i} closed early: {got!r}")
        got += chunk
    held.append(s)
print("ready", flush=True)
time.sleep(3600)
PY

# rss_pss PID: resident and proportional set sizes in KiB (process tree).
rss_pss() {
  local rss=0 pss=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    rss=$((rss + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status")))
    pss=$((pss + $(awk '/^Pss:/ {s += $2} END {print s}' "/proc/$p/smaps_rollup")))
  done
  echo "$rss $pss"
}

wait_port() {
  for _ in $(seq 100); do
    if curl -s -o /dev/null -H 'Host: bench.example' "http://127.0.0.1:$1/"; then return 0; fi
    sleep 0.1
  done
  echo "nothing answers on $1" >&2; return 1
}

measure() { # NAME PID PORT
  local name=$1 pid=$2 port=$3 before after holder
  wait_port "$port"
  # Warm up: one request on a throwaway connection.
  curl -s -o /dev/null -H 'Host: bench.example' "http://127.0.0.1:$port/"
  sleep 0.5
  before=$(rss_pss "$pid")
  python3 "$work/hold.py" "$port" "$n" > "$work/hold.$name" &
  holder=$!
  for _ in $(seq 600); do grep -q ready "$work/hold.$name" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$work/hold.$name" || { echo "$name: connections not held" >&2; kill $holder; return 1; }
  # Let allocators hand back what the requests freed (jemalloc's dirty
  # pages decay within 10 s): what is left is what idle connections hold.
  sleep "${SETTLE:-12}"
  after=$(rss_pss "$pid")
  kill $holder; wait $holder 2>/dev/null || true
  read -r rb pb <<< "$before"
  read -r ra pa <<< "$after"
  printf '| %s | %d | %d | %d | %.2f | %.2f |\n' "$name" "$n" "$rb" "$ra" \
    "$(echo "($ra - $rb) / $n" | bc -l)" "$(echo "($pa - $pb) / $n" | bc -l)"
}

echo "| proxy | idle connections | RSS before KiB | RSS after KiB | RSS KiB per connection | PSS KiB per connection |"
echo "|---|---:|---:|---:|---:|---:|"

# predictor
port=$((base + 1))
mkdir -p "$work/p"
printf 'bench.example\tt1\tweb\tf1\n' > "$work/p/tenants.tsv"
echo 'default = "migrated"' > "$work/p/migration.toml"
cat > "$work/p/predictor.toml" <<TOML
tenants = "tenants.tsv"
migration = "migration.toml"
[proxy]
workers = 1
[limits]
max_connections = $((n + 1000))
[timeouts]
client_idle = "600s"
[[listen]]
address = "127.0.0.1:$port"
[tiers.web]
pool = "web"
[pools.web]
servers = [{ id = "o", address = "127.0.0.1:$origin" }]
TOML
RUST_LOG=warn "$bin" run --config "$work/p" > "$work/p.log" 2>&1 &
pids+=($!)
measure predictor $! "$port"

# HAProxy
if command -v haproxy > /dev/null; then
  port=$((base + 2))
  cat > "$work/haproxy.cfg" <<CFG
global
    nbthread 1
    maxconn $((n + 100))
defaults
    mode http
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout http-keep-alive 600s
frontend fe
    bind 127.0.0.1:$port
    default_backend be
backend be
    server o 127.0.0.1:$origin
CFG
  haproxy -db -f "$work/haproxy.cfg" > "$work/haproxy.log" 2>&1 &
  pids+=($!)
  measure haproxy $! "$port"
fi

# nginx as the proxy
port=$((base + 3))
mkdir -p "$work/n/tmp"
cat > "$work/n/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $work/n/nginx.pid; error_log $work/n/error.log warn;
worker_rlimit_nofile $((n + 1000));
events { worker_connections $((n + 1000)); }
http { access_log off;
  client_body_temp_path $work/n/tmp/body; proxy_temp_path $work/n/tmp/proxy;
  fastcgi_temp_path $work/n/tmp/fcgi; uwsgi_temp_path $work/n/tmp/uwsgi; scgi_temp_path $work/n/tmp/scgi;
  keepalive_requests 100000000; keepalive_timeout 600s;
  upstream o { server 127.0.0.1:$origin; keepalive 64; }
  server { listen 127.0.0.1:$port backlog=4096;
    location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGINX
nginx -p "$work/n" -c "$work/n/nginx.conf" > /dev/null 2>&1 &
pids+=($!)
measure nginx $! "$port"
