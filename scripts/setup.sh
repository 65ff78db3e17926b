#!/usr/bin/env bash
# Prepare a checkout: a .venv with Switchboard installed editable.
#   scripts/setup.sh          core only (enough for the demo)
#   scripts/setup.sh all      every extra, dev tools, and the local servers the tests start
set -euo pipefail
cd "$(dirname "$0")/.."

python=""
for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        python="$candidate"
        break
    fi
done
if [ -z "$python" ]; then
    echo "error: Switchboard needs Python 3.11 or newer on PATH" >&2
    exit 2
fi

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
fi

# mypy cannot see setuptools' default editable install; strict mode links every file.
if [ "${1:-}" = "all" ]; then
    .venv/bin/python -m pip install -q -e ".[all,dev]" --config-settings editable_mode=strict
    # Azurite (Azure Tables) comes pinned from package-lock.json.
    if [ -f package-lock.json ] && [ ! -x node_modules/.bin/azurite ]; then
        npm ci --no-audit --no-fund --silent
    fi
    # redis-server serves the third-party provider example's tests.
    if [ -d examples/redis_provider ]; then
        if ! command -v redis-server >/dev/null 2>&1; then
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
                apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
            else
                echo "warning: redis-server is missing: install the Debian package redis-server" >&2
            fi
        fi
        .venv/bin/python -m pip install -q -e ./examples/redis_provider
    fi
else
    .venv/bin/python -m pip install -q -e . --config-settings editable_mode=strict
fi
