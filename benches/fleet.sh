#!/usr/bin/env bash
# A fleet behind an L4 tier on this machine: HAProxy in TCP mode
# (send-proxy-v2, the backend of deploy/haproxy/l4.cfg) spreading wrk's
# keep-alive connections over 1, 2 and 3 predictor instances (one worker
# each, listeners with proxy_protocol, in front of one nginx origin).
# Reports per fleet size the aggregate requests/s and p99 through the
# tier, and each instance's CPU time (user + system, from /proc) per
# request it answered (from its /metrics): the instance's own cost,
# which should not grow with the fleet. On 2 cores the machine caps the
# aggregate (wrk, HAProxy, the origin and the instances share them).
#
#   usage: benches/fleet.sh [PREDICTOR_BIN]   (default target/dist/predictor)
#   needs: haproxy, nginx, wrk, curl
#
#   FLEET_SECONDS  seconds per load (default 8)
#   FLEET_REPEAT   rounds, each fleet size once per round (default 3)
#   FLEET_CONNS    wrk connections (default 48)
set -euo pipefail
bin=$(realpath "${1:-target/dist/predictor}")
secs=${FLEET_SECONDS:-8} repeat=${FLEET_REPEAT:-3} conns=${FLEET_CONNS:-48}
here=$(dirname "${BASH_SOURCE[0]}")
work=$(mktemp -d)
# shellcheck source=benches/origin.sh
source "$here/origin.sh"
# shellcheck source=benches/one-worker.sh
source "$here/one-worker.sh"
BIN=$bin
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_origin "$work"
  rm -rf "$work"
}
trap cleanup EXIT

# Below the ephemeral ports (32768-60999), which outgoing connections take.
base=$((10000 + RANDOM % 20000))
origin=$base front=$((base + 1))
start_origin "$work" "$origin"

# Instance i: HTTP on base+10+i, admin on base+20+i, PROXY headers from
# 127.0.0.1 (HAProxy).
start_instance() {
  local i=$1 dir="$work/p$1"
  predictor_conf "$dir" "$origin" $((base + 10 + i))
  sed -i "0,/^address = .*/s//&\nproxy_protocol = [\"127.0.0.1\"]/" "$dir/predictor.toml"
  printf '[admin]\naddress = "127.0.0.1:%s"\n' $((base + 20 + i)) >> "$dir/predictor.toml"
  "$bin" run --config "$dir" 2>"$dir/log" &
  pids+=($!)
  echo $! > "$dir/pid"
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$((base + 20 + i))/readyz" >/dev/null && return
    sleep 0.1
  done
  echo "instance $i did not become ready" >&2
  cat "$dir/log" >&2
  exit 1
}

# The tier for n instances: deploy/haproxy/l4.cfg's http backend.
start_tier() {
  local n=$1 cfg="$work/l4.$1.cfg"
  {
    printf 'global\n  maxconn 4096\n  nbthread 1\n'
    printf 'defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n'
    printf 'frontend http\n  mode tcp\n  bind 127.0.0.1:%s\n  default_backend predictor_http\n' "$front"
    sed -n '/^backend predictor_http$/,/^$/p' "$here/../deploy/haproxy/l4.cfg" | grep -v '^  server '
    for i in $(seq 1 "$n"); do
      printf '  server e%s 127.0.0.1:%s check port %s\n' "$i" $((base + 10 + i)) $((base + 20 + i))
    done
  } > "$cfg"
  haproxy -D -f "$cfg" -p "$work/haproxy.pid" 2>"$work/haproxy.err" || { cat "$work/haproxy.err" "$cfg" >&2; exit 1; }
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null -H 'Host: bench.example' "http://127.0.0.1:$front/" && return
    sleep 0.1
  done
  echo "the tier did not start" >&2; cat "$work/haproxy.err" "$cfg" >&2
  exit 1
}

stop_tier() {
  kill "$(cat "$work/haproxy.pid")" 2>/dev/null || true
  sleep 0.3
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
answered() {
  curl -s "http://127.0.0.1:$((base + 20 + $1))/metrics" \
    | awk '/^predictor_requests_total/ { s += $NF } END { printf "%d\n", s }'
}

for i in 1 2 3; do start_instance "$i"; done
hz=$(getconf CLK_TCK)
echo "fleet: $conns keep-alive connections, ${secs}s per load, $repeat round(s); $(nproc) cores"
for round in $(seq 1 "$repeat"); do
  for n in 1 2 3; do
    start_tier "$n"
    declare -A t0 r0
    for i in $(seq 1 "$n"); do
      t0[$i]=$(cpu_ticks "$(cat "$work/p$i/pid")")
      r0[$i]=$(answered "$i")
    done
    out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -H 'Host: bench.example' "http://127.0.0.1:$front/")
    rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    errors=$(awk '/Non-2xx|Socket errors/ { printf "%s ", $0 }' <<<"$out")
    per=""
    for i in $(seq 1 "$n"); do
      ticks=$(( $(cpu_ticks "$(cat "$work/p$i/pid")") - t0[$i] ))
      reqs=$(( $(answered "$i") - r0[$i] ))
      us=$(awk -v t="$ticks" -v hz="$hz" -v r="$reqs" 'BEGIN { if (r > 0) printf "%.1f", t / hz * 1e6 / r; else print "-" }')
      per+="e$i ${reqs} req ${us} us/req; "
    done
    echo "round $round, $n instance(s): ${rps} req/s, p99 ${p99}; per instance: ${per}${errors}"
    stop_tier
  done
done
