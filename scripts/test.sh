#!/usr/bin/env bash
# Install clusternet with its test extras into the active Python environment (a
# venv is made in .venv when none is active) and run the whole test suite, then
# lint and type checks. Exit status is non-zero on any failure or when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi

python -m pip install --quiet --upgrade pip
# A real (not editable) install: twist finds plugins only in installed packages.
python -m pip install --quiet ".[dev,speedups]"

# Subprocess tests run the installed twist/clusternet commands.
status=0
python -m pytest -p no:cacheprovider "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "no tests were collected: failing" >&2
    exit 1
fi
[ "$status" -eq 0 ] || exit "$status"

ruff check .
ruff format --check .
mypy
