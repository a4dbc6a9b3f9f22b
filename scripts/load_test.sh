#!/usr/bin/env bash
# Load test of the demo under gunicorn with a real Redis cache and PostgreSQL (docs/load.md).
#
#   scripts/load_test.sh [ARGS...]     ARGS go to benchmarks/load.py, e.g.
#                                      --products 2000 --duration 10 --connections 1,4,16,32
#
# Installs wrk (apt-get) and gunicorn (pip, into .venv) when missing, then runs
# benchmarks/load.py under `nice` inside scripts/services.sh, which starts private Redis and
# PostgreSQL instances on loopback and removes them afterwards. Bounded: about
# 2 x (number of connection levels) x duration seconds of load, plus set-up.
# SHOP_RECS_SKIP_APT=1: never call apt-get (fail when wrk is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON_BIN:-.venv/bin/python}"

log() { printf '[load] %s\n' "$*" >&2; }

if ! command -v wrk >/dev/null 2>&1; then
    [ "${SHOP_RECS_SKIP_APT:-0}" = 1 ] && { log "wrk is missing and SHOP_RECS_SKIP_APT=1"; exit 1; }
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { log "wrk is missing; run as root or install it"; exit 1; }
        sudo=(sudo)
    fi
    log "installing wrk (apt-get)"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk \
        </dev/null || {
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            wrk </dev/null
    }
fi
if ! "$PY" -c "import gunicorn" >/dev/null 2>&1; then
    log "installing gunicorn (pip, requirements.txt)"
    "$PY" -m pip install -q "$(grep -E '^gunicorn' requirements.txt)"
fi
# services.sh's own install step (redis-server, postgresql), then the run itself.
SHOP_RECS_APT_PACKAGES="redis-server postgresql" bash scripts/services.sh install
exec bash scripts/services.sh run -- nice -n 10 "$PY" -m benchmarks.load "$@"
