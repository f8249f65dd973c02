#!/usr/bin/env bash
# The documented benchmark command: bash benchmarks/run.sh [python -m benchmarks options]
# bash benchmarks/run.sh --outage [options] runs the Redis outage scenario instead, and
# bash benchmarks/run.sh --write-heavy [options] the write-heavy scenario.
# --redis sentinel (anywhere among the options) puts the cache on the master of a Sentinel
# setup it starts (a master, a replica, three Sentinels) instead of one Redis server;
# --redis cluster on a Redis Cluster it starts (three masters, a replica of each).
#
# Starts PostgreSQL and Redis the way the project's service script does, on ports of their
# own (never the dev servers), installs wrk and matplotlib if missing, runs the benchmark
# and stops the servers it started. Set BENCH_KEEP_SERVICES=1 to leave them running.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

export PG_PORT=${BENCH_PG_PORT:-25442}
export REDIS_PORT=${BENCH_REDIS_PORT:-26390}
export STATE_DIR=${BENCH_STATE_DIR:-/tmp/chainlearn-bench}
export SENTINEL_BASE_PORT=${BENCH_SENTINEL_BASE_PORT:-26400}
# Nodes on 17400-17405, their cluster bus on 27400-27405 (below the ephemeral range).
export CLUSTER_BASE_PORT=${BENCH_CLUSTER_BASE_PORT:-17400}
redis_mode=standalone
args=()
while [ $# -gt 0 ]; do
    if [ "$1" = --redis ]; then
        redis_mode=${2:?--redis takes standalone, sentinel or cluster}
        shift 2
    else
        args+=("$1")
        shift
    fi
done
case "$redis_mode" in
    standalone|sentinel|cluster) ;;
    *) echo "--redis: standalone, sentinel or cluster" >&2; exit 2 ;;
esac
# The outage scenario shuts down, freezes and refills one Redis server (the daemon at
# REDIS_URL): a cluster's nodes are not that server.
if [ "$redis_mode" = cluster ] && [ "${args[0]:-}" = --outage ]; then
    echo "--outage runs against one Redis server: not with --redis cluster" >&2
    exit 2
fi
# shellcheck source=../.ci/services.sh
source .ci/services.sh

install_system_packages
if ! command -v wrk >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
if ! "$VENV/bin/python" -c "import django" 2>/dev/null; then
    install_python_packages
fi
if ! "$VENV/bin/python" -c "import matplotlib" 2>/dev/null || [ ! -x "$VENV/bin/py-spy" ]; then
    "$VENV/bin/pip" install -q -e ".[bench]" 2>/dev/null || true
    "$VENV/bin/python" -c "import matplotlib" 2>/dev/null \
        || "$VENV/bin/pip" install -q "matplotlib>=3.9,<4"
    [ -x "$VENV/bin/py-spy" ] || "$VENV/bin/pip" install -q "py-spy>=0.4,<0.5"
fi

pg_was_up=0; redis_was_up=0
(exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null && pg_was_up=1
(exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && redis_was_up=1
cleanup() {
    if [ "${BENCH_KEEP_SERVICES:-0}" != 1 ]; then
        [ "$redis_mode" = sentinel ] && stop_sentinels
        [ "$redis_mode" = cluster ] && stop_cluster
        [ "$redis_was_up" = 1 ] || stop_redis
        [ "$pg_was_up" = 1 ] || stop_postgres
    fi
}
trap cleanup EXIT
start_postgres
start_redis
export_service_env
if [ "$redis_mode" = sentinel ]; then
    start_sentinels
    export_sentinel_env 0
    # The harness reads the cache's Redis (its command counts, flushes) at REDIS_URL.
    export REDIS_URL="redis://127.0.0.1:$SENTINEL_BASE_PORT/0"
fi
if [ "$redis_mode" = cluster ]; then
    start_cluster
    # The harness finds the cache's masters from CACHE_REDIS_NODES (benchmarks/services.py);
    # REDIS_URL stays the standalone server's, which the cache does not use in this mode.
    export_cluster_env
fi
export BENCH_REDIS_MODE=$redis_mode

set -- ${args[@]+"${args[@]}"}
export BENCH_SETUP_S=$(( $(date +%s) - started ))
BENCH_COMMAND="bash benchmarks/run.sh${*:+ $*}"
[ "$redis_mode" = standalone ] || BENCH_COMMAND+=" --redis $redis_mode"
export BENCH_COMMAND
module=benchmarks
case "${1:-}" in
    --outage)  # the Redis outage scenario (benchmarks/outage.py) only
        shift
        module=benchmarks.outage ;;
    --write-heavy)  # reads under enrollments (benchmarks/write_heavy.py) only
        shift
        module=benchmarks.write_heavy ;;
    --hit-path)  # one cache hit's cost, two trees in process (benchmarks/hit_path.py)
        shift
        module=benchmarks.hit_path ;;
esac
"$VENV/bin/python" -m "$module" "$@"
