#!/usr/bin/env bash
# Quickstart, command one: set up and run the demo shop on the embedded local provider.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m examples.shop.demo
