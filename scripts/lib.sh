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

# The name, role and port of every PostgreSQL server, one per line.
pg_servers() {
    echo "catalog catalog $CATALOG_PORT"
    local i
    for ((i = 0; i < SHARD_COUNT; i++)); do
        echo "shard-$i primary $((SHARD_PORT_BASE + i))"
        echo "shard-$i replica $((REPLICA_PORT_BASE + i))"
    done
}
