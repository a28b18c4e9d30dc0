#!/usr/bin/env bash
# Renders a predictor config folder for benches/peers/peers.sh (its
# PREDICTOR_CONFIG_CMD hook, this script by default) and prints predictor's
# arguments.
#
#   usage: peer-config.sh DIR PORT H2PORT MAP POOLS
#     MAP   "host pool" lines (HAProxy map format)
#     POOLS "pool ip:port" lines; pool be_default answers unknown hosts
#
# Each host becomes its own tenant (the worst case for memory), its pool its
# tier, spread over 100 filers, all migrated; unknown hosts go to the
# "legacy balancer", which is be_default. BENCH_THREADS sets the workers.
#
# PREDICTOR_ROUTE=legacy measures the legacy path instead: every tenant is
# in state "legacy", and the legacy balancer is the origin port of the
# first host of MAP (the one scenarios a, c and d ask for), so predictor
# forwards the same traffic to the same remote as HAProxy does.
#
#   cargo dist        # target/dist/predictor: profile dist + jemalloc
#   bash benches/peers/peers.sh --proxies direct,haproxy,nginx,predictor
#   PREDICTOR_ROUTE=legacy bash benches/peers/peers.sh --proxies direct,haproxy,predictor
set -euo pipefail
dir=$1 port=$2 h2port=$3 map=$4 pools=$5
mkdir -p "$dir"
awk '{ printf "%s\tt%d\t%s\tf%d\n", $1, NR, $2, NR % 100 }' "$map" > "$dir/tenants.tsv"
{
  echo 'tenants = "tenants.tsv"'
  echo 'migration = "migration.toml"'
  echo '[proxy]'
  echo "workers = ${BENCH_THREADS:-1}"
  echo '[[listen]]'
  echo "address = \"127.0.0.1:$port\""
  echo '[[listen]]'
  echo "address = \"127.0.0.1:$h2port\""
  echo 'protocol = "h2c"'
  if [ "${PREDICTOR_ROUTE:-local}" = legacy ]; then
    first_pool=$(awk 'NR == 1 { print $2 }' "$map")
    legacy=$(awk -v p="$first_pool" '$1 == p { print $2 }' "$pools")
  else
    legacy=$(awk '$1 == "be_default" { print $2 }' "$pools")
  fi
  echo '[legacy]'
  echo "address = \"$legacy\""
  awk '$1 != "be_default" { printf "[tiers.%s]\npool = \"%s\"\n[pools.%s]\nservers = [{ id = \"%s-1\", address = \"%s\" }]\n", $1, $1, $1, $1, $2 }' "$pools"
} > "$dir/predictor.toml"
if [ "${PREDICTOR_ROUTE:-local}" = legacy ]; then
  echo 'default = "legacy"' > "$dir/migration.toml"
else
  echo 'default = "migrated"' > "$dir/migration.toml"
fi
echo "run --config $dir"
