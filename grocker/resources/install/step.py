"""A runner layer without a shell (the minimal runner's): `step SPEC`, SPEC a JSON object.

Runs the shell line's programs (fetch, install, settle: their texts are in SPEC) in the same order
with the same environment, as subprocesses of this Python, each failure ending the step with
the program's status. SPEC holds the paths (temp, marker, home, venv), the wheel server's host,
the fetch's arguments, the epoch ("" for the wheels' newest time) and the install command.

Runs with the runtime's Python in the runner's build (`python -c`, see grocker/render.py):
standard library only, Python 3.7's syntax, typing only in annotations (never evaluated).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def step(spec: dict[str, Any], env: dict[str, str]) -> None:
    """Run the layer `spec` describes with the environment `env` (changed in place)."""
    for name in ("no_proxy", "NO_PROXY"):
        env[name] = ",".join(part for part in (spec["host"], env.get(name, "")) if part)
    os.mkdir(spec["temp"])
    open(spec["marker"], "w").close()
    env["TMPDIR"] = spec["temp"]

    def run(*command: str, capture: bool = False) -> str:
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE if capture else None, text=True)
        if done.returncode:
            sys.exit(done.returncode)
        return done.stdout or ""

    newest = run(sys.executable, "-c", spec["fetch"], *spec["files"], capture=True)
    env["SOURCE_DATE_EPOCH"] = spec["epoch"] or newest.strip()
    if spec["venv"]:
        run(sys.executable, "-m", "venv", "--without-pip", spec["venv"])
    if spec["install"]:
        run(*spec["install"])
    run(sys.executable, "-c", spec["settle"], spec["home"], env["SOURCE_DATE_EPOCH"], spec["marker"])


def main(argv: list[str]) -> int:
    """Run the layer whose SPEC is argv[1]."""
    step(json.loads(argv[1]), dict(os.environ))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
