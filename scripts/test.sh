#!/usr/bin/env bash
# Set everything up, then run the tests: the default suite, then the slow suites.
#   scripts/test.sh          everything (default suite, then @slow suites)
#   scripts/test.sh --fast   the default suite only
#   scripts/test.sh ARGS     extra pytest arguments go to both runs
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
fast=0
if [ "${1:-}" = "--fast" ]; then fast=1; shift; fi
echo "[test] lint and format (ruff)"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet . || { echo "[test] run .venv/bin/ruff format . to fix the files above"; exit 1; }
# pytest's temporary folders go under one folder of this run, removed when the tests pass (kept, and
# named, when they fail): nothing is left in /tmp (pytest's default keeps /tmp/pytest-of-<user>)
tmp=$(mktemp -d /tmp/uiface-t-XXXXXX)
echo "[test] default suite"
.venv/bin/python -m pytest -q -ra --basetemp="$tmp/d" "$@" || { echo "[test] the failed tests' folders are in $tmp"; exit 1; }
if [ "$fast" = 0 ]; then
  echo "[test] slow suites"
  set +e
  .venv/bin/python -m pytest -q -ra -m slow --basetemp="$tmp/s" "$@"
  rc=$?
  set -e
  # exit 5: no test carries the slow mark
  if [ "$rc" != 0 ] && [ "$rc" != 5 ]; then echo "[test] the failed tests' folders are in $tmp"; exit "$rc"; fi
fi
rm -rf "$tmp"
