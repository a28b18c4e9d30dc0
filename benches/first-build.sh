#!/usr/bin/env bash
# The README's first command as a newcomer meets it: a fresh clone of HEAD,
# an empty CARGO_HOME (crates are downloaded too), then the time from
# `cargo run --release -- demo` to the demo's last banner line. The demo is
# stopped with SIGTERM and everything is removed. Not run by CI.
#
#   usage: bash benches/first-build.sh [cargo args...]   (default: run --release)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone"
export CARGO_HOME="$work/cargo-home"
mkdir -p "$CARGO_HOME"
# The toolchain stays where rustup put it; only the crate cache is new.
[ -f "${HOME}/.cargo/config.toml" ] && cp "${HOME}/.cargo/config.toml" "$CARGO_HOME/"
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(run --release)
cd "$work/clone"
start=$(date +%s%N)
cargo "${args[@]}" -- demo --listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
pid=$!
deadline=$(( $(date +%s) + 1800 ))
until grep -q "Stop with" "$work/out" 2>/dev/null; do
  if ! kill -0 "$pid" 2>/dev/null || [ "$(date +%s)" -gt "$deadline" ]; then
    echo "the demo did not start:" >&2; tail -20 "$work/err" >&2; exit 1
  fi
  sleep 0.2
done
end=$(date +%s%N)
printf 'first line of the demo after %s s (cargo %s, fresh clone, empty CARGO_HOME, %s cores)\n' \
  "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')" "${args[*]}" "$(nproc)"
pkill -TERM -P "$pid" 2>/dev/null || true
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
