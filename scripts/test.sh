#!/usr/bin/env bash
# Quickstart, command two: set up everything (emulators included) and run every check.
# Extra arguments go to pytest (e.g. scripts/test.sh -k sqlite).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh all
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# -ra prints every skip with its reason; in CI (CI=true) a missing emulator fails instead.
# Three processes, a test file each at a time: most tests wait on leases, timers and local
# servers, so three share two cores well (each starts the servers its files need).
# Pass -n 0 to run in one process.
.venv/bin/pytest -ra -n 3 --dist loadfile "$@"
