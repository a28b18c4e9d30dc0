#!/usr/bin/env bash
# peers.sh - per-core peer benchmark: predictor beside established HTTP
# layer-7 reverse proxies (HAProxy, nginx; sozu and Pingora on request).
#
# Starts a tiny nginx origin on loopback, then one proxy at a time in front of
# it (each with ONE worker thread/process, pinned to PROXY_CPU), and drives load
# with wrk / h2load pinned to CLIENT_CPU. Prints a markdown table.
# See README.md next to this file. Loopback only; every load run is bounded.
#
#   cargo dist && bash benches/peers/peers.sh --repeat 3
#   (cargo dist = cargo build --profile dist --features jemalloc, .cargo/config.toml)
#
# shellcheck disable=SC2317  # adapters are called indirectly ("exec_$name" ...)
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"   # the predictor repository (benches/peers/..)
TMPBASE="${TMPDIR:-/tmp}"
export PATH="$PATH:/usr/sbin:/sbin"

# ----------------------------------------------------------------- defaults --
DURATION=${DURATION:-10}        # seconds per measured load run
WARMUP=${WARMUP:-2}             # seconds of discarded warm-up before each run
CONNS=${CONNS:-64}              # wrk connections (1 thread)
HOSTS=${HOSTS:-100000}          # N hosts in the routing table for scenario b
SCENARIOS=${SCENARIOS:-a,b,c,d}
PROXIES=${PROXIES:-direct,haproxy,nginx,predictor}   # + sozu,pingora on request (5-10 min builds)
REPEAT=${REPEAT:-1}             # measured runs per (proxy, scenario)
ORDER=${ORDER:-interleaved}     # interleaved | grouped (see --order)
H2_CONNS=${H2_CONNS:-16}        # h2load connections for scenario d
H2_STREAMS=${H2_STREAMS:-8}     # h2load max concurrent streams per connection
CLIENT_CPU=${CLIENT_CPU:-0}     # wrk/h2load + origin
PROXY_CPU=${PROXY_CPU:-1}       # proxy under test
PORT_BASE=${PORT_BASE:-18000}
READY_TIMEOUT=${READY_TIMEOUT:-300}   # seconds a proxy may take to answer after start
BUILD_TIMEOUT=${BUILD_TIMEOUT:-900}   # seconds per Rust peer build (sozu, pingora-peer)
MAX_SECONDS=${MAX_SECONDS:-}          # watchdog for the load phase (builds excluded); default below
QUIET_WAIT=${QUIET_WAIT:-15}          # max seconds to wait for a quiet machine before each run
QUIET_PCT=${QUIET_PCT:-10}            # "quiet" = total CPU busy below this % over 1 s while idle
INSTALL=${INSTALL:-1}
BUILD=${BUILD:-1}
OUT=${OUT:-}
CACHE="${BENCH_CACHE:-$TMPBASE/peer-bench-cache}"
WORK="${BENCH_WORK:-}"
# predictor: the dist build (profile dist + jemalloc: `cargo dist`) of this repository,
# its config rendered by benches/peer-config.sh; h2c served on H2PORT.
PREDICTOR_DEFAULT_BIN="${CARGO_TARGET_DIR:-$REPO/target}/dist/predictor"
PREDICTOR_BIN=${PREDICTOR_BIN:-$PREDICTOR_DEFAULT_BIN}
PREDICTOR_CONFIG_CMD=${PREDICTOR_CONFIG_CMD:-bash $(printf '%q' "$REPO/benches/peer-config.sh")}
PREDICTOR_H2C=${PREDICTOR_H2C:-1}

