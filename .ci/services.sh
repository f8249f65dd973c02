# Shared helpers for .ci/run, .ci/serve and the benchmark: install what the project
# needs and start PostgreSQL and Redis on loopback, on ports of our own.
# Source it; every function is idempotent.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PORT=${PG_PORT:-55432}
REDIS_PORT=${REDIS_PORT:-56379}
STATE_DIR=${STATE_DIR:-/tmp/chainlearn-$PG_PORT}
VENV=${VENV:-.venv}
# 0 skips chromium and promtool, which only the tests need (.ci/serve sets it).
INSTALL_BROWSER=${INSTALL_BROWSER:-1}

install_system_packages() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    [ -x "$PG_BIN/initdb" ] || missing+=(postgresql-15)
    command -v runuser >/dev/null || missing+=(util-linux)
    # The README's curl session (tests/test_readme_tour.py runs it).
    command -v curl >/dev/null || missing+=(curl)
    command -v jq >/dev/null || missing+=(jq)
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # redis-server from Debian starts a system instance; we run our own on our port.
    systemctl disable --now redis-server >/dev/null 2>&1 || true
    if [ "$INSTALL_BROWSER" = 1 ]; then
        install_browser
        install_promtool
    fi
}

# Debian's chromium, which the API docs test drives through Playwright (no browser download).
install_browser() {
    command -v chromium >/dev/null && return 0
    apt-get update -qq
    # Waits for a concurrent apt run instead of failing on its lock.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 chromium >/dev/null
}

# promtool, from Debian's prometheus package: tests/test_ops_rules.py checks and unit-tests
# the alerting rules in ops/prometheus/ with it.
install_promtool() {
    command -v promtool >/dev/null && return 0
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 prometheus >/dev/null
    # The package starts a Prometheus server of its own (port 9090); only promtool is wanted.
    systemctl disable --now prometheus >/dev/null 2>&1 || true
    if [ ! -d /run/systemd/system ] && [ -x /etc/init.d/prometheus ]; then
        /etc/init.d/prometheus stop >/dev/null 2>&1 || true
        update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
}

# apt-get update does not wait for the lists lock as installs do (DPkg::Lock::Timeout):
# retry while another apt run holds it, fail at once on any other error.
apt_update() {
    local err=""
    for _ in $(seq 60); do
        err=$(apt-get update -qq 2>&1 >/dev/null) && return 0
        case $err in
            *lock*) sleep 10 ;;
            *) break ;;
        esac
    done
    echo "$err" >&2
    return 1
}

