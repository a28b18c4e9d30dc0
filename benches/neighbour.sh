#!/usr/bin/env bash
# The neighbour of a flooded site, through predictor and HAProxy: one
# webserver that serves 16 requests at a time, 10 ms each (± 20 %; the
# rest wait in its backlog, first come first served, like a PHP-FPM
# pool), two sites on it: `flood.example` loaded by 64 keep-alive clients,
# `calm.example` by 2. The neighbour's latency and errors, alone and under
# the flood, through:
#
#   predictor      max_in_flight = 16 (the webserver's capacity), every
#                  other isolation setting at its default: the fair queue
#   predictor-off  no ceiling, no per-site limit (isolation off)
#   haproxy        `server ... maxconn 16` with its queue (FIFO, `timeout
#                  queue 5s`) and a stick table rate limit keyed by Host
#                  (429 over NEIGHBOUR_RATE requests/s per Host over 10 s)
#
#   usage: benches/neighbour.sh [PREDICTOR_BIN]   (default target/dist/predictor)
#   needs: haproxy, wrk, python3
#
#   NEIGHBOUR_SECONDS  seconds per load (default 8)
#   NEIGHBOUR_REPEAT   rounds, each proxy once per round (default 1)
#   NEIGHBOUR_RATE     HAProxy's per-Host rate limit (default 1000)
#   NEIGHBOUR_PROXIES  subset of predictor,predictor-off,haproxy
#
# Output: per proxy and round, the neighbour's p50 / p99 alone and under
# the flood (wrk's latency distribution), its non-2xx answers and socket
# errors, and the flood's answered requests per second and non-2xx.
set -euo pipefail
bin=$(realpath "${1:-target/dist/predictor}")
secs=${NEIGHBOUR_SECONDS:-8} repeat=${NEIGHBOUR_REPEAT:-1} rate=${NEIGHBOUR_RATE:-1000}
proxies=${NEIGHBOUR_PROXIES:-predictor,predictor-off,haproxy}
IFS=, read -ra names <<<"$proxies"
for tool in haproxy wrk python3; do
  command -v "$tool" >/dev/null || { echo "neighbour.sh needs $tool" >&2; exit 2; }
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
base=$((20000 + RANDOM % 8000))
web=$base port=$((base + 1))

# The webserver: asyncio, HTTP/1.1 keep-alive, a semaphore of 16.
cat > "$work/web.py" <<'PY'
import asyncio, random, sys
port, parallel, ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
sem = None
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            async with sem:
                await asyncio.sleep(ms * random.uniform(0.8, 1.2) / 1000)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()
async def main():
    global sem
    sem = asyncio.Semaphore(parallel)
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()
asyncio.run(main())
PY
python3 "$work/web.py" "$web" 16 10 & pids+=($!)
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$web/" && break; sleep 0.1; done

predictor_folder() { # DIR POOL_KEYS EXTRA
  mkdir -p "$1"
  printf 'flood.example\tflood\tweb\tf\ncalm.example\tcalm\tweb\tf\n' > "$1/tenants.tsv"
  echo 'default = "migrated"' > "$1/migration.toml"
  cat > "$1/predictor.toml" <<TOML
tenants = "tenants.tsv"
migration = "migration.toml"
[proxy]
workers = 1
[[listen]]
address = "127.0.0.1:$port"
[tiers.web]
pool = "web"
$3
[pools.web]
$2
servers = [{ id = "web-1", address = "127.0.0.1:$web" }]
TOML
}
predictor_folder "$work/on" "max_in_flight = 16" ""
predictor_folder "$work/off" "max_in_flight = 0" $'[tiers.web.limits]\nconcurrent = 0'
cat > "$work/haproxy.cfg" <<CFG
global
  maxconn 4000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout queue 5s
frontend fe
  bind 127.0.0.1:$port
  http-request track-sc0 req.hdr(host) table per_host
  http-request deny deny_status 429 if { sc_http_req_rate(0) gt $((rate * 10)) }
  default_backend be
backend per_host
  stick-table type string len 64 size 100k expire 30s store http_req_rate(10s)
backend be
  http-reuse always
  server web 127.0.0.1:$web maxconn 16
CFG

start() {
  case $1 in
    predictor) "$bin" run --config "$work/on" > "$work/p.log" 2>&1 & ;;
    predictor-off) "$bin" run --config "$work/off" > "$work/p.log" 2>&1 & ;;
    haproxy) haproxy -f "$work/haproxy.cfg" -db > "$work/h.log" 2>&1 & ;;
  esac
  proxy_pid=$!
  for _ in $(seq 100); do
    curl -sf -o /dev/null -H 'Host: calm.example' "http://127.0.0.1:$port/" && return
    sleep 0.1
  done
  echo "$1 did not start:" >&2; cat "$work"/*.log >&2; exit 1
}

# wrk's latency percentile PCT (50 or 99) in ms, from its --latency output.
pct() { awk -v p="$2%" '$1 == p { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } printf "%.2f", v }' "$1"; }
non2xx() { awk '/Non-2xx/ { n = $NF } END { print n + 0 }' "$1"; }
errors() { awk '/Socket errors/ { gsub(/,/, ""); print $4 + $6 + $8 + $10; f = 1 } END { if (!f) print 0 }' "$1"; }
rps() { awk '/Requests\/sec/ { printf "%.0f", $2 }' "$1"; }

printf '%-14s %5s | %9s %9s | %9s %9s %7s %7s | %9s %9s\n' proxy round "alone p50" "p99" "flood p50" "p99" "non2xx" "errors" "flood r/s" "non2xx"
for r in $(seq "$repeat"); do
  for name in "${names[@]}"; do
    start "$name"
    out="$work/$name.$r"
    wrk -t1 -c2 -d"${secs}s" --latency -H 'Host: calm.example' "http://127.0.0.1:$port/" > "$out.alone"
    wrk -t1 -c64 -d"$((secs + 2))s" -H 'Host: flood.example' "http://127.0.0.1:$port/" > "$out.flood" &
    flood=$!
    sleep 1
    wrk -t1 -c2 -d"${secs}s" --latency -H 'Host: calm.example' "http://127.0.0.1:$port/" > "$out.calm"
    wait "$flood"
    kill "$proxy_pid" 2>/dev/null; wait "$proxy_pid" 2>/dev/null || true
    printf '%-14s %5s | %9s %9s | %9s %9s %7s %7s | %9s %9s\n' "$name" "$r" \
      "$(pct "$out.alone" 50)" "$(pct "$out.alone" 99)" \
      "$(pct "$out.calm" 50)" "$(pct "$out.calm" 99)" "$(non2xx "$out.calm")" "$(errors "$out.calm")" \
      "$(rps "$out.flood")" "$(non2xx "$out.flood")"
  done
done
echo "(ms; the neighbour's 2 clients alone, then beside the flood's 64; webserver: 16 at a time, 10 ms ± 20 %)"
