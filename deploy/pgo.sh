#!/usr/bin/env bash
# The production build with profile feedback (PGO): the `dist` build
# (fat LTO, one codegen unit, jemalloc) compiled a second time with the
# branch and call counts of a training run, so that the compiler lays the
# request path out hot and straight and moves the rest aside. Measured
# (docs/performance.md, "A build trained on its own traffic"): 22 % fewer
# instructions per keep-alive request, a fifth of the instruction-cache
# misses, 25-30 % less user time per request.
#
#   usage: bash deploy/pgo.sh          -> target/pgo/predictor
#   needs: llvm-profdata of rustc's LLVM (`rustup component add
#          llvm-tools`, or Debian's llvm-NN for LLVM NN: `rustc -vV`),
#          nginx, wrk, h2load, openssl, curl
#
# Steps: an instrumented build (target/pgo/gen), a training run of about a
# minute on loopback (below), the counts merged (target/pgo/predictor.profdata),
# the optimised build (target/pgo/use). Two builds of their own target
# directories: ~10 minutes from nothing on 2 cores, less once cached.
#
# The training covers what an edge node does, since code the run never
# reaches is compiled as cold (for size): a 100,000-host table loaded and
# reloaded, HTTP/1.1 keep-alive and `Connection: close` to a pool, random
# hosts across the table, h2c, TLS (full handshakes, HTTP/1.1 and HTTP/2
# by ALPN), the legacy route, maintenance answers, unknown hosts, the
# access log, the admin listener's metrics and route explanations.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=$root/target/pgo
mkdir -p "$out"

# llvm-profdata must read the counts rustc's LLVM writes: the same major.
llvm_major() { grep -oE 'LLVM version:? [0-9]+' | grep -oE '[0-9]+$'; }
major=$(rustc -vV | llvm_major)
profdata=""
for c in "$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | awk '/^host/ { print $2 }')/bin/llvm-profdata" \
  "llvm-profdata-$major" llvm-profdata; do
  if command -v "$c" >/dev/null 2>&1 &&
    [ "$("$c" --version 2>/dev/null | llvm_major)" = "$major" ]; then
    profdata=$c
    break
  fi
done
if [ -z "$profdata" ]; then
  echo "pgo: no llvm-profdata for LLVM $major (rustup component add llvm-tools, or apt-get install llvm-$major)" >&2
  exit 1
fi
for t in nginx wrk h2load openssl curl; do
  command -v "$t" >/dev/null 2>&1 || { echo "pgo: the training needs $t" >&2; exit 1; }
done

build() { # TARGET_DIR RUSTFLAGS
  RUSTFLAGS="$2" CARGO_TARGET_DIR="$1" cargo build --locked --profile dist --features jemalloc --bin predictor
}

echo "== instrumented build (target/pgo/gen)"
# Build scripts are instrumented too and write their counts as they run:
# into a directory of their own, not the training's.
build "$out/gen" "-Cprofile-generate=$out/build-counts"

echo "== training"
train=$(mktemp -d)
counts="$out/counts"
rm -rf "$counts" && mkdir -p "$counts"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$train"
}
trap cleanup EXIT
# Below the ephemeral ports (32768-60999), which outgoing connections take.
base=$((10000 + RANDOM % 20000))
origin=$base legacy=$((base + 1)) http=$((base + 2)) https=$((base + 3)) admin=$((base + 4))
origin2=$((base + 5))
for p in "$origin" "$origin2" "$legacy"; do
  cat > "$train/origin-$p.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $train/origin-$p.pid; error_log $train/origin-$p.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$p; location / { return 200 "ok\\n"; } } }
NGINX
  nginx -c "$train/origin-$p.conf" &
  pids+=($!)
done

cfg=$train/cfg
mkdir -p "$cfg/certs"
# 100,000 hosts over 100 filers: 1-90 migrated, 91-95 legacy, 96-100 in
# maintenance; two tiers.
awk 'BEGIN { for (i = 1; i <= 100000; i++)
  printf "site%06d.example\tt%d\t%s\tf%d\n", i, i, (i % 10 == 0 ? "premium" : "shared"), i % 100 + 1 }' \
  > "$cfg/tenants.tsv"
state() { # the state of filers 91-100, plus $1 for filer 1
  echo 'default = "migrated"'
  echo '[filers]'
  echo "f1 = \"$1\""
  for f in $(seq 91 95); do echo "f$f = \"legacy\""; done
  for f in $(seq 96 100); do echo "f$f = \"maintenance\""; done
}
state migrated > "$cfg/migration.toml"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$train/k.pem" -out "$train/c.pem" -days 2 -subj "/CN=site000001.example" \
  -addext "subjectAltName=DNS:site000001.example,DNS:site000002.example" 2>/dev/null
