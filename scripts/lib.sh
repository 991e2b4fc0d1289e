# Shared settings for the scripts: ports, paths and helpers. Every port, and
# the directory that holds the cluster's data (MARQUEE_VAR), can be
# overridden from the environment; var/cluster.yaml tells the service which
# ones are in use.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="${MARQUEE_VAR:-$ROOT/var}"
CACHE="${MARQUEE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/marquee}"
VENV="$CACHE/venv"

CATALOG_PORT="${MARQUEE_CATALOG_PORT:-55432}"
SHARD_COUNT="${MARQUEE_SHARD_COUNT:-3}"
SHARD_PORT_BASE="${MARQUEE_SHARD_PORT_BASE:-55433}"
REPLICA_PORT_BASE="${MARQUEE_REPLICA_PORT_BASE:-55443}"
CATALOG_STANDBY_PORT="${MARQUEE_CATALOG_STANDBY_PORT:-$((REPLICA_PORT_BASE - 1))}"
# etcd and Patroni's REST APIs listen below 32768, outside Linux's range of
# ephemeral ports: they start after other connections are open, and one of
# those may hold a port in that range (the kernel picks a connection's
# local port from a hash of where it goes, so the same one again and again).
ETCD_PORT="${MARQUEE_ETCD_PORT:-22379}"
# Each PostgreSQL member's Patroni answers on its port minus this.
PATRONI_PORT_OFFSET="${MARQUEE_PATRONI_PORT_OFFSET:-30000}"
REDIS_PORT="${MARQUEE_REDIS_PORT:-56379}"
BROKER_PORT="${MARQUEE_BROKER_PORT:-59092}"
SMTP_PORT="${MARQUEE_SMTP_PORT:-52525}"
API_PORT="${MARQUEE_API_PORT:-8443}"
PG_USER=marquee
PG_DB=marquee

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

pg_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/postgres" ]; then
        pg_config --bindir
        return
    fi
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] && [ -x "$dir/postgres" ] || die "PostgreSQL server binaries not found; run scripts/bootstrap"
    echo "$dir"
}

# PostgreSQL refuses to run as root, so as root its tools run as `postgres`.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
    local port=$1 what=$2 tries=${3:-100}
    for _ in $(seq "$tries"); do
        port_open "$port" && return 0
        sleep 0.1
    done
    die "$what did not open port $port; see $VAR/log/"
}

# Every PostgreSQL node with the ports of its two members, one per line:
# the member that starts as primary, then the one that starts as replica.
# Patroni may swap them at any time; `scripts/cluster status` says which
# leads now.
pg_nodes() {
    echo "catalog $CATALOG_PORT $CATALOG_STANDBY_PORT"
    local i
    for ((i = 0; i < SHARD_COUNT; i++)); do
        echo "shard-$i $((SHARD_PORT_BASE + i)) $((REPLICA_PORT_BASE + i))"
    done
}

# A libpq connection string that reaches a node's current primary,
# whichever member that is: `psql "$(pg_conninfo shard-0)"`.
pg_conninfo() {
    local name first second
    read -r name first second < <(pg_nodes | awk -v n="$1" '$1 == n')
    [ -n "${name:-}" ] || die "unknown node $1"
    echo "host=127.0.0.1,127.0.0.1 port=$first,$second user=$PG_USER dbname=$PG_DB target_session_attrs=read-write connect_timeout=2"
}

# Drops a schema on every node's primary, for benchmarks that start empty.
drop_schema_everywhere() {
    local node
    while read -r node _ _; do
        "$(pg_bindir)/psql" -X -q "$(pg_conninfo "$node")" \
            -c "set client_min_messages = warning; drop schema if exists $1 cascade" \
            || die "could not drop $1 on $node"
    done < <(pg_nodes)
}

# The port of a node's current primary.
primary_port() {
    "$(pg_bindir)/psql" -X -q -t -A "$(pg_conninfo "$1")" -c "select inet_server_port()"
}
