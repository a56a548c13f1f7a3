#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, lint, types, docs, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-machine.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check grocker tests benchmarks
ruff format --check grocker tests benchmarks
mypy
# Coverage of the chain's decision code by the unit tests (printed; fails under 85 %).
coverage run -m pytest tests/unit -q -p no:cacheprovider
coverage report
sphinx-build -q -W --keep-going -n -b html docs docs/_build/html
pytest tests "$@"
