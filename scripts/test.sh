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
# Coverage of the chain's decision code by the unit tests (printed; fails under 85 %).
coverage run -m pytest tests/unit -q -p no:cacheprovider
coverage report
sphinx-build -q -W --keep-going -n -b html docs docs/_build/html
# An engine that cannot start fails the run here, with its log.
[ -z "$engines_pid" ] || wait "$engines_pid"
# The extra engines' core scenarios (marker `matrix`) run beside the whole suite on the default
# engine, one pytest per engine: they share no engine, so they run concurrently.
pids=()
for name in "${extra[@]}"; do
    GROCKER_TEST_ENGINES=$name pytest tests/integration -m matrix -p no:cacheprovider --durations=8 "$@" \
        >"/tmp/grocker-matrix-$name.log" 2>&1 &
    pids+=($!)
done
status=0
if [[ " ${listed[*]} " == *" docker-20.10 "* ]]; then
    # The unit tests ran above, under coverage.
    GROCKER_TEST_ENGINES=docker-20.10 pytest tests/integration --durations=25 "$@" || status=1
else
    pytest tests/integration -m "not matrix" "$@" || status=1
fi
for index in "${!pids[@]}"; do
    name=${extra[$index]}
    if wait "${pids[$index]}"; then
        echo "== core scenarios on $name: passed ($(tail -n 1 "/tmp/grocker-matrix-$name.log"))"
        sed -n "/slowest/,/^$/p" "/tmp/grocker-matrix-$name.log"
    else
        echo "== core scenarios on $name: FAILED"
        cat "/tmp/grocker-matrix-$name.log"
        status=1
    fi
done
exit $status