cat "$train/c.pem" "$train/k.pem" > "$cfg/certs/example.pem"
cat > "$cfg/predictor.toml" <<TOML
tenants = "tenants.tsv"
migration = "migration.toml"
[proxy]
workers = 1
[[listen]]
address = "127.0.0.1:$http"
[[listen]]
address = "127.0.0.1:$https"
protocol = "https"
[tls]
certificates = "certs"
# wrk sends no SNI to an IP address.
default_certificate = "example.pem"
[admin]
address = "127.0.0.1:$admin"
[legacy]
address = "127.0.0.1:$legacy"
[tiers.shared]
pool = "web"
[tiers.premium]
pool = "web"
[pools.web]
servers = [{ id = "web-1", address = "127.0.0.1:$origin" }, { id = "web-2", address = "127.0.0.1:$origin2" }]
TOML
"$out/gen/dist/predictor" check --config "$cfg" >/dev/null
LLVM_PROFILE_FILE="$counts/predictor-%p-%m.profraw" "$out/gen/dist/predictor" run --config "$cfg" \
  > "$train/predictor.log" 2>&1 &
pred=$!
pids+=("$pred")
for _ in $(seq 1 300); do
  curl -s -o /dev/null -H 'Host: site000001.example' "http://127.0.0.1:$http/" && break
  sleep 0.1
done

cat > "$train/hosts.lua" <<'LUA'
function request()
  return string.format("GET / HTTP/1.1\r\nHost: site%06d.example\r\n\r\n", math.random(120000))
end
LUA
url=http://127.0.0.1:$http/
step() { echo "  $1"; }
# Each load must have been answered: a training run that only met errors
# would train the error paths.
w() { # wrk ARGS...
  local n
  n=$(wrk "$@" | awk '/requests in/ { print $1 }')
  [ "${n:-0}" -gt 0 ] || { echo "pgo: no answer to wrk $*" >&2; exit 1; }
}
h() { # h2load ARGS...
  local n
  n=$(h2load "$@" | awk '/^requests:/ { print $8 }')
  [ "${n:-0}" -gt 0 ] || { echo "pgo: no answer to h2load $*" >&2; exit 1; }
}
step "keep-alive, one host"
w -t1 -c64 -d5s -H 'Host: site000001.example' "$url" >/dev/null
step "Connection: close"
w -t1 -c64 -d3s -H 'Host: site000001.example' -H 'Connection: close' "$url" >/dev/null
step "random hosts over the table (a sixth unknown)"
w -t1 -c64 -d5s -s "$train/hosts.lua" "$url" >/dev/null
step "h2c"
h -t1 -c16 -m8 -D 5 -H ':authority: site000001.example' "$url" >/dev/null
step "the legacy route, maintenance answers"
w -t1 -c32 -d3s -H 'Host: site000091.example' "$url" >/dev/null
w -t1 -c32 -d2s -H 'Host: site000096.example' "$url" >/dev/null
step "TLS: HTTP/1.1 and HTTP/2 by ALPN, full handshakes"
h -t1 -c32 -D 4 --h1 --connect-to="127.0.0.1:$https" "https://site000001.example:$https/" >/dev/null
h -t1 -c16 -m8 -D 4 --connect-to="127.0.0.1:$https" "https://site000001.example:$https/" >/dev/null
w -t1 -c32 -d3s -H 'Host: site000001.example' -H 'Connection: close' "https://127.0.0.1:$https/" >/dev/null
step "the access log on (a reload), keep-alive, h2c, random hosts"
printf '[access_log]\noutput = "%s"\n' "$train/access.log" >> "$cfg/predictor.toml"
for _ in $(seq 1 50); do [ -s "$train/access.log" ] && break; curl -s -o /dev/null -H 'Host: site000001.example' "$url"; sleep 0.1; done
[ -s "$train/access.log" ] || { echo "pgo: the access log did not start" >&2; exit 1; }
w -t1 -c64 -d3s -H 'Host: site000001.example' "$url" >/dev/null
h -t1 -c16 -m8 -D 2 -H ':authority: site000001.example' "$url" >/dev/null
w -t1 -c64 -d2s -s "$train/hosts.lua" "$url" >/dev/null
step "reloads, the admin listener"
for s in maintenance legacy migrated; do
  state "$s" > "$cfg/migration.toml"
  sleep 1
  curl -s -o /dev/null "http://127.0.0.1:$admin/metrics"
  curl -s -o /dev/null "http://127.0.0.1:$admin/route?host=site000001.example"
done
kill -TERM "$pred"
wait "$pred" || true
grep -q "config reloaded" "$train/predictor.log" || { echo "pgo: the training run did not reload" >&2; exit 1; }

echo "== merging the counts"
"$profdata" merge -o "$out/predictor.profdata" "$counts"/*.profraw
# Named by content: cargo sees the flags, not the file, so new counts
# under the same name would leave the last build in place.
sum=$(sha256sum "$out/predictor.profdata" | cut -c1-16)
rm -f "$out"/predictor-*.profdata
cp "$out/predictor.profdata" "$out/predictor-$sum.profdata"

echo "== optimised build (target/pgo/use)"
build "$out/use" "-Cprofile-use=$out/predictor-$sum.profdata"
cp "$out/use/dist/predictor" "$out/predictor"
echo "pgo: $out/predictor"
