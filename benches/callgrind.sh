#!/usr/bin/env bash
# User-space instructions per proxied request, by callgrind: predictor
# (1 worker) in front of an nginx origin answering a small static body,
# driven by h2load over 64 keep-alive HTTP/1.1 connections. The count per
# request is the difference between a run of 2,000 and one of 22,000
# requests, divided by 20,000 (start-up, config load and shutdown cancel
# out). Instruction counts do not vary with the machine's noise.
#
#   usage: benches/callgrind.sh [PREDICTOR_BIN]   (default target/dist/predictor: `cargo dist`)
#   needs: valgrind, h2load (nghttp2-client), nginx
#
# CG_ROUTE=maintenance measures predictor's own answers instead (no origin);
# CG_ROUTE=legacy sends every request to a legacy balancer (the same
# origin), CG_ROUTE=shadow too, with CG_SHADOW (default 10%) of them
# copied to the pool and compared.
# CG_ACCESS_LOG=1 turns the access log on (to a file), its writer thread
# counted. CG_CLOSE=1 measures `Connection: close` requests instead: one new
# client connection per request (sequential, from a small Python client),
# 200 and 2,200 requests. CG_H2=1 measures an h2c front instead (h2load,
# 16 connections of 8 concurrent streams, prior knowledge). CG_BROWSER=1
# adds the fields a browser sends (12 in all, ~700 bytes of head) to the
# keep-alive and h2c requests, instead of h2load's two.
#
# CG_PROXY_HEADER=v1|v2 (with CG_CLOSE=1) has the listener take PROXY
# protocol headers from 127.0.0.1 ([[listen]] proxy_protocol) and the
# client send one first on every connection, as an L4 tier does: the
# difference from CG_CLOSE=1 alone is the header's cost per connection.
#
# CG_ISOLATION=off removes the server ceiling and the tenant's concurrency
# limit (on: the defaults, nothing queues under this load); rate adds a
# rate and a per-client rate that are never reached.
#
# The count moves by up to ~150 per request between runs of the same
# binary: the metrics exporter calibrates its clock (quanta) at start-up
# in a loop of varying length, which the two runs do not cancel. Compare
# builds by the median of a few runs.
# CG_PROXY=nginx or CG_PROXY=haproxy measures that peer instead, in the
# same place (one worker, a keep-alive pool to the same origin, the Host
# mapped to it: the configs of benches/peers/peers.sh), with the same load
# and the same count: instructions do not vary with the machine's noise,
# so the peers' per-request work compares in one run of each, e.g.
#   for p in predictor nginx haproxy; do CG_PROXY=$p bash benches/callgrind.sh; done
# CG_SIM=1 adds callgrind's cache and branch simulation and its count of
# atomic (bus-locked) instructions, printed per request beside the count.
set -euo pipefail
proxy=${CG_PROXY:-predictor}
case $proxy in
  predictor) bin=$(realpath "${1:-target/dist/predictor}") ;;
  nginx | haproxy) bin=$(command -v "$proxy") ;;
  *) echo "CG_PROXY: predictor, nginx or haproxy" >&2; exit 2 ;;
esac
sim=()
if [ -n "${CG_SIM:-}" ]; then sim=(--cache-sim=yes --branch-sim=yes --collect-bus=yes); fi
work=$(mktemp -d)
# shellcheck source=benches/origin.sh
source "$(dirname "${BASH_SOURCE[0]}")/origin.sh"
trap 'stop_origin "$work"; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000)) origin=$((port + 1)) h2port=$((port + 2))

start_origin "$work" "$origin"

# shellcheck source=benches/one-worker.sh
source "$(dirname "${BASH_SOURCE[0]}")/one-worker.sh"
BIN=$bin
# The peers: HTTP/1.1 on $port, h2c (prior knowledge) on $h2port; predictor
# takes both on $port.
case $proxy in
  predictor)
    predictor_conf "$work/cfg" "$origin" "$port" "" "${CG_ROUTE:-migrated}"
    case ${CG_ROUTE:-migrated} in
      # The legacy balancer is the same origin; shadow copies CG_SHADOW of
      # the requests (default 10%) to the pool, the origin too.
      legacy | shadow)
        printf '[legacy]\naddress = "127.0.0.1:%s"\n[shadow]\nshare = "%s"\n' \
          "$origin" "${CG_SHADOW:-10%}" >> "$work/cfg/predictor.toml" ;;
    esac
    case ${CG_ISOLATION:-on} in
      on) ;;
      # No server ceiling, no tenant limit: the admission's bare counting.
      off)
        sed -i 's/^\[pools.web\]$/[pools.web]\nmax_in_flight = 0/' "$work/cfg/predictor.toml"
        printf '[tiers.web.limits]\nconcurrent = 0\n' >> "$work/cfg/predictor.toml" ;;
      # A rate limit never reached: its bucket taken per request.
      rate) printf '[tiers.web.limits]\nrate = 10000000\nclient_rate = 10000000\n' >> "$work/cfg/predictor.toml" ;;
      *) echo "CG_ISOLATION: on, off or rate" >&2; exit 2 ;;
    esac
    if [ -n "${CG_ACCESS_LOG:-}" ]; then
      printf '[access_log]\noutput = "%s"\n' "$work/access.log" >> "$work/cfg/predictor.toml"
    fi
    case ${CG_PROXY_HEADER:-} in
      "") ;;
      v1 | v2)
        [ -n "${CG_CLOSE:-}" ] || { echo "CG_PROXY_HEADER needs CG_CLOSE=1" >&2; exit 2; }
        sed -i "0,/^address = .*/s//&\nproxy_protocol = [\"127.0.0.1\"]/" "$work/cfg/predictor.toml" ;;
      *) echo "CG_PROXY_HEADER: v1 or v2" >&2; exit 2 ;;
    esac
    h2target=$port ;;
  nginx) nginx_conf "$work/nginx" "$origin" "$port" "$h2port"; h2target=$h2port ;;
  haproxy) haproxy_conf "$work/haproxy" "$origin" "$port" "$h2port"; h2target=$h2port ;;
