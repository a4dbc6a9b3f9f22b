#!/usr/bin/env bash
# Run the whole pytest suite twice: on SQLite, then on PostgreSQL.
#
# Called by `make test` inside `scripts/services.sh run --`, which exports REDIS_URL and
# PG_DATABASE_URL. tests/settings.py uses PostgreSQL when DATABASE_URL is set, SQLite otherwise.
# Both runs always execute (so one report shows both); the exit code is non-zero when either
# failed. pytest's exit code 5 ("no tests collected") counts as a failure.
# Extra pytest arguments: PYTEST_ARGS="-x -k foo" make test
set -uo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON_BIN:-.venv/bin/python}"
read -r -a extra <<<"${PYTEST_ARGS:-}"

run_suite() {
    local label="$1"; shift
    local start rc
    start=$(date +%s)
    echo
    echo "==================== pytest on $label ===================="
    "$@" "$PY" -m pytest --junitxml="$REPORTS/$label.xml" "${extra[@]}"
    rc=$?
    echo "==================== $label: exit $rc in $(( $(date +%s) - start ))s ===================="
    if [ "$rc" -eq 5 ]; then
        echo "$label: pytest collected no tests; counting that as a failure" >&2
        rc=1
    fi
    return "$rc"
}

REPORTS="$(mktemp -d /tmp/shop_recs_reports.XXXXXX)"
trap 'rm -rf "$REPORTS"' EXIT

# One closing line over both runs, "total: N passed, N failed, N skipped", from the JUnit files.
print_total() {
    "$PY" - "$REPORTS"/*.xml <<'PYEOF' || true
import sys
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        continue
    for suite in root.iter("testsuite"):
        tests, skip = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        passed += tests - skip - bad
        failed += bad
        skipped += skip
print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
PYEOF
}

# Ctrl-C / SIGTERM: bash runs the trap once the current pytest returns; then stop, skip the rest.
interrupted=0
trap 'interrupted=1' INT TERM
stop_if_interrupted() {
    if [ "$interrupted" = 1 ]; then
        echo "interrupted; not running the remaining suite" >&2
        exit 130
    fi
}

# Supply chain: known vulnerabilities in the installed dependencies (pip-audit, which asks
# PyPI's advisory data), and bandit over our code (config and every accepted finding's reason:
# [tool.bandit] in pyproject.toml). Either failing fails the run.
# pip-audit exits 0 when it cannot look a package up (offline, or a version PyPI does not
# list): it says so, and SHOP_RECS_AUDIT_STRICT=1 turns that into a failure (--strict).
# torch stays ==2.13.0 (the trained checkpoints and the GPU workers pin it): should an advisory
# ever be reported for it, add `--ignore-vuln <ID>` here with the reason, never a wider range.
supply_chain() {
    local rc=0 audit_args=(--progress-spinner off --skip-editable)
    [ "${SHOP_RECS_AUDIT_STRICT:-0}" = 1 ] && audit_args+=(--strict)
    echo
    echo "==================== pip-audit (installed dependencies) ===================="
    local out skipped
    out=$("$PY" -m pip_audit "${audit_args[@]}" 2>&1) || rc=1
    printf '%s\n' "$out" | grep -v "could not be audited" || true
    skipped=$(printf '%s\n' "$out" | grep -c "could not be audited" || true)
    if [ "$skipped" -gt 0 ]; then
        echo "WARNING: pip-audit could not look up $skipped installed package(s) (listed with"
        echo "         --desc; no route to PyPI, or versions it does not list): they are unaudited."
    fi
    echo "==================== bandit (shop_recs, shop_demo) ===================="
    "$PY" -m bandit -r shop_recs shop_demo -c pyproject.toml -q || rc=1
    echo "==================== supply chain: exit $rc ===================="
    return "$rc"
}

rc_supply=0
supply_chain || rc_supply=$?
stop_if_interrupted

rc_sqlite=0
rc_pg=0
run_suite SQLite env -u DATABASE_URL || rc_sqlite=$?
stop_if_interrupted

if [ -n "${PG_DATABASE_URL:-}" ]; then
    run_suite PostgreSQL env DATABASE_URL="$PG_DATABASE_URL" || rc_pg=$?
else
    echo "PG_DATABASE_URL is not set (run through scripts/services.sh run --); PostgreSQL run missing" >&2
    rc_pg=1
fi

echo
echo "summary: supply chain exit $rc_supply, SQLite exit $rc_sqlite, PostgreSQL exit $rc_pg"
print_total
[ "$rc_supply" -eq 0 ] && [ "$rc_sqlite" -eq 0 ] && [ "$rc_pg" -eq 0 ]
