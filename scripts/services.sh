#!/usr/bin/env bash
# Private, throw-away Redis and PostgreSQL instances for one test run.
#
#   scripts/services.sh install          apt-get install what is missing (redis-server,
#                                        postgresql, chromium); no-op when all are present
#   scripts/services.sh run -- CMD ...   start Redis + PostgreSQL on free loopback ports in a
#                                        temp dir, export REDIS_URL and PG_DATABASE_URL (and
#                                        SHOP_RECS_PG_BIN/_DATA/_LOG), run CMD,
#                                        stop both (also on failure or Ctrl-C); exits with CMD's code
#
# Nothing touches the system's own clusters or services: each run initdb's a fresh cluster
# (owned by the `postgres` OS user when run as root, because postgres refuses to run as root)
# with trust auth on loopback only, and a daemonized redis-server with persistence off.
# PG_DATABASE_URL (not DATABASE_URL) is exported so that the caller chooses which pytest run
# uses PostgreSQL; scripts/run_tests.sh sets DATABASE_URL from it for the second run.
#
# Environment knobs: SHOP_RECS_APT_PACKAGES (space separated, default below),
# SHOP_RECS_SKIP_APT=1 (never call apt-get), SHOP_RECS_PG_DB (default shop_recs).
set -euo pipefail

APT_PACKAGES="${SHOP_RECS_APT_PACKAGES:-redis-server postgresql chromium}"
PG_DB="${SHOP_RECS_PG_DB:-shop_recs}"

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- install ---------------------------------------------------------------------------------

pkg_present() {
    # A package counts as present when its main program is on this machine, whoever installed it.
    case "$1" in
        redis-server) command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 ;;
        postgresql) pg_bindir >/dev/null 2>&1 ;;
        chromium) command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ;;
        *) dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' ;;
    esac
}

cmd_install() {
    local missing=() pkg
    for pkg in $APT_PACKAGES; do
        pkg_present "$pkg" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "system packages present: $APT_PACKAGES"
        return 0
    fi
    [ "${SHOP_RECS_SKIP_APT:-0}" = 1 ] && die "missing ${missing[*]} and SHOP_RECS_SKIP_APT=1"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "missing ${missing[*]}; run as root or install them"
        sudo=(sudo)
    fi
    log "installing ${missing[*]} (apt-get)"
    # Keep the packages' own services from starting (the default cluster on :5432, redis on
    # :6379): this script runs private instances. Only add the policy file when none exists.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        added_policy=1
    fi
    local rc=0
    {
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}"
    } </dev/null || rc=$?
    if [ "$added_policy" = 1 ]; then "${sudo[@]}" rm -f "$policy"; fi
    [ "$rc" -eq 0 ] || die "apt-get failed ($rc)"
    for pkg in "${missing[@]}"; do
        pkg_present "$pkg" || die "$pkg still missing after apt-get install"
    done
}

# --- helpers ---------------------------------------------------------------------------------

pg_bindir() {
    local d
    if command -v pg_config >/dev/null 2>&1; then
        d="$(pg_config --bindir 2>/dev/null || true)"
        [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    fi
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    d="$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
    return 1
}

free_port() {
    local py
    py="$(command -v python3 || command -v python)"
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

as_pg() {
    # Run a PostgreSQL program as the cluster owner.
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# --- start / stop ----------------------------------------------------------------------------

SERVICES_DIR=""
REDIS_PORT=""
PG_PORT=""
PG_BIN=""
PG_DATA=""
STOPPED=0

start_redis() {
    command -v redis-server >/dev/null 2>&1 || die "redis-server not found (run: scripts/services.sh install)"
    REDIS_PORT="$(free_port)"
    local dir="$SERVICES_DIR/redis"
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
        --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        --save '' --appendonly no --protected-mode yes >/dev/null
    local i
    for i in $(seq 1 100); do
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
        [ "$i" -eq 100 ] && { cat "$dir/redis.log" >&2 || true; die "redis did not answer on :$REDIS_PORT"; }
        sleep 0.1
    done
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    log "redis-server up: $REDIS_URL"
}

start_postgres() {
    PG_BIN="$(pg_bindir)" || die "PostgreSQL binaries not found (run: scripts/services.sh install)"
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
    PG_PORT="$(free_port)"
    PG_DATA="$SERVICES_DIR/pgdata"
    mkdir -p "$PG_DATA"
    touch "$SERVICES_DIR/pg.log"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$PG_DATA" "$SERVICES_DIR/pg.log"
    fi
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=trust >"$SERVICES_DIR/initdb.log" 2>&1 ||
        { cat "$SERVICES_DIR/initdb.log" >&2; die "initdb failed"; }
    # Loopback only; durability off because the cluster is thrown away after the run.
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$SERVICES_DIR/pg.log" -w -t 60 start -o \
        "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PG_DATA \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100" \
        >/dev/null || { cat "$SERVICES_DIR/pg.log" >&2; die "postgres did not start"; }
    as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$PG_DB" ||
        die "createdb $PG_DB failed"
    export PG_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"
    # For tests/test_resilience.py, which restarts this cluster under a running test:
    # pg_ctl's folder, the data dir (pg_ctl -D; owned by `postgres` when run as root)
    # and the server log file.
    export SHOP_RECS_PG_BIN="$PG_BIN" SHOP_RECS_PG_DATA="$PG_DATA"
    export SHOP_RECS_PG_LOG="$SERVICES_DIR/pg.log"
    log "postgres up: $PG_DATABASE_URL"
}

stop_all() {
    [ "$STOPPED" = 1 ] && return 0
    STOPPED=1
    if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
            log "warning: pg_ctl stop failed"
    fi
    if [ -n "$REDIS_PORT" ] && [ -f "$SERVICES_DIR/redis/redis.pid" ]; then
        local pid
        pid="$(cat "$SERVICES_DIR/redis/redis.pid" 2>/dev/null || true)"
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 ||
            { [ -n "$pid" ] && kill "$pid" 2>/dev/null; } || true
    fi
    if [ -n "$SERVICES_DIR" ] && [ -d "$SERVICES_DIR" ] && [ "${SHOP_RECS_KEEP_SERVICES_DIR:-0}" != 1 ]; then
        rm -rf "$SERVICES_DIR"
    fi
}

cmd_run() {
    [ "${1:-}" = "--" ] && shift
    [ "$#" -gt 0 ] || die "usage: scripts/services.sh run -- CMD [ARGS...]"
    SERVICES_DIR="$(mktemp -d /tmp/shop_recs_services.XXXXXX)"
    chmod 755 "$SERVICES_DIR"
    trap stop_all EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    start_redis
    start_postgres
    local rc=0
    "$@" || rc=$?
    stop_all
    return "$rc"
}

case "${1:-}" in
    install) shift; cmd_install "$@" ;;
    run) shift; cmd_run "$@" ;;
    *) echo "usage: $0 install | run -- CMD [ARGS...]" >&2; exit 2 ;;
esac