esac
args=("${proxy_args[@]:1}")

extra=()
if [ -n "${CG_BROWSER:-}" ]; then
  extra=(
    -H 'user-agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36'
    -H 'accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8'
    -H 'accept-language: en-US,en;q=0.9,fr;q=0.8'
    -H 'accept-encoding: gzip, deflate, br'
    -H 'cookie: session=3f2a9c1b7e6d4a5f8b0c2d1e; theme=dark; consent=yes'
    -H 'referer: http://bench.example/index.html'
    -H 'sec-ch-ua: "Chromium";v="120", "Not?A_Brand";v="24"'
    -H 'sec-ch-ua-mobile: ?0'
    -H 'sec-fetch-dest: document'
    -H 'sec-fetch-mode: navigate'
    -H 'upgrade-insecure-requests: 1'
  )
fi

run() {
  local n=$1 out="$work/cg.$1"
  valgrind --tool=callgrind "${sim[@]}" --callgrind-out-file="$out" "$bin" "${args[@]}" \
    >"$work/log.$n" 2>&1 &
  local pid=$!
  local probe=()
  if [ -n "${CG_PROXY_HEADER:-}" ]; then probe=(--haproxy-protocol); fi
  for _ in $(seq 1 200); do
    curl -s -o /dev/null "${probe[@]}" -H 'Host: bench.example' "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
  if [ -n "${CG_CLOSE:-}" ]; then
    python3 - "$port" "$n" "${CG_PROXY_HEADER:-}" <<'PY' >&2
import socket, struct, sys
port, n, header = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ok = 0
def proxy_header(s):
    # What an L4 tier sends for a visitor: the connection's own addresses.
    (src, sport), (dst, dport) = s.getsockname(), s.getpeername()
    if header == "v1":
        return f"PROXY TCP4 {src} {dst} {sport} {dport}\r\n".encode()
    if header == "v2":
        body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
        return b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + struct.pack("!H", len(body)) + body
    return b""
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(proxy_header(s) + b"GET / HTTP/1.1\r\nHost: bench.example\r\nConnection: close\r\n\r\n")
    got = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    ok += got.startswith(b"HTTP/1.1 200")
    s.close()
print(f"requests: {n} total, {ok} succeeded")
PY
  elif [ -n "${CG_H2:-}" ]; then
    h2load -n "$n" -c 16 -m 8 -H ':authority: bench.example' "${extra[@]}" "http://127.0.0.1:$h2target/" \
      | grep -E '^requests:' >&2
  else
    h2load --h1 -n "$n" -c 64 -H ':authority: bench.example' "${extra[@]}" "http://127.0.0.1:$port/" \
      | grep -E '^requests:' >&2
  fi
  kill -TERM "$pid"
  wait "$pid" || true
  # Totals over all threads (one file per thread or a sum line): every
  # event's, instructions first.
  callgrind_annotate "$out"* 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {
    for (i = 1; i <= NF; i++) if ($i ~ /^[0-9,]+$/) { gsub(",", "", $i); printf "%s ", $i }
    print ""; done = 1 }'
}
events() {
  callgrind_annotate "$work/cg.$n1"* 2>/dev/null | awk '/^Events shown/ { $1 = $2 = ""; print; exit }'
}

if [ -n "${CG_CLOSE:-}" ]; then n1=200 n2=2200; else n1=2000 n2=22000; fi
read -ra small <<<"$(run $n1)"
read -ra large <<<"$(run $n2)"
# CG_KEEP=DIR keeps the callgrind files (callgrind_annotate DIR/cg.$n2).
if [ -n "${CG_KEEP:-}" ]; then mkdir -p "$CG_KEEP" && cp "$work"/cg.* "$CG_KEEP"/; fi
echo "$proxy: instructions per request: $(( (large[0] - small[0]) / (n2 - n1) )) (${small[0]} for $n1, ${large[0]} for $n2)"
if [ -n "${CG_SIM:-}" ]; then
  read -ra names <<<"$(events)"
  line=""
  for i in "${!names[@]}"; do
    line+="${names[$i]} $(( (large[i] - small[i]) / (n2 - n1) ))  "
  done
  echo "$proxy: per request: $line"
fi
