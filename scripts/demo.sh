#!/usr/bin/env bash
# The main job: the lab demo of the routing mesh. Run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/shoal lab demo "$@"
