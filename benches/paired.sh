#!/usr/bin/env bash
# Per-core cost beside the peers, in paired short windows: predictor,
# HAProxy and nginx run at once (one worker each, pinned to one CPU, idle
# but for the one under load), and each round loads every proxy once for a
# few seconds, in an order that rotates per round. This VM's noise moves on
# a scale of tens of seconds to minutes (the same binary's rate varies
# 20-45 % across runs a minute apart, benches/peers/README.md), so two
# windows of one round see nearly the same machine: the ratio of their CPU
# time per request is taken per round, and the median of those ratios
# reported with their spread. benches/peers/peers.sh measures more (p99,
# start-up, memory, 100,000 hosts); this measures the per-core ratios of
# its scenarios a, c and d with less noise.
#
#   usage: benches/paired.sh [PREDICTOR_BIN]   (default target/dist/predictor: `cargo dist`)
#   needs: nginx, haproxy, wrk, h2load
#
#   PAIRED_ROUNDS   rounds per scenario (default 10)
#   PAIRED_SECONDS  seconds per window (default 3)
#   PAIRED_SCENARIOS  subset of a,c,d (default a,c,d): a keep-alive, c
#                   `Connection: close`, d h2c (h2load 16 connections x 8
#                   streams), as in peers.sh
#   PAIRED_PROXIES  subset of predictor,haproxy,nginx,baseline (default the
#                   first three); baseline is PAIRED_BASELINE, another
#                   predictor binary with the same config: an A/B of two
#                   builds, e.g. a change against main or PGO against none
#
# Output: per scenario and proxy the median CPU and user µs per request;
# per peer the median (min-max) over the rounds of peer CPU / predictor
# CPU per request, i.e. predictor's requests per core as a multiple of the
# peer's. The proxies' configs are benches/one-worker.sh's, as in
# benches/callgrind.sh (a keep-alive pool to one nginx origin, the Host
# mapped to it).
set -euo pipefail
bin=$(realpath "${1:-target/dist/predictor}")
rounds=${PAIRED_ROUNDS:-10} secs=${PAIRED_SECONDS:-3}
scenarios=${PAIRED_SCENARIOS:-a,c,d} proxies=${PAIRED_PROXIES:-predictor,haproxy,nginx}
IFS=, read -ra scns <<<"$scenarios"
IFS=, read -ra names <<<"$proxies"
work=$(mktemp -d)
# shellcheck source=benches/origin.sh
source "$(dirname "${BASH_SOURCE[0]}")/origin.sh"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_origin "$work"
  rm -rf "$work"
}
trap cleanup EXIT
# Below the ephemeral ports (32768-60999), which outgoing connections take.
base=$((10000 + RANDOM % 20000))
origin=$base
# The load and the origin on CPU 0, the proxies on CPU 1 (as peers.sh).
taskset -cp 0 $$ >/dev/null
start_origin "$work" "$origin"

declare -A port h2port pid
i=0
for p in "${names[@]}"; do
  port[$p]=$((base + 10 + 2 * i)) h2port[$p]=$((base + 11 + 2 * i)) i=$((i + 1))
done

# shellcheck source=benches/one-worker.sh
source "$(dirname "${BASH_SOURCE[0]}")/one-worker.sh"
for p in "${names[@]}"; do
  d="$work/$p"
  case $p in
    predictor) BIN=$bin predictor_conf "$d" "$origin" "${port[$p]}" "${h2port[$p]}" ;;
    baseline)
      BIN=$(realpath "${PAIRED_BASELINE:?PAIRED_BASELINE: the baseline predictor binary}")
      predictor_conf "$d" "$origin" "${port[$p]}" "${h2port[$p]}" ;;
    nginx) nginx_conf "$d" "$origin" "${port[$p]}" "${h2port[$p]}" ;;
    haproxy) haproxy_conf "$d" "$origin" "${port[$p]}" "${h2port[$p]}" ;;
    *) echo "PAIRED_PROXIES: predictor, haproxy, nginx or baseline, not $p" >&2; exit 2 ;;
  esac
  args=("${proxy_args[@]}")
  ( taskset -cp 1 $BASHPID >/dev/null; exec "${args[@]}" ) >"$d/log" 2>&1 &
  pid[$p]=$!
  pids+=("${pid[$p]}")
