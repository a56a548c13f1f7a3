#!/usr/bin/env bash
# The main job: set the machine up, build the seed's example image with Grocker, run it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-machine.sh
image=$(.venv/bin/grocker build ipython==8.18.1 --entrypoint ipython)
echo "built $image; running it:" >&2
docker run --rm "$image" --version
