#!/usr/bin/env bash
# The prepared GPU check (issue 25 item 4): one table, under 8 minutes on one GPU.
#   bash benchmarks/device_check.sh            # on a CUDA machine
#   bash benchmarks/device_check.sh --quick    # CPU, small sizes (tests/test_device_check.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD" RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}" RAY_USAGE_STATS_ENABLED=0
exec timeout 470 "$PY" benchmarks/device_check.py "$@"