usage() {
  cat <<EOF
usage: $0 [options]
  --duration S        measured seconds per run (default $DURATION)
  --warmup S          warm-up seconds before each run (default $WARMUP)
  --conns C           wrk connections, 1 thread (default $CONNS)
  --hosts N           routing-table size for scenario b (default $HOSTS; try 1000000)
  --scenarios LIST    subset of a,b,c,d (default $SCENARIOS)
                        a = HTTP/1.1 keep-alive, one Host
                        b = N-host table, random Host per request (+ startup time, RSS)
                        c = Connection: close (new TCP connection per request)
                        d = HTTP/2 cleartext (h2c prior knowledge) with h2load
  --proxies LIST      subset/order of direct,haproxy,nginx,sozu,pingora,predictor
                      (plus any adapter found in adapters/*.sh); default $PROXIES
                      (sozu and pingora are built on first use: 5-10 min each)
  --repeat R          measured runs per proxy and scenario (default $REPEAT)
  --order O           interleaved (default): round r runs every proxy before
                      round r+1, so noise hits all alike; grouped: all of a
                      proxy's runs back to back (the order before 2026-12-03)
  --out FILE          also copy the markdown report to FILE
  --no-install        do not apt-get install missing tools
  --no-build          do not build Rust peers (sozu, pingora-peer); use cached ones
  --work DIR          work dir (default: new dir under \$TMPDIR)
  --report-only       with --work DIR of an earlier run: only re-render its report
  --quiet-wait S      before each run wait up to S s for the machine to be idle
                      (busy < QUIET_PCT% over 1 s); default $QUIET_WAIT, 0 = off
Environment: CLIENT_CPU PROXY_CPU PORT_BASE BENCH_CACHE READY_TIMEOUT BUILD_TIMEOUT
             MAX_SECONDS (watchdog, default: max(900, estimate of the load phase))
             QUIET_PCT H2_CONNS H2_STREAMS NGINX_MAP_HASH_BUCKET_SIZE NGINX_MAP_HASH_MAX_SIZE
             HAPROXY_HTTP_REUSE (e.g. always; default: HAProxy's own, safe)
predictor (overrides; see README.md):
             PREDICTOR_BIN         default $PREDICTOR_DEFAULT_BIN
                                   (cargo dist: profile dist + jemalloc)
             PREDICTOR_CONFIG_CMD  default bash <repo>/benches/peer-config.sh
                                   (PREDICTOR_ROUTE=legacy: its legacy path)
             PREDICTOR_H2C         1 = serves h2c on H2PORT (scenario d); default 1
EOF
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --hosts) HOSTS=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --proxies) PROXIES=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --order) ORDER=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --work) WORK=$2; shift 2 ;;
    --quiet-wait) QUIET_WAIT=$2; shift 2 ;;
    --report-only) REPORT_ONLY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done

[[ $ORDER == interleaved || $ORDER == grouped ]] || { echo "--order: interleaved or grouped, not '$ORDER'" >&2; exit 2; }
has_scn() { [[ ",$SCENARIOS," == *",$1,"* ]]; }
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

[[ -n "$WORK" ]] || WORK="$(mktemp -d "$TMPBASE/peer-bench.XXXXXX")"
mkdir -p "$WORK" "$CACHE" "$WORK/raw"
RESULTS="$WORK/results.tsv"
REPORT="$WORK/results.md"
NOTES="$WORK/notes.txt"
if [[ ${REPORT_ONLY:-0} -ne 1 ]]; then : > "$RESULTS"; : > "$NOTES"; fi
note() { echo "- $*" >> "$NOTES"; log "$*"; }

# ports
P_POOL=($((PORT_BASE+0)) $((PORT_BASE+1)) $((PORT_BASE+2)) $((PORT_BASE+3)))
P_DEFAULT=$((PORT_BASE+4))
P_ORIGIN_H2=$((PORT_BASE+5))
P_ORIGIN_STATUS=$((PORT_BASE+6))
P_PROXY=$((PORT_BASE+10))
P_PROXY_H2=$((PORT_BASE+11))

# ------------------------------------------------------------ process care --
declare -a STARTED_PIDS=()
proc_tree() {  # PID and all its descendants
  local p=$1 c
  [[ -d /proc/$p ]] || return 0
  echo "$p"
  for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do proc_tree "$c"; done
}
stop_pid() {
  local pid=$1 tree p i
  [[ -n "$pid" && -d /proc/$pid ]] || return 0
  tree=$(proc_tree "$pid")
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 50); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
  for p in $tree; do [[ -d /proc/$p ]] && kill -KILL "$p" 2>/dev/null; done
  wait "$pid" 2>/dev/null
  return 0
}
WATCHDOG_PID=""
cleanup() {
  local p
  for p in "${STARTED_PIDS[@]}"; do stop_pid "$p"; done
  if [[ -n "$WATCHDOG_PID" ]]; then
    for p in $(proc_tree "$WATCHDOG_PID"); do kill "$p" 2>/dev/null; done
  fi
  return 0
}
trap cleanup EXIT
trap 'log "interrupted$([[ -f "$WORK/WATCHDOG" ]] && echo " by the watchdog (MAX_SECONDS=$MAX_SECONDS)")"; exit 130' INT TERM

# ----------------------------------------------------------------- installs --
APT_UPDATED=0
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [[ $APT_UPDATED -eq 0 ]]; then timeout 600 apt-get update -qq >/dev/null 2>&1; APT_UPDATED=1; fi
  timeout 900 apt-get install -y -qq "$@" >> "$WORK/raw/apt.log" 2>&1
}
install_tools() {
  local need=()
  command -v haproxy >/dev/null || need+=(haproxy)
  command -v nginx >/dev/null || need+=(nginx)
  command -v wrk >/dev/null || need+=(wrk)
  command -v h2load >/dev/null || need+=(nghttp2-client)
  command -v curl >/dev/null || need+=(curl)
  command -v taskset >/dev/null || need+=(util-linux)
  command -v ps >/dev/null || need+=(procps)
  command -v ss >/dev/null || need+=(iproute2)
  [[ ${#need[@]} -eq 0 ]] && return 0
  if [[ $INSTALL -ne 1 ]]; then log "missing tools: ${need[*]} (and --no-install given)"; return 1; fi
  log "installing: ${need[*]}"
  apt_install "${need[@]}" || { log "apt-get install failed, see $WORK/raw/apt.log"; return 1; }
  # Debian packages may start system services on hosts that run an init system;
  # they listen on ports we do not use, so they are left alone.
}

SOZU_BIN="$CACHE/sozu/bin/sozu"
PINGORA_BIN="$CACHE/pingora-target/release/pingora-peer"
declare -A SKIP_REASON=()

build_sozu() {
  [[ -x "$SOZU_BIN" ]] && return 0
  if [[ $BUILD -ne 1 ]]; then SKIP_REASON[sozu]="not built (--no-build)"; return 1; fi
  command -v cargo >/dev/null || { SKIP_REASON[sozu]="cargo not found"; return 1; }
  # sozu-command-lib's build.rs runs prost-build, which needs protoc
  if ! command -v protoc >/dev/null && [[ $INSTALL -eq 1 ]]; then
    apt_install protobuf-compiler || true
  fi
  log "building sozu from crates.io (cargo install, limit ${BUILD_TIMEOUT}s; log: $CACHE/sozu-build.log)"
  local t0; t0=$(now_ms)
  # from the cache dir, so that no cargo config of the repository applies
  if ( cd "$CACHE" && timeout "$BUILD_TIMEOUT" cargo install --locked --root "$CACHE/sozu" \
       --target-dir "$CACHE/sozu-target" sozu ) > "$CACHE/sozu-build.log" 2>&1; then
    note "sozu built in $(( ($(now_ms)-t0)/1000 )) s"
  else
    SKIP_REASON[sozu]="build failed or exceeded ${BUILD_TIMEOUT}s after $(( ($(now_ms)-t0)/1000 )) s (see $CACHE/sozu-build.log)"
    return 1
  fi
}

build_pingora() {
  local src="$HERE/pingora-peer"
  if [[ -x "$PINGORA_BIN" && "$PINGORA_BIN" -nt "$src/src/main.rs" && "$PINGORA_BIN" -nt "$src/Cargo.toml" ]]; then return 0; fi
  if [[ $BUILD -ne 1 ]]; then
    [[ -x "$PINGORA_BIN" ]] && return 0
    SKIP_REASON[pingora]="not built (--no-build)"; return 1
  fi
  command -v cargo >/dev/null || { SKIP_REASON[pingora]="cargo not found"; return 1; }
  # pingora-core pulls libz-ng-sys (flate2/zlib-ng), whose build script needs cmake
  if ! command -v cmake >/dev/null && [[ $INSTALL -eq 1 ]]; then
    apt_install cmake || true
  fi
  log "building pingora-peer (cargo build --release, limit ${BUILD_TIMEOUT}s; log: $CACHE/pingora-build.log)"
  local t0; t0=$(now_ms)
  # from the cache dir, so that no cargo config of the repository applies; the
  # target dir is in the cache, and --locked leaves Cargo.lock as committed
  if ( cd "$CACHE" && CARGO_TARGET_DIR="$CACHE/pingora-target" timeout "$BUILD_TIMEOUT" \
       cargo build --release --locked --manifest-path "$src/Cargo.toml" ) > "$CACHE/pingora-build.log" 2>&1; then
    note "pingora-peer built in $(( ($(now_ms)-t0)/1000 )) s"
  else
    SKIP_REASON[pingora]="build failed or exceeded ${BUILD_TIMEOUT}s after $(( ($(now_ms)-t0)/1000 )) s (see $CACHE/pingora-build.log)"
    return 1
  fi
}

# ------------------------------------------------------------------- tables --
# hosts.map : "<host> <pool>" (HAProxy map format; the canonical table)
# pools.txt : "<pool> <ip:port>"; be_default answers hosts missing from the map
gen_tables() {
  local n=$1 dir=$2
  mkdir -p "$dir"
  [[ -s "$dir/hosts.map" ]] && return 0
  # ids are a permutation (i*7919+12345 mod 10^k) so names look random-ish
  awk -v n="$n" 'BEGIN { m = 1000000; while (m < n) m *= 10; w = length(m - 1) "";
      fmt = "site%0" w "d.example be_pool%d\n";
      for (i = 0; i < n; i++) printf fmt, (i * 7919 + 12345) % m, i % 4 }' > "$dir/hosts.map"
}
write_pools() {
  local f=$1 i
  : > "$f"
  for i in 0 1 2 3; do echo "be_pool$i 127.0.0.1:${P_POOL[$i]}" >> "$f"; done
  echo "be_default 127.0.0.1:$P_DEFAULT" >> "$f"
}
expected_body() {  # pool name -> body the origin answers for it
  case "$1" in be_pool[0-3]) echo "p${1#be_pool}" ;; *) echo "df" ;; esac
}

# ------------------------------------------------------------------- origin --
start_origin() {
  local dir="$WORK/origin" i
  mkdir -p "$dir/tmp"
  {
    echo "worker_processes 1;"
    echo "daemon off;"
    echo "pid $dir/nginx.pid;"
    echo "error_log $dir/error.log warn;"
    echo "worker_rlimit_nofile 16384;"
    echo "events { worker_connections 8192; }"
    echo "http {"
    echo "  access_log off; server_tokens off;"
    echo "  client_body_temp_path $dir/tmp/body; proxy_temp_path $dir/tmp/proxy;"
    echo "  fastcgi_temp_path $dir/tmp/fcgi; uwsgi_temp_path $dir/tmp/uwsgi; scgi_temp_path $dir/tmp/scgi;"
    echo "  keepalive_requests 100000000; keepalive_timeout 300s;"
    echo "  default_type text/plain;"
    for i in 0 1 2 3; do
      echo "  server { listen 127.0.0.1:${P_POOL[$i]} backlog=4096; location / { return 200 \"p$i\\n\"; } }"
    done
    echo "  server { listen 127.0.0.1:$P_DEFAULT backlog=4096; location / { return 200 \"df\\n\"; } }"
    echo "  server { listen 127.0.0.1:$P_ORIGIN_H2 http2 backlog=4096; location / { return 200 \"p0\\n\"; } }"
    echo "  server { listen 127.0.0.1:$P_ORIGIN_STATUS; location / { stub_status; } }"
    echo "}"
  } > "$dir/nginx.conf"
  ( taskset -cp "$CLIENT_CPU" $BASHPID >/dev/null; exec nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" ) \
    > "$dir/stdout.log" 2>&1 &
  ORIGIN_PID=$!
  STARTED_PIDS+=("$ORIGIN_PID")
  local t
  for t in $(seq 100); do
    [[ "$(curl -s -m 1 "http://127.0.0.1:${P_POOL[0]}/" 2>/dev/null)" == "p0" ]] && { log "origin up (pid $ORIGIN_PID, CPU $CLIENT_CPU)"; return 0; }
    sleep 0.1
  done
  log "origin did not start:"; cat "$dir/error.log" "$dir/stdout.log" >&2; return 1
}

# ================================================================= adapters ==
# Contract (see README.md):
#   avail_<name>                              -> 0 if it can run; else print why on stdout
#   config_<name> DIR PORT H2PORT MAP POOLS   -> write config into DIR (not timed)
#   exec_<name>   DIR PORT H2PORT MAP POOLS   -> exec the proxy in the foreground (timed)
#   h2_<name>                                 -> (optional) 0 if it serves h2c on H2PORT
# The harness pins the process to PROXY_CPU before exec, waits until the last
# host of MAP is answered with the right pool body, then drives load at PORT.

# --- HAProxy (Debian package), nbthread 1, Host -> map file -> backend
avail_haproxy() { command -v haproxy >/dev/null || { echo "haproxy not installed"; return 1; }; }
h2_haproxy() { return 0; }
config_haproxy() {
  local dir=$1 port=$2 h2port=$3 map=$4 pools=$5 name addr
  {
    cat <<EOF
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
${HAPROXY_HTTP_REUSE:+    http-reuse $HAPROXY_HTTP_REUSE}
frontend fe
    bind 127.0.0.1:$port
    bind 127.0.0.1:$h2port proto h2
    use_backend %[req.hdr(host),lower,map($map,be_default)]
EOF
    while read -r name addr; do
      printf 'backend %s\n    server s1 %s\n' "$name" "$addr"
    done < "$pools"
  } > "$dir/haproxy.cfg"
}
exec_haproxy() { exec haproxy -db -f "$1/haproxy.cfg"; }

# --- nginx reverse proxy, 1 worker, map $host -> upstream with keepalive pool
avail_nginx() { command -v nginx >/dev/null || { echo "nginx not installed"; return 1; }; }
h2_nginx() { return 0; }
config_nginx() {
  local dir=$1 port=$2 h2port=$3 map=$4 pools=$5 name addr n
  n=$(wc -l < "$map")
  # map hash: bucket must hold a few 32-byte entries; max_size >= entries so the
  # builder finds a size quickly (nginx starts the search near max_size when large)
  local bucket=${NGINX_MAP_HASH_BUCKET_SIZE:-256}
  local maxsize=${NGINX_MAP_HASH_MAX_SIZE:-$(( n * 2 > 4096 ? n * 2 : 4096 ))}
  mkdir -p "$dir/tmp"
  awk '{ print $1, $2 ";" }' "$map" > "$dir/hosts.conf"
  {
    echo "worker_processes 1;"
    echo "daemon off;"
    echo "pid $dir/nginx.pid;"
    echo "error_log $dir/error.log warn;"
    echo "worker_rlimit_nofile 16384;"
    echo "events { worker_connections 8192; }"
    echo "http {"
    echo "  access_log off; server_tokens off;"
    echo "  client_body_temp_path $dir/tmp/body; proxy_temp_path $dir/tmp/proxy;"
    echo "  fastcgi_temp_path $dir/tmp/fcgi; uwsgi_temp_path $dir/tmp/uwsgi; scgi_temp_path $dir/tmp/scgi;"
    echo "  keepalive_requests 100000000; keepalive_timeout 300s;"
    echo "  map_hash_bucket_size $bucket; map_hash_max_size $maxsize;"
    echo "  map \$host \$pool { default be_default; include $dir/hosts.conf; }"
    while read -r name addr; do
      echo "  upstream $name { server $addr; keepalive 256; keepalive_requests 100000000; keepalive_timeout 300s; }"
    done < "$pools"
    echo "  server {"
    echo "    listen 127.0.0.1:$port backlog=4096;"
    echo "    listen 127.0.0.1:$h2port http2 backlog=4096;"
    echo "    location / { proxy_pass http://\$pool; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
    echo "  }"
    echo "}"
  } > "$dir/nginx.conf"
}
exec_nginx() { exec nginx -p "$1" -c "$1/nginx.conf" -e "$1/error.log"; }

# --- sozu (crates.io `sozu`), worker_count 1, one cluster per pool, one frontend per host
avail_sozu() { [[ -x "$SOZU_BIN" ]] || { echo "${SKIP_REASON[sozu]:-sozu binary missing}"; return 1; }; }
config_sozu() {
  local dir=$1 port=$2 h2port=$3 map=$4 pools=$5 name addr
  {
    cat <<EOF
command_socket = "$dir/sozu.sock"
log_level = "error"
log_target = "stdout"
worker_count = 1
worker_automatic_restart = false
handle_process_affinity = false
max_connections = 8000
activate_listeners = true

[[listeners]]
protocol = "http"
address = "127.0.0.1:$port"

EOF
    while read -r name addr; do
      printf '[clusters.%s]\nprotocol = "http"\nbackends = [ { address = "%s" } ]\nfrontends = [\n' "$name" "$addr"
      awk -v p="$name" -v a="127.0.0.1:$port" '$2 == p { printf "  { address = \"%s\", hostname = \"%s\" },\n", a, $1 }' "$map"
      printf ']\n\n'
    done < "$pools"
  } > "$dir/sozu.toml"
}
exec_sozu() { exec "$SOZU_BIN" start -c "$1/sozu.toml"; }

# --- minimal Pingora proxy (./pingora-peer), 1 thread
avail_pingora() { [[ -x "$PINGORA_BIN" ]] || { echo "${SKIP_REASON[pingora]:-pingora-peer binary missing}"; return 1; }; }
h2_pingora() { return 0; }
config_pingora() { :; }
exec_pingora() { exec "$PINGORA_BIN" "127.0.0.1:$2" "$4" "$5" 1 "127.0.0.1:$3"; }

# --- predictor (this repository), 1 worker; the defaults need no environment:
#   PREDICTOR_BIN         the binary; default <repo>/target/dist/predictor
#   PREDICTOR_CONFIG_CMD  run as: $PREDICTOR_CONFIG_CMD DIR PORT H2PORT MAP POOLS
#                         writes its config into DIR and prints, on one line, the
#                         arguments to start PREDICTOR_BIN with;
#                         default: bash <repo>/benches/peer-config.sh
#   PREDICTOR_H2C=1       it also serves h2c prior-knowledge on H2PORT (default 1)
avail_predictor() {
  if [[ ! -x "$PREDICTOR_BIN" ]]; then
    if [[ "$PREDICTOR_BIN" == "$PREDICTOR_DEFAULT_BIN" ]]; then
      echo "$PREDICTOR_BIN not found; build it with: cargo dist (= cargo build --profile dist --features jemalloc)"
    else
      echo "PREDICTOR_BIN=$PREDICTOR_BIN is not an executable file"
    fi
    return 1
  fi
  [[ -n "$PREDICTOR_CONFIG_CMD" ]] || { echo "PREDICTOR_CONFIG_CMD is empty"; return 1; }
}
h2_predictor() { [[ "$PREDICTOR_H2C" == 1 ]]; }
config_predictor() { BENCH_THREADS=1 bash -c "$PREDICTOR_CONFIG_CMD \"\$@\"" _ "$@" > "$1/predictor.args"; }
exec_predictor() { local -a a; read -ra a < "$1/predictor.args"; exec "$PREDICTOR_BIN" "${a[@]}"; }

# extra adapters: any adapters/*.sh defining avail_/config_/exec_<name>
if compgen -G "$HERE/adapters/*.sh" >/dev/null; then
  # shellcheck source=/dev/null
  for f in "$HERE"/adapters/*.sh; do source "$f"; done
fi

# ============================================================ measurements ==
proxy_version() {
  case "$1" in
    direct) echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') origin only" ;;
    haproxy) haproxy -v 2>/dev/null | head -1 | awk '{print "HAProxy", $3}' ;;
    nginx) echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')" ;;
    sozu) "$SOZU_BIN" --version 2>/dev/null | head -1 ;;
    pingora) echo "pingora-proxy $(awk '/^name = "pingora-proxy"/{getline; gsub(/[^0-9.]/,""); print; exit}' "$HERE/pingora-peer/Cargo.lock" 2>/dev/null)" ;;
    predictor) predictor_version ;;
    *) declare -F "version_$1" >/dev/null && "version_$1" || echo "$1" ;;
  esac
}

predictor_version() {  # "predictor 0.1.0 (allocator: jemalloc), git abc1234+dirty, target/dist/predictor"
  local v g bin=$PREDICTOR_BIN
  v=$("$PREDICTOR_BIN" --version 2>/dev/null | head -1)
  g=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null) &&
    { git -C "$REPO" diff --quiet HEAD -- 2>/dev/null || g="$g+dirty"; }
  [[ "$bin" == "$REPO"/* ]] && bin=${bin#"$REPO"/}
  echo "${v:-predictor}, ${g:+git $g, }$bin"
}

cpu_ticks() {  # summed utime+stime (clock ticks) of a process tree
  local p s=0 f
  for p in $(proc_tree "$1"); do
    f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    f=${f##*) }   # drop "pid (comm) "
    set -- $f
    s=$(( s + ${12} + ${13} ))
  done
  echo "$s"
}
cpu_user_ticks() {  # summed utime (clock ticks) of a process tree: the part a proxy's design controls
  local p s=0 f
  for p in $(proc_tree "$1"); do
    f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    f=${f##*) }
    set -- $f
    s=$(( s + ${12} ))
  done
  echo "$s"
}
mem_stats() {  # "<max VmHWM MiB> <sum Pss MiB>" over a process tree
  local p hwm=0 pss=0 v
  for p in $(proc_tree "$1"); do
    v=$(awk '/^VmHWM:/{print $2}' "/proc/$p/status" 2>/dev/null); v=${v:-0}
    (( v > hwm )) && hwm=$v
    v=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null); pss=$(( pss + ${v:-0} ))
  done
  awk -v h="$hwm" -v p="$pss" 'BEGIN { printf "%.1f %.1f\n", h/1024, p/1024 }'
}

origin_accepts() {  # connections the origin has accepted so far (nginx stub_status)
  curl -s -m 2 "http://127.0.0.1:$P_ORIGIN_STATUS/" | awk 'NR == 3 { print $1 }'
}
cpu_stat() {  # "busy total" jiffies of one CPU (or "cpu" = all)
  awk -v c="$1" '$1 == c { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6; exit }' /proc/stat
}
busy_pct_1s() {  # whole-machine busy % over one second
  local a b
  a=$(cpu_stat cpu); sleep 1; b=$(cpu_stat cpu)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; printf "%.0f", (t > 0 ? 100 * (y[1] - x[1]) / t : 0) }'
}
wait_quiet() {  # wait (bounded) until nothing else is keeping the CPUs busy
  (( QUIET_WAIT > 0 )) || { echo "-"; return 0; }
  local t0 b; t0=$(date +%s)
  while :; do
    b=$(busy_pct_1s)
    (( b < QUIET_PCT )) && { echo "$b"; return 0; }
    (( $(date +%s) - t0 >= QUIET_WAIT )) && { echo "$b!"; return 0; }
  done
}

write_lua() {
  cat > "$WORK/done.lua" <<'EOF'
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKRESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d err=%d/%d/%d/%d/%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
EOF
  # scenario b: a random Host from the whole table on every request
  { cat <<'EOF'
local reqs, n = {}, 0
function init(args)
  local f = assert(io.open(args[1]))
  for line in f:lines() do
    local h = line:match("^(%S+)")
    if h then n = n + 1; reqs[n] = "GET / HTTP/1.1\r\nHost: " .. h .. "\r\n\r\n" end
  end
  f:close()
  math.randomseed(tonumber(args[2]) or 42)
end
function request()
  return reqs[math.random(n)]
end
EOF
    cat "$WORK/done.lua"; } > "$WORK/hosts.lua"
}

# run_load SCN PROXY RUN PORT H2PORT PID MAP -> appends a row to results.tsv
run_load() {
  local scn=$1 proxy=$2 run=$3 port=$4 h2port=$5 pid=$6 map=$7
  local raw="$WORK/raw/${scn}-${proxy}-run${run}.txt" cmd=()
  mk_cmd() {  # mk_cmd SECONDS H2LOG -> sets cmd=(...)
    case "$scn" in
      a) cmd=(wrk -t1 -c"$CONNS" -d"${1}s" --timeout 5s --latency -s "$WORK/done.lua" -H "Host: bench.example" "http://127.0.0.1:$port/") ;;
      c) cmd=(wrk -t1 -c"$CONNS" -d"${1}s" --timeout 5s --latency -s "$WORK/done.lua" -H "Host: bench.example" -H "Connection: close" "http://127.0.0.1:$port/") ;;
      b) cmd=(wrk -t1 -c"$CONNS" -d"${1}s" --timeout 5s --latency -s "$WORK/hosts.lua" "http://127.0.0.1:$port/" -- "$map" "$run") ;;
      d) cmd=(h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D"$1" -H ":authority: bench.example" --log-file="$2" "http://127.0.0.1:$h2port/") ;;
    esac
  }
  if (( WARMUP > 0 )); then
    mk_cmd "$WARMUP" /dev/null
    timeout $(( WARMUP + 60 )) taskset -c "$CLIENT_CPU" "${cmd[@]}" > "$raw.warmup" 2>&1
  fi
  mk_cmd "$DURATION" "$WORK/raw/h2.log"
  local t0 t1 c0 c1 o0 o1 tck pre sp0 sp1 sc0 sc1 rc
  tck=$(getconf CLK_TCK)
  pre=$(wait_quiet)
  echo "# ${cmd[*]}" > "$raw"
  echo "# machine busy % over 1 s before the run: $pre (load: $(cut -d' ' -f1-3 /proc/loadavg))" >> "$raw"
  local acc0 acc1; acc0=$(origin_accepts)
  local u0 u1; u0=$(cpu_user_ticks "$pid")
  c0=$(cpu_ticks "$pid"); o0=$(cpu_ticks "$ORIGIN_PID"); sp0=$(cpu_stat "cpu$PROXY_CPU"); sc0=$(cpu_stat "cpu$CLIENT_CPU"); t0=$(now_ms)
  local TIMEFORMAT='CLIENTCPU %U %S'
  { time timeout $(( DURATION + 60 )) taskset -c "$CLIENT_CPU" "${cmd[@]}" >> "$raw" 2>&1 ; } 2>> "$raw"
  rc=$?
  u1=$(cpu_user_ticks "$pid")
  t1=$(now_ms); c1=$(cpu_ticks "$pid"); o1=$(cpu_ticks "$ORIGIN_PID"); sp1=$(cpu_stat "cpu$PROXY_CPU"); sc1=$(cpu_stat "cpu$CLIENT_CPU")
  acc1=$(origin_accepts)
  # CPU time on each pinned CPU not used by the benchmark's own processes
  local ccpu other
  ccpu=$(awk '/^CLIENTCPU/{print $2 + $3}' "$raw" | tail -1)
  other=$(awk -v sp0="$sp0" -v sp1="$sp1" -v sc0="$sc0" -v sc1="$sc1" -v c0="$c0" -v c1="$c1" -v o0="$o0" -v o1="$o1" \
      -v cc="${ccpu:-0}" -v tck="$tck" -v direct="$([[ $proxy == direct ]] && echo 1 || echo 0)" 'BEGIN {
      split(sp0, a, " "); split(sp1, b, " "); split(sc0, x, " "); split(sc1, y, " ");
      pt = b[2] - a[2]; ct = y[2] - x[2];
      pb = (pt > 0 ? 100 * (b[1] - a[1]) / pt : 0); cb = (ct > 0 ? 100 * (y[1] - x[1]) / ct : 0);
      own_p = (direct ? 0 : 100 * (c1 - c0) / pt);
      own_c = 100 * ((o1 - o0) + cc * tck) / ct;
      printf "%.0f/%.0f", pb - own_p, cb - own_c }')
  local reqs dur p50 p99 err
  if [[ $scn == d ]]; then
    reqs=$(awk '/^requests:/{for(i=1;i<=NF;i++) if($i=="succeeded,") print $(i-1)}' "$raw")
    dur=$(awk '/^finished in/{ v=$3; sub(/s,$/,"",v); if (v ~ /ms$/) { sub(/ms$/,"",v); v=v/1000 } printf "%d", v*1e6 }' "$raw")
    read -r p50 p99 < <(awk -F'\t' '{print $3}' "$WORK/raw/h2.log" | sort -n | awk '{a[NR]=$1} END { if (NR==0) {print 0, 0; exit} i50=int(NR*0.50); i99=int(NR*0.99); if(i50<1)i50=1; if(i99<1)i99=1; print a[i50], a[i99] }')
    err=$(awk '/^requests:/{for(i=1;i<=NF;i++){ if($i=="failed,") f=$(i-1); if($i=="errored,") e=$(i-1); if($i=="timeout") t=$(i-1)}} END{print "failed=" f "/errored=" e "/timeout=" t}' "$raw")
    [[ "$err" == "failed=0/errored=0/timeout=0" ]] && err=0
  else
    local line; line=$(grep '^WRKRESULT' "$raw" | tail -1)
    reqs=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")
    dur=$(sed -n 's/.*duration_us=\([0-9]*\).*/\1/p' <<<"$line")
    p50=$(sed -n 's/.*p50_us=\([0-9]*\).*/\1/p' <<<"$line")
    p99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$line")
    err=$(sed -n 's/.*err=\([0-9/]*\).*/\1/p' <<<"$line")
    [[ "$err" == "0/0/0/0/0" ]] && err=0
  fi
  if [[ -z "$reqs" || -z "$dur" || "$dur" == 0 ]]; then
    note "$scn/$proxy run $run: no result (rc=$rc), see $raw"
    printf '%s\t%s\t%s\tFAIL\t\t\t\t\t\t\t\t\n' "$scn" "$proxy" "$run" >> "$RESULTS"
    return 1
  fi
  local mem; mem=$(mem_stats "$pid")
  awk -v s="$scn" -v p="$proxy" -v r="$run" -v q="$reqs" -v d="$dur" -v a="$p50" -v b="$p99" \
      -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v tck="$tck" -v m="$mem" -v e="$err" \
      -v ready="${READY_MS:-}" -v route="${ROUTE_OK:-}" -v other="$other" -v pre="$pre" -v acc="$(( ${acc1:-0} - ${acc0:-0} - 1 ))" \
      -v u0="$u0" -v u1="$u1" 'BEGIN {
        # CPU% is over the duration measured by wrk/h2load itself (d), not the wall
        # time around the command: wrk start-up (a 1M-host Lua table) is idle time
        split(m, mm, " "); cpu = (c1 - c0) / tck; wall = d / 1e6;
        printf "%s\t%s\t%s\t%.0f\t%.3f\t%.3f\t%.0f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%.1f\t%.2f\n", s, p, r, q / (d / 1e6), a / 1000, b / 1000,
          100 * cpu / wall, (q > 0 ? cpu * 1e6 / q : 0), mm[1], mm[2], ready, e, route, q, other, pre, (q > 0 ? 1000 * acc / q : 0),
          (q > 0 ? (u1 - u0) / tck * 1e6 / q : 0) }' >> "$RESULTS"
  log "$scn/$proxy run $run: $(tail -1 "$RESULTS" | cut -f4-8,15,18 | tr '\t' ' ') (rps p50ms p99ms cpu% cpu-us/req other% user-us/req)"
}

