#!/usr/bin/env bash
# Create .venv (Python 3.11) when missing and install requirements.txt into it.
#
# pip is skipped when requirements.txt has not changed since the last successful install
# (a sha256 stamp in .venv/); delete .venv/.requirements.sha256 to force it.
# PYTHON=/path/to/python3.11 overrides the interpreter used to create the venv.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
VENV=.venv
STAMP="$VENV/.requirements.sha256"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    command -v "$PYTHON" >/dev/null 2>&1 || { log "error: $PYTHON not found"; exit 1; }
    log "creating $VENV with $($PYTHON --version 2>&1)"
    if ! "$PYTHON" -m venv "$VENV" 2>/tmp/shop_recs_venv.err; then
        # Debian's own python3.11 needs python3.11-venv for ensurepip.
        cat /tmp/shop_recs_venv.err >&2
        rm -rf "$VENV"
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            log "installing python3.11-venv"
            { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3.11-venv; } </dev/null
            "$PYTHON" -m venv "$VENV"
        else
            log "error: '$PYTHON -m venv' failed"; exit 1
        fi
    fi
fi

want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    log "requirements.txt unchanged since last install; skipping pip"
    exit 0
fi
log "pip install -r requirements.txt"
# This machine's pip config names local index folders that may not all exist; pip warns once
# per package about each. Drop only those lines (the pipeline keeps pip's exit status).
"$VENV/bin/python" -m pip install -q -r requirements.txt </dev/null 2>&1 |
    { grep -v 'is ignored: it is neither a file nor a directory' || true; }
echo "$want" >"$STAMP"
log "done"
