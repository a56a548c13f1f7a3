#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, lint, types, docs, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-machine.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check grocker tests benchmarks
ruff format --check grocker tests benchmarks
mypy
sphinx-build -q -W --keep-going -n -b html docs docs/_build/html
pytest tests "$@"