# start_proxy NAME MAP POOLS TAG -> sets PROXY_PID, READY_MS, ROUTE_OK
start_proxy() {
  local name=$1 map=$2 pools=$3 tag=$4 round=${5:-1}
  local dir="$WORK/$name-$tag"
  rm -rf "$dir"; mkdir -p "$dir"
  PROXY_PID=""; READY_MS=""; ROUTE_OK=""
  if ! "config_$name" "$dir" "$P_PROXY" "$P_PROXY_H2" "$map" "$pools" > "$dir/config.log" 2>&1; then
    note "$name: config failed: $(tail -3 "$dir/config.log" | tr '\n' ' ')"; return 1
  fi
  local last_host last_pool want t0 t1 body
  read -r last_host last_pool < <(tail -1 "$map")
  want=$(expected_body "$last_pool")
  t0=$(now_ms)
  ( taskset -cp "$PROXY_CPU" $BASHPID >/dev/null; "exec_$name" "$dir" "$P_PROXY" "$P_PROXY_H2" "$map" "$pools" ) \
    > "$dir/stdout.log" 2>&1 &
  PROXY_PID=$!
  STARTED_PIDS+=("$PROXY_PID")
  while :; do
    body=$(curl -s -m 2 -H "Host: $last_host" "http://127.0.0.1:$P_PROXY/" 2>/dev/null)
    [[ "$body" == "$want" ]] && break
    if ! kill -0 "$PROXY_PID" 2>/dev/null; then
      note "$name: exited during startup: $(tail -5 "$dir/stdout.log" "$dir/error.log" 2>/dev/null | tr '\n' ' ' | cut -c1-400)"
      PROXY_PID=""; return 1
    fi
    if (( $(now_ms) - t0 > READY_TIMEOUT * 1000 )); then
      note "$name: not ready after ${READY_TIMEOUT}s (last body: '${body:0:60}')"
      stop_pid "$PROXY_PID"; PROXY_PID=""; return 1
    fi
    sleep 0.01
  done
  t1=$(now_ms)
  READY_MS=$(( t1 - t0 ))
  # routing check: 20 hosts spread over the table + one unknown host -> be_default
  local n ok=0 tot=0 step h p i
  n=$(wc -l < "$map"); step=$(( n / 20 )); (( step < 1 )) && step=1
  while read -r h p; do
    tot=$((tot+1))
    [[ "$(curl -s -m 2 -H "Host: $h" "http://127.0.0.1:$P_PROXY/")" == "$(expected_body "$p")" ]] && ok=$((ok+1))
  done < <(awk -v s="$step" 'NR % s == 0' "$map" | head -20)
  body=$(curl -s -m 2 -H "Host: not-in-table.example" "http://127.0.0.1:$P_PROXY/")
  if [[ "$body" == "df" ]]; then ROUTE_OK="$ok/$tot+dflt"; else ROUTE_OK="$ok/$tot,no-dflt"; fi
  local mem; mem=$(mem_stats "$PROXY_PID")
  log "$name ($tag, $(wc -l < "$map") hosts): ready in ${READY_MS} ms, routing $ROUTE_OK, VmHWM/PSS MiB: $mem"
  (( round == 1 )) && echo -e "$name\t$tag\t$n\t$READY_MS\t$mem\t$ROUTE_OK" >> "$WORK/startup.tsv"
  return 0
}

# ===================================================================== main ==
if [[ ${REPORT_ONLY:-0} -eq 1 ]]; then
  # re-render results.md of an earlier --work DIR (same options as that run for the header)
  read -ra RAN < <(cut -f2 "$RESULTS" | awk '!s[$0]++' | tr '\n' ' ')
  REPORT_NOW=1
fi
if [[ ${REPORT_NOW:-0} -ne 1 ]]; then
START_TS=$(date +%s)
install_tools || exit 1
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
for p in ${PROXIES//,/ }; do
  case "$p" in
    sozu) build_sozu ;;
    pingora) build_pingora ;;
  esac
done
# say now, not after the other peers' runs, which ones will be skipped
for p in ${PROXIES//,/ }; do
  [[ $p == direct ]] && continue
  declare -F "avail_$p" >/dev/null || { log "$p: no adapter, will be skipped"; continue; }
  why=$("avail_$p" 2>&1) || log "$p: will be skipped: $why"
done

for port in "${P_POOL[@]}" "$P_DEFAULT" "$P_ORIGIN_H2" "$P_ORIGIN_STATUS" "$P_PROXY" "$P_PROXY_H2"; do
  if [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]]; then
    log "port $port already in use; set PORT_BASE to a free range"; exit 1
  fi
done

# watchdog for the load phase. Default: 900 s, or more when the plan needs it
# (each run: warm-up + duration + quiet wait + 10 s; each proxy: 2 starts of 60 s per round)
if [[ -z "$MAX_SECONDS" ]]; then
  n_p=$(tr ',' '\n' <<<"$PROXIES" | grep -c .); n_s=$(tr ',' '\n' <<<"$SCENARIOS" | grep -c .)
  MAX_SECONDS=$(( n_p * n_s * REPEAT * (WARMUP + DURATION + QUIET_WAIT + 10) + n_p * REPEAT * 120 + 120 ))
  (( MAX_SECONDS < 900 )) && MAX_SECONDS=900
fi
log "watchdog: the load phase stops after $MAX_SECONDS s (MAX_SECONDS)"
# (its own stdout/stderr are closed so that a pipe reading this script's output
# is not held open by it; cleanup stops its sleep too)
( sleep "$MAX_SECONDS"; echo "watchdog: $MAX_SECONDS s exceeded, stopping" > "$WORK/WATCHDOG"; kill -TERM $$ ) \
  < /dev/null > /dev/null 2>&1 &
WATCHDOG_PID=$!

log "work dir: $WORK"
log "pinning: proxy under test on CPU $PROXY_CPU; wrk/h2load and the nginx origin on CPU $CLIENT_CPU"
write_lua
write_pools "$WORK/pools.txt"
SMALL="$WORK/tables/small"; mkdir -p "$SMALL"
echo "bench.example be_pool0" > "$SMALL/hosts.map"
BIG="$WORK/tables/n$HOSTS"
if has_scn b; then
  t0=$(now_ms); gen_tables "$HOSTS" "$BIG"; log "generated $HOSTS-host table in $(( $(now_ms)-t0 )) ms ($BIG/hosts.map)"
fi
: > "$WORK/startup.tsv"
start_origin || exit 1

declare -a RAN=()
# One proxy's runs of the given rounds: the small table (a, c, d), then
# the big one (b). Start-up (ready time, memory) is recorded on round 1.
bench_proxy() {
  local proxy=$1; shift
  local rounds=("$@") pid port h2port run
  # small table: scenarios a, c, d
  if has_scn a || has_scn c || has_scn d; then
    if [[ $proxy == direct ]]; then
      pid=$ORIGIN_PID; port=${P_POOL[0]}; h2port=$P_ORIGIN_H2; READY_MS=""; ROUTE_OK=""
    else
      start_proxy "$proxy" "$SMALL/hosts.map" "$WORK/pools.txt" small "${rounds[0]}" || { note "$proxy: start failed (small table)"; pid=""; }
      pid=$PROXY_PID; port=$P_PROXY; h2port=$P_PROXY_H2
    fi
    if [[ -n "$pid" ]]; then
      for run in "${rounds[@]}"; do
        has_scn a && run_load a "$proxy" "$run" "$port" "$h2port" "$pid" "$SMALL/hosts.map"
        has_scn c && run_load c "$proxy" "$run" "$port" "$h2port" "$pid" "$SMALL/hosts.map"
        if has_scn d; then
          if [[ $proxy == direct ]] || { declare -F "h2_$proxy" >/dev/null && "h2_$proxy"; }; then
            run_load d "$proxy" "$run" "$port" "$h2port" "$pid" "$SMALL/hosts.map"
          elif [[ $run == 1 ]]; then note "$proxy: no h2c adapter - scenario d skipped"; fi
        fi
      done
      [[ $proxy != direct ]] && stop_pid "$pid"
    fi
  fi
  # big table: scenario b
  if has_scn b; then
    if [[ $proxy == direct ]]; then
      pid=$ORIGIN_PID; READY_MS=""; ROUTE_OK=""
      port=${P_POOL[0]}
    else
      start_proxy "$proxy" "$BIG/hosts.map" "$WORK/pools.txt" "n$HOSTS" "${rounds[0]}" || { note "$proxy: start failed ($HOSTS hosts)"; return; }
      pid=$PROXY_PID; port=$P_PROXY
    fi
    for run in "${rounds[@]}"; do
      run_load b "$proxy" "$run" "$port" "$P_PROXY_H2" "$pid" "$BIG/hosts.map"
    done
    [[ $proxy != direct ]] && stop_pid "$pid"
  fi
}
for proxy in ${PROXIES//,/ }; do
  if [[ $proxy != direct ]]; then
    if ! declare -F "exec_$proxy" >/dev/null; then note "$proxy: no adapter (exec_$proxy) - skipped"; continue; fi
    why=$("avail_$proxy" 2>&1) || { note "$proxy: skipped: $why"; continue; }
  fi
  RAN+=("$proxy")
  log "=== $proxy ($(proxy_version "$proxy"))"
done
if [[ $ORDER == grouped ]]; then
  for proxy in "${RAN[@]}"; do bench_proxy "$proxy" $(seq "$REPEAT"); done
else
  # Interleaved: round r runs every proxy once before round r+1, so a
  # noisy window of this shared VM lands on all proxies alike rather than
  # on one proxy's consecutive runs (each round restarts the proxy).
  for run in $(seq "$REPEAT"); do
    for proxy in "${RAN[@]}"; do log "--- round $run: $proxy"; bench_proxy "$proxy" "$run"; done
  done
fi

fi  # REPORT_NOW

# ------------------------------------------------------------------- report --
render_report() {
{
  echo "# Peer benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), kernel $(uname -r), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "- pinning: proxy on CPU $PROXY_CPU (taskset); wrk/h2load and the nginx origin (1 worker) on CPU $CLIENT_CPU"
  echo "- order: $ORDER (rounds of every proxy, a fresh start each; see --order)"
  echo "- load: wrk 1 thread, $CONNS connections, ${DURATION}s measured after ${WARMUP}s warm-up; h2load 1 thread, $H2_CONNS conns x $H2_STREAMS streams"
  echo "- origin: nginx 1 worker, \`return 200 \"pN\\n\"\` (3-byte body), one port per pool"
  echo "- scenario b table: $HOSTS hosts (siteNNNNNN.example) over 4 pools + be_default"
  echo "- versions: $(for p in "${RAN[@]}"; do printf '%s; ' "$(proxy_version "$p")"; done)wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), h2load $(h2load --version 2>/dev/null | awk '{print $NF}')"
  echo "- columns: vs direct / vs HAProxy = req/s ratio (mean of runs) in the same scenario; proxy CPU% = CPU time of the proxy process tree / the load run's measured duration;"
  echo "  CPU us/req = proxy CPU time per request (for direct: the origin's); user us/req = its user-space part (the kernel's TCP work is a floor"
  echo "  shared by every proxy here: the user part is what a design controls); req/s per core = 1e6 / CPU us/req, the rate one fully busy core"
  echo "  would give (the honest per-core figure when the client side, not the proxy, is the bottleneck: proxy CPU% < ~95);"
  echo "  peak RSS = max VmHWM over the proxy's processes (PSS in the startup table = sum of Pss over them);"
  echo "  ready ms = process start until the last host of its table is answered with the right pool; route = routing check (20 sampled hosts, +dflt = unknown host went to be_default);"
  echo "  errors = wrk connect/read/write/status/timeout (0 = none);"
  echo "  origin conns/kreq = TCP connections the origin accepted per 1000 requests (upstream connection reuse; direct+close = 1000);"
  echo "  other% p/c = busy % of the proxy CPU / client CPU NOT used by the benchmark's own processes during the run"
  echo "  (other sessions, kernel softirq); pre = whole-machine busy % over 1 s just before the run (! = still busy after --quiet-wait)"
  echo
  echo "Scenarios: a = HTTP/1.1 keep-alive, one Host; b = $HOSTS-host table, random Host per request; c = Connection: close; d = h2c (h2load)"
  echo
  echo "| scn | proxy | run | req/s | p50 ms | p99 ms | vs direct | vs HAProxy | proxy CPU% | CPU us/req | user us/req | req/s per core | peak RSS MiB | ready ms | route | errors | origin conns/kreq | other% p/c | pre |"
  echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|---|"
  awk -F'\t' '
    $4 != "FAIL" { s[$1","$2] += $4; c[$1","$2]++ }
    { rows[NR] = $0 }
    END {
      for (i = 1; i <= NR; i++) {
        split(rows[i], f, "\t")
        if (f[4] == "FAIL") { printf "| %s | %s | %s | FAIL | | | | | | | | | | | | | | | |\n", f[1], f[2], f[3]; continue }
        d = (c[f[1]",direct"] ? s[f[1]",direct"] / c[f[1]",direct"] : 0)
        h = (c[f[1]",haproxy"] ? s[f[1]",haproxy"] / c[f[1]",haproxy"] : 0)
        printf "| %s | %s | %s | %d | %.2f | %.2f | %s | %s | %.0f | %.1f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
          f[1], f[2], f[3], f[4], f[5], f[6],
          (d ? sprintf("%.2f", f[4] / d) : "-"), (h ? sprintf("%.2f", f[4] / h) : "-"),
          f[7], f[8], (f[18] != "" ? sprintf("%.1f", f[18]) : "-"), (f[2] != "direct" && f[8] > 0 ? sprintf("%.0f", 1e6 / f[8]) : "-"), f[9],
          (f[11] == "" ? "-" : f[11]), (f[13] == "" ? "-" : f[13]), f[12], f[17], f[15], f[16]
      }
    }' <(sort -t$'\t' -k1,1 -s "$RESULTS")
  if [[ $REPEAT -gt 1 ]]; then
    echo
    echo "Run-to-run spread (req/s): (max-min)/mean"
    echo
    echo "| scn | proxy | runs | min | max | spread |"
    echo "|---|---|---:|---:|---:|---:|"
    awk -F'\t' '$4 != "FAIL" { k = $1" | "$2; n[k]++; s[k] += $4; if (!(k in mn) || $4 < mn[k]) mn[k] = $4; if ($4 > mx[k]) mx[k] = $4 }
      END { for (k in n) printf "| %s | %d | %d | %d | %.1f%% |\n", k, n[k], mn[k], mx[k], 100 * (mx[k] - mn[k]) / (s[k] / n[k]) }' "$RESULTS" | sort
  fi
  if [[ -s "$WORK/startup.tsv" ]]; then
    echo
    echo "Startup (process start -> last host of the table answered correctly):"
    echo
    echo "| proxy | table | hosts | ready ms | VmHWM MiB at ready | PSS MiB at ready | route |"
    echo "|---|---|---:|---:|---:|---:|---|"
    awk -F'\t' '{ split($5, m, " "); printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, m[1], m[2], $6 }' "$WORK/startup.tsv"
  fi
  if [[ -s "$NOTES" ]]; then echo; echo "Notes:"; echo; cat "$NOTES"; fi
  echo
  if [[ -n "${START_TS:-}" ]]; then echo "Total wall time: $(( $(date +%s) - START_TS )) s. Raw output: $WORK/raw/"
  else echo "Re-rendered from $WORK/results.tsv (--report-only). Raw output: $WORK/raw/"; fi
} > "$REPORT"
cat "$REPORT"
[[ -n "$OUT" ]] && cp "$REPORT" "$OUT"
return 0
}
render_report
exit 0
