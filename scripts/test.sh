#!/usr/bin/env bash
# The whole test suite: lint, types, unit, simulation and lab integration tests.
# Run as root on Debian: installs what it needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check shoal tests bench
echo "== mypy"
.venv/bin/mypy shoal
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" tests
