#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, lint, types, docs, unit and integration tests.
# The core scenarios also run on each engine GROCKER_TEST_ENGINES lists (default: the whole
# matrix); scripts/start-engines.sh starts the extra ones while lint, types and docs run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-machine.sh
export PATH="$PWD/.venv/bin:$PATH"
export GROCKER_TEST_ENGINES=${GROCKER_TEST_ENGINES:-docker-20.10,docker-26,docker-26-containerd,podman-5}
extra=()
IFS=, read -r -a listed <<<"$GROCKER_TEST_ENGINES"
for name in "${listed[@]}"; do
    [ "$name" = docker-20.10 ] || extra+=("$name")
done
engines_pid=
if [ ${#extra[@]} -gt 0 ]; then
    bash scripts/start-engines.sh "${extra[@]}" &
    engines_pid=$!
fi
ruff check grocker tests benchmarks
ruff format --check grocker tests benchmarks
mypy
sphinx-build -q -W --keep-going -n -b html docs docs/_build/html
# An engine that cannot start fails the run here, with its log.
[ -z "$engines_pid" ] || wait "$engines_pid"
pytest tests "$@"
