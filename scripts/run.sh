#!/usr/bin/env bash
# Set everything up, then run the whole pipeline at small scale on an embedded local Ray:
# faces -> embeddings -> generator -> identities -> synthesis -> export -> report.
#   scripts/run.sh [--config configs/pipeline.yaml] [--section.key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled} RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
if [ "$#" = 0 ]; then set -- --config configs/pipeline.yaml; fi
exec .venv/bin/python jobs/pipeline.py "$@"
