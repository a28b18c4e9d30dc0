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
# CG_ROUTE=maintenance measures predictor's own answers instead (no origin).
# CG_ACCESS_LOG=1 turns the access log on (to a file), its writer thread
# counted. CG_CLOSE=1 measures `Connection: close` requests instead: one new
# client connection per request (sequential, from a small Python client),
# 200 and 2,200 requests. CG_H2=1 measures an h2c front instead (h2load,
# 16 connections of 8 concurrent streams, prior knowledge). CG_BROWSER=1
# adds the fields a browser sends (12 in all, ~700 bytes of head) to the
# keep-alive and h2c requests, instead of h2load's two.
set -euo pipefail
bin=$(realpath "${1:-target/dist/predictor}")
work=$(mktemp -d)
# shellcheck source=benches/origin.sh
source "$(dirname "${BASH_SOURCE[0]}")/origin.sh"
trap 'stop_origin "$work"; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000)) origin=$((port + 1))

mkdir -p "$work/cfg"
start_origin "$work" "$origin"

printf 'bench.example\tt1\tweb\tf1\n' > "$work/cfg/tenants.tsv"
echo "default = \"${CG_ROUTE:-migrated}\"" > "$work/cfg/migration.toml"
cat > "$work/cfg/predictor.toml" <<TOML
tenants = "tenants.tsv"
migration = "migration.toml"
[proxy]
workers = 1
[[listen]]
address = "127.0.0.1:$port"
[tiers.web]
pool = "web"
[pools.web]
servers = [{ id = "web-1", address = "127.0.0.1:$origin" }]
TOML
if [ -n "${CG_ACCESS_LOG:-}" ]; then
  printf '[access_log]\noutput = "%s"\n' "$work/access.log" >> "$work/cfg/predictor.toml"
fi

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
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" run --config "$work/cfg" \
    >"$work/log.$n" 2>&1 &
  local pid=$!
  for _ in $(seq 1 200); do
    curl -s -o /dev/null -H 'Host: bench.example' "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
  if [ -n "${CG_CLOSE:-}" ]; then
    python3 - "$port" "$n" <<'PY' >&2
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
ok = 0
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench.example\r\nConnection: close\r\n\r\n")
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
    h2load -n "$n" -c 16 -m 8 -H ':authority: bench.example' "${extra[@]}" "http://127.0.0.1:$port/" \
      | grep -E '^requests:' >&2
  else
    h2load --h1 -n "$n" -c 64 -H ':authority: bench.example' "${extra[@]}" "http://127.0.0.1:$port/" \
      | grep -E '^requests:' >&2
  fi
  kill -TERM "$pid"
  wait "$pid" || true
  # Total instructions over all threads (one file per thread or a sum line).
  callgrind_annotate "$out"* 2>/dev/null | awk '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); print $1; done = 1 }'
}

if [ -n "${CG_CLOSE:-}" ]; then n1=200 n2=2200; else n1=2000 n2=22000; fi
small=$(run $n1)
large=$(run $n2)
# CG_KEEP=DIR keeps the callgrind files (callgrind_annotate DIR/cg.$n2).
if [ -n "${CG_KEEP:-}" ]; then mkdir -p "$CG_KEEP" && cp "$work"/cg.* "$CG_KEEP"/; fi
echo "instructions per request: $(( (large - small) / (n2 - n1) )) ($small for $n1, $large for $n2)"
