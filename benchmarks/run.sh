#!/usr/bin/env bash
# The documented benchmark command: bash benchmarks/run.sh [python -m benchmarks options]
# bash benchmarks/run.sh --outage [options] runs the Redis outage scenario instead, and
# bash benchmarks/run.sh --write-heavy [options] the write-heavy scenario.
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
        [ "$redis_was_up" = 1 ] || stop_redis
        [ "$pg_was_up" = 1 ] || stop_postgres
    fi
}
trap cleanup EXIT
start_postgres
start_redis
export_service_env

export BENCH_SETUP_S=$(( $(date +%s) - started ))
export BENCH_COMMAND="bash benchmarks/run.sh${*:+ $*}"
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
