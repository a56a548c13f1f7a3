"""What the ABI gate and the SBOM add to a build: the same build, run again and again, with and without them.

    .venv/bin/python benchmarks/overhead.py                      # ipython==8.18.1, 3 runs each way
    .venv/bin/python benchmarks/overhead.py --checkout nogate=/tmp/nogate

Each run is `grocker -v build APP --no-push -n NEW-NAME` of a release whose wheels are in the
volume and whose layers are cached (the first, unmeasured run makes sure of it), so the build is the
gate, the wheel server, a cached runner build and, with --sbom, the SBOM. The runs of every
variant are interleaved (a, b, a, b...) so that a change in the machine's load touches them
all alike. A checkout given with --checkout NAME=DIR runs Grocker from DIR (its `grocker`
package first on PYTHONPATH): a copy with the gate's call removed measures the build without
the gate. Prints the median of each phase and of the whole run per variant, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

# `check wheels against the runtime: 0.8s (16 wheels, 1 ELF files)`, `done NAME in 9.1s, 231 MB`
_PHASE_RE = re.compile(r"(?P<phase>[a-z][\w -]*?)(?: (?P<subject>\S+))?: (?P<seconds>[0-9.]+)s(?: .*)?")
_DONE_RE = re.compile(r"done \S+ in (?P<seconds>[0-9.]+)s.*")
PHASES = ("compile wheels", "check wheels", "start wheel", "build image", "write SBOM")


def run_once(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """One build; its phases' seconds as Grocker prints them, and the wall time of the whole command."""
    start = time.monotonic()
    # Run from elsewhere: `python -m` puts the working folder first on sys.path, before PYTHONPATH.
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=tempfile.gettempdir())
    wall = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures = {"wall": wall}
    for line in done.stderr.splitlines():
        if line.startswith("  "):  # engine output at -v
            continue
        finished = _DONE_RE.fullmatch(line.strip())
        if finished:
            figures["grocker"] = float(finished["seconds"])
            continue
        matched = _PHASE_RE.fullmatch(line.strip())
        if matched:
            key = next((phase for phase in PHASES if matched["phase"].startswith(phase)), None)
            if key:
                figures[key] = float(matched["seconds"])
    return figures


def run_retrying(command: list[str], env: dict[str, str], attempts: int = 3) -> dict[str, float]:
    """run_once, again when it fails: on a shared engine, another session's clean-up may remove
    an internal image or the wheel volume under a build (the next run makes them again)."""
    for attempt in range(attempts):
        try:
            return run_once(command, env)
        except RuntimeError as err:
            if attempt == attempts - 1:
                sys.exit(str(err))
            print(f"a run failed, running it again: {str(err).splitlines()[-1]}", file=sys.stderr)
    raise AssertionError("unreachable")


def main() -> None:
    """Run the variants, print the medians, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--app", default="ipython==8.18.1")
    parser.add_argument("--entrypoint", default="ipython")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--checkout", action="append", default=[], help="NAME=DIR: also run Grocker from DIR")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/overhead.json"))
    args = parser.parse_args()
    checkouts = {"this": ""} | dict(item.split("=", 1) for item in args.checkout)
    work = Path(tempfile.mkdtemp(prefix="grocker-overhead-"))
    variants = {}
    for name, folder in checkouts.items():
        for sbom in (False, True):
            label = f"{name}{' --sbom' if sbom else ''}"
            command = [sys.executable, "-m", "grocker", "-v", "build", args.app, "-e", args.entrypoint, "--no-push"]
            if sbom:
                command += ["--sbom", str(work / f"{len(variants)}.json")]
            env = dict(os.environ)
            if folder:
                env["PYTHONPATH"] = os.pathsep.join([folder, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
            variants[label] = (command, env)
    # A new image name for every run: a build whose image is up to date would skip the gate.
    names: list[str] = []

    def named(command: list[str]) -> list[str]:
        names.append(f"grocker-overhead-{os.getpid()}:{len(names)}")
        return [*command, "-n", names[-1]]

    try:
        for command, env in variants.values():  # warm-up: wheels, images and layers in place
            run_retrying(named(command), env)
        samples: dict[str, list[dict[str, float]]] = {label: [] for label in variants}
        for _ in range(args.runs):
            for label, (command, env) in variants.items():
                samples[label].append(run_retrying(named(command), env))
    finally:
        client = docker.from_env()
        for name in names:  # the names only: the layers are the engine's cache
            with contextlib.suppress(docker.errors.DockerException):
                client.images.remove(name)
    medians = {
        label: {key: statistics.median(run.get(key, 0.0) for run in runs) for key in ("wall", "grocker", *PHASES)}
        for label, runs in samples.items()
    }
    keys = ("wall", "grocker", *PHASES)
    print(f"{'variant':<20}" + "".join(f"{key:>16}" for key in keys))
    for label, figures in medians.items():
        print(f"{label:<20}" + "".join(f"{figures[key]:>16.2f}" for key in keys))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"medians": medians, "samples": samples}, indent=2, sort_keys=True) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