install_python_packages() {
    [ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -e ".[test]"
}

wait_port_state() {  # wait_port_state PORT open|closed SECONDS
    local port=$1 want=$2 tries=$(( $3 * 10 ))
    for _ in $(seq "$tries"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            [ "$want" = open ] && return 0
        else
            [ "$want" = closed ] && return 0
        fi
        sleep 0.1
    done
    echo "port $port did not become $want" >&2
    return 1
}

start_postgres() {
    mkdir -p "$STATE_DIR"
    chmod 755 "$STATE_DIR"
    local data="$STATE_DIR/pg"
    if [ ! -f "$data/PG_VERSION" ]; then
        install -d -o postgres -g postgres -m 700 "$data"
        runuser -u postgres -- "$PG_BIN/initdb" -D "$data" -U postgres -A trust \
            --encoding=UTF8 --locale=C.UTF-8 >"$STATE_DIR/initdb.log" 2>&1
    fi
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null; then
        install -d -o postgres -g postgres -m 755 "$STATE_DIR/run"
        retry_start start_postgres_once "$data"
    fi
    psql_admin -tc "SELECT 1 FROM pg_database WHERE datname='chainlearn'" | grep -q 1 \
        || psql_admin -c "CREATE DATABASE chainlearn" >/dev/null
    psql_admin -d chainlearn -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
}

start_postgres_once() {
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$1" -l "$STATE_DIR/run/pg.log" -w \
        -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $STATE_DIR/run -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_preload_libraries=pg_stat_statements" \
        start >/dev/null && wait_port_state "$PG_PORT" open 30
}

# The default ports (55432, 56379) lie in Linux's ephemeral range (32768-60999): a client
# socket that was given one (pip's, say) makes the server's bind fail with "Address already
# in use", and once it closes its TIME_WAIT holds the port for another 60 s. Seen once in a
# CI run here; trying again for up to two minutes gets past it.
retry_start() {
    local deadline=$((SECONDS + 120))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        echo "$1 failed (its port may be held by a client socket); trying again in 2 s" >&2
        sleep 2
    done
}

psql_admin() {
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -q "$@"
}

stop_postgres() {
    [ -f "$STATE_DIR/pg/postmaster.pid" ] || return 0
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$STATE_DIR/pg" -m fast stop >/dev/null 2>&1 || true
    wait_port_state "$PG_PORT" closed 30
}

start_redis() {
    mkdir -p "$STATE_DIR"
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then
        retry_start start_redis_once
    fi
}

start_redis_once() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize yes --pidfile "$STATE_DIR/redis.pid" --logfile "$STATE_DIR/redis.log" \
        --dir "$STATE_DIR" && wait_port_state "$REDIS_PORT" open 5
}

stop_redis() {
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    wait_port_state "$REDIS_PORT" closed 30
}

# A Sentinel setup for the tests' second pass (CACHE_REDIS_MODE=sentinel): a master on
# SENTINEL_BASE_PORT, its replica on +1, and three Sentinels (quorum 2) on +2..+4. The
# base is below Linux's ephemeral range (32768-60999), where the first pass's many client
# connections could already hold a port.
SENTINEL_SERVICE=chainlearn
SENTINEL_BASE_PORT=${SENTINEL_BASE_PORT:-$((REDIS_PORT - 30000))}
sentinel_ports() { echo $((SENTINEL_BASE_PORT + 2)) $((SENTINEL_BASE_PORT + 3)) $((SENTINEL_BASE_PORT + 4)); }

start_sentinels() {
    local master=$SENTINEL_BASE_PORT replica=$((SENTINEL_BASE_PORT + 1)) port
    mkdir -p "$STATE_DIR/sentinel"
    for port in $master $replica; do
        local extra=()
        [ "$port" = "$replica" ] && extra=(--replicaof 127.0.0.1 "$master")
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize yes --pidfile "$STATE_DIR/sentinel/redis-$port.pid" \
            --logfile "$STATE_DIR/sentinel/redis-$port.log" --dir "$STATE_DIR/sentinel" "${extra[@]}"
    done
    for port in $(sentinel_ports); do
        cat > "$STATE_DIR/sentinel/sentinel-$port.conf" <<CONF
port $port
bind 127.0.0.1
daemonize yes
pidfile $STATE_DIR/sentinel/sentinel-$port.pid
logfile $STATE_DIR/sentinel/sentinel-$port.log
dir $STATE_DIR/sentinel
sentinel monitor $SENTINEL_SERVICE 127.0.0.1 $master 2
sentinel down-after-milliseconds $SENTINEL_SERVICE 1000
sentinel failover-timeout $SENTINEL_SERVICE 5000
CONF
        redis-server "$STATE_DIR/sentinel/sentinel-$port.conf" --sentinel
    done
    # Ready once the replica is in sync and every Sentinel knows it and the two others.
    for _ in $(seq 300); do
        local ready=1
        redis-cli -p "$replica" info replication | grep -q 'master_link_status:up' || ready=0
        for port in $(sentinel_ports); do
            [ "$(redis-cli -p "$port" sentinel replicas $SENTINEL_SERVICE | grep -c '^ip$')" -ge 1 ] || ready=0
            [ "$(redis-cli -p "$port" sentinel sentinels $SENTINEL_SERVICE | grep -c '^ip$')" -ge 2 ] || ready=0
        done
        [ "$ready" = 1 ] && return 0
        sleep 0.1
    done
    echo "the Sentinel setup did not come up" >&2
    return 1
}

stop_sentinels() {
    local port
    for port in $(sentinel_ports); do
        redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    done
    for port in $SENTINEL_BASE_PORT $((SENTINEL_BASE_PORT + 1)); do
        redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    done
    for port in $(sentinel_ports) $SENTINEL_BASE_PORT $((SENTINEL_BASE_PORT + 1)); do
        wait_port_state "$port" closed 30
    done
}

# The settings that point the caching layer at that setup's master (database $1, default 2:
# the tests').
export_sentinel_env() {
    export CACHE_REDIS_MODE=sentinel CACHE_REDIS_SERVICE=$SENTINEL_SERVICE CACHE_REDIS_DB=${1:-2}
    CACHE_REDIS_SENTINELS=$(for port in $(sentinel_ports); do printf '127.0.0.1:%s,' "$port"; done)
    export CACHE_REDIS_SENTINELS=${CACHE_REDIS_SENTINELS%,}
}

# A Redis Cluster for the tests' third pass (CACHE_REDIS_MODE=cluster): six nodes on
# CLUSTER_BASE_PORT..+5, which `redis-cli --cluster create` makes three masters and a
# replica of each. Every node also listens on its port + 10000 (the cluster bus), so both
# ranges must stay below Linux's ephemeral range (32768-60999), where the first pass's many
# client connections could already hold a port. REDIS_PORT - 45000 (bus REDIS_PORT - 35000)
# is clear of the Sentinel ports (REDIS_PORT - 30000..+4).
CLUSTER_BASE_PORT=${CLUSTER_BASE_PORT:-$((REDIS_PORT - 45000))}
cluster_ports() { seq "$CLUSTER_BASE_PORT" $((CLUSTER_BASE_PORT + 5)); }

check_cluster_ports() {
    if [ "$CLUSTER_BASE_PORT" -lt 1024 ] || [ $((CLUSTER_BASE_PORT + 10005)) -ge 32768 ]; then
        echo "CLUSTER_BASE_PORT=$CLUSTER_BASE_PORT: the nodes (base..base+5) and their bus" \
            "ports (+10000) must lie within 1024-32767" >&2
        return 1
    fi
}

# True once every node says the cluster is ok, knows the five others and sees all 16384
# slots assigned, and three of them are replicas whose link to their master is up. The
# replies are matched from variables: `redis-cli | grep -q` can fail on SIGPIPE (pipefail).
cluster_ready() {
    local port info replicas=0
    for port in $(cluster_ports); do
        info=$(redis-cli -p "$port" cluster info 2>/dev/null) || return 1
        [[ $info == *cluster_state:ok* && $info == *cluster_slots_assigned:16384* ]] || return 1
        [[ $info == *cluster_known_nodes:6* ]] || return 1
        info=$(redis-cli -p "$port" info replication 2>/dev/null) || return 1
        if [[ $info == *role:slave* ]]; then
            [[ $info == *master_link_status:up* ]] || return 1
            replicas=$((replicas + 1))
        fi
    done
    [ "$replicas" = 3 ]
}

start_cluster() {
    check_cluster_ports || return 1
    cluster_ready && return 0
    local dir="$STATE_DIR/cluster" port
    # Whatever is left from an earlier run (nodes down, or up but not a sound cluster) goes:
    # a node restarted on its old nodes-PORT.conf would rejoin that run's cluster.
    stop_cluster
    rm -rf "$dir"
    mkdir -p "$dir"
    for port in $(cluster_ports); do
        # A node timeout of 1 s: a dead master's replica takes over within seconds. A master
        # syncs a new replica at once (not after the default 5 s wait for more of them);
        # the RDB file a replica receives is the node's own (the nodes share the dir). The
        # other masters keep serving while one is down (README: Redis Cluster).
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" \
            --cluster-node-timeout 1000 --repl-diskless-sync-delay 0 \
            --cluster-require-full-coverage no \
            --daemonize yes --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log" \
            --dir "$dir" --dbfilename "redis-$port.rdb"
    done
    local nodes=()
    for port in $(cluster_ports); do
        wait_port_state "$port" open 30
        nodes+=("127.0.0.1:$port")
    done
    if ! redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes \
        >"$dir/create.log" 2>&1; then
        cat "$dir/create.log" >&2
        return 1
    fi
    for _ in $(seq 300); do
        cluster_ready && return 0
        sleep 0.1
    done
    echo "the Redis Cluster did not come up (logs in $dir)" >&2
    return 1
}

stop_cluster() {
    local port
    for port in $(cluster_ports); do
        # NOW: a master does not wait for its replica to catch up; nothing is kept anyway.
        redis-cli -p "$port" shutdown nosave now >/dev/null 2>&1 || true
    done
    for port in $(cluster_ports); do
        wait_port_state "$port" closed 30
        wait_port_state $((port + 10000)) closed 30  # the bus: a restart binds it again
    done
}

# The settings that put the caching layer on that cluster (database 0, its only one). The
# Sentinel settings a previous pass exported go: they do not apply to a cluster.
export_cluster_env() {
    unset CACHE_REDIS_SENTINELS CACHE_REDIS_SERVICE CACHE_REDIS_DB
    export CACHE_REDIS_MODE=cluster
    CACHE_REDIS_NODES=$(for port in $(cluster_ports); do printf '127.0.0.1:%s,' "$port"; done)
    export CACHE_REDIS_NODES=${CACHE_REDIS_NODES%,}
}

# Every exported variable that chainlearn/settings.py reads, as `export NAME=value` lines in
# $STATE_DIR/service.env (only root can read it: it holds SECRET_KEY). .ci/serve writes it;
# .ci/manage loads it to run management commands with the running service's settings.
write_service_env() {
    local name
    (
        umask 077
        for name in $(compgen -e); do
            if grep -qE "(environ\.get|env_[a-z]+)\(\"$name\"" chainlearn/settings.py; then
                printf 'export %s=%q\n' "$name" "${!name}"
            fi
        done >"$STATE_DIR/service.env"
        # The workers' metric files: cache_stats counts what /metrics shows from them.
        if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
            printf 'export PROMETHEUS_MULTIPROC_DIR=%q\n' "$PROMETHEUS_MULTIPROC_DIR" \
                >>"$STATE_DIR/service.env"
        fi
    )
}

export_service_env() {
    export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/chainlearn"
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    export CELERY_BROKER_URL="redis://127.0.0.1:$REDIS_PORT/1"
    export REDIS_SERVER_BIN="$(command -v redis-server)"
}