done
for p in "${names[@]}"; do
  for _ in $(seq 1 100); do
    curl -s -o /dev/null -H 'Host: bench.example' "http://127.0.0.1:${port[$p]}/" && break
    sleep 0.1
  done
  curl -sf -o /dev/null -H 'Host: bench.example' "http://127.0.0.1:${port[$p]}/" \
    || { echo "$p did not start: $(tail -3 "$work/$p/log")" >&2; exit 1; }
done

ticks() { # utime stime of a process (all its threads), in clock ticks
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'
}
# load SCENARIO PROXY SECONDS -> requests done
load() {
  local s=$1 p=$2 t=$3
  case $s in
    a) wrk -t1 -c64 -d"${t}s" -H 'Host: bench.example' "http://127.0.0.1:${port[$p]}/" |
         awk '/requests in/ { print $1 }' ;;
    c) wrk -t1 -c64 -d"${t}s" -H 'Host: bench.example' -H 'Connection: close' "http://127.0.0.1:${port[$p]}/" |
         awk '/requests in/ { print $1 }' ;;
    d) h2load -t1 -c16 -m8 -D "$t" -H ':authority: bench.example' "http://127.0.0.1:${h2port[$p]}/" |
         awk '/^requests:/ { print $4 }' ;;
    *) echo "PAIRED_SCENARIOS: a, c or d, not $s" >&2; exit 2 ;;
  esac
}

hz=$(getconf CLK_TCK)
out="$work/windows.tsv"
: > "$out"
echo "paired windows: ${rounds} rounds x ${secs} s per proxy and scenario; proxies ${names[*]}; $(date -u '+%Y-%m-%d %H:%M UTC')"
for s in "${scns[@]}"; do
  for p in "${names[@]}"; do load "$s" "$p" 1 >/dev/null; done # warm-up
  for r in $(seq 1 "$rounds"); do
    n=${#names[@]}
    for k in $(seq 0 $((n - 1))); do
      p=${names[$(((r + k) % n))]}
      read -r u0 s0 <<<"$(ticks "${pid[$p]}")"
      reqs=$(load "$s" "$p" "$secs")
      read -r u1 s1 <<<"$(ticks "${pid[$p]}")"
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$r" "$p" "$reqs" $((u1 - u0)) $((s1 - s0)) >> "$out"
    done
  done
done

python3 - "$out" "$hz" <<'PY'
import statistics, sys
from collections import defaultdict
path, hz = sys.argv[1], int(sys.argv[2])
cpu, user = defaultdict(dict), defaultdict(dict)
for line in open(path):
    s, r, p, reqs, u, k = line.split("\t")
    reqs = int(reqs or 0)
    if reqs == 0:
        continue
    cpu[(s, p)][r] = (int(u) + int(k)) * 1e6 / hz / reqs
    user[(s, p)][r] = int(u) * 1e6 / hz / reqs
scns = sorted({s for s, _ in cpu})
procs = sorted({p for _, p in cpu}, key=lambda p: (p != "predictor", p))
for s in scns:
    print(f"\nscenario {s}: median per request over {max(len(cpu[(s, p)]) for p in procs)} rounds")
    for p in procs:
        c, u = cpu[(s, p)], user[(s, p)]
        if not c:
            continue
        med = statistics.median(c.values())
        print(f"  {p:9} CPU {med:6.2f} us ({1e3 / med:5.1f}k per core)  user {statistics.median(u.values()):5.2f} us"
              f"  (CPU min-max {min(c.values()):.2f}-{max(c.values()):.2f})")
    mine = cpu[(s, "predictor")]
    for p in procs:
        if p == "predictor":
            continue
        ratios = [cpu[(s, p)][r] / mine[r] for r in mine if r in cpu[(s, p)]]
        uratios = [user[(s, "predictor")][r] / user[(s, p)][r] for r in mine if r in user[(s, p)] and user[(s, p)][r]]
        if ratios:
            print(f"  predictor per core vs {p}: {statistics.median(ratios):.2f}x median"
                  f" ({min(ratios):.2f}-{max(ratios):.2f} over {len(ratios)} rounds);"
                  f" user time {statistics.median(uratios):.2f}x {p}'s")
PY
