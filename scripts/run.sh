#!/usr/bin/env bash
# Set everything up, then run the whole pipeline at small scale on an embedded local Ray:
# faces -> embeddings -> generator -> identities -> synthesis -> export -> report.
#   scripts/run.sh [--config FILE.yaml] [--section.key=value ...]   (default config: configs/pipeline.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled} RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
case " $* " in
  *" --config "*|*" --config="*) ;;
  *) set -- --config configs/pipeline.yaml "$@" ;;
esac
exec .venv/bin/python jobs/pipeline.py "$@"
