"""Grocker against two hand-written Dockerfiles, measured side by side in one run.

For one application (default ipython, bumped from 8.18.0 to 8.18.1) on trixie/3.13, each method
gets: a cold build of the previous version (nothing cached), a version bump (the previous version
cached), a no-op rebuild of the bumped version, the final image's size, and the bytes a push of
the bumped image adds to a registry that already holds the previous one. It prints each figure
and the ratio Grocker / multi-stage, and writes them as JSON.

    python benchmarks/run.py [--app ipython==8.18.1] [--previous ipython==8.18.0] [--json FILE]

With `fleet` in --methods it also runs the fleet scenario (benchmarks/fleet.py: fresh private
engines sharing one registry), whose figures and verdicts go under `fleet` in the JSON.

It runs on the engine DOCKER_HOST names (the local one by default) and needs the base image
debian:trixie there; it starts its own registries on loopback (Debian's docker-registry).
It removes the images it builds and Grocker's wheel volume of the configuration it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from grocker import api, naming  # noqa: E402 - the benchmark runs from a checkout
from grocker.config.pipconf import load_pip_settings  # noqa: E402

METHODS = ("grocker", "naive", "multistage", "grocker-minimal")
TARGETS = {
    "size": ("<=", 1.00, "image size, Grocker / multi-stage"),
    "bump": ("<=", 0.30, "version bump time, Grocker / multi-stage"),
    "push_bump": ("<=", 0.20, "bytes pushed on a bump, Grocker / multi-stage"),
    "cold": ("<=", 2.00, "cold build time, Grocker / multi-stage"),
}

MINIMAL_TARGETS = {
    "size_bytes": (0.33, "image size, Grocker minimal / multi-stage"),
    "bump_seconds": (0.30, "version bump time, Grocker minimal / multi-stage"),
    "push_bump_bytes": (0.15, "bytes pushed on a bump, Grocker minimal / multi-stage"),
}
"""`runner: minimal` (grocker-minimal), against the same multi-stage Dockerfile."""
MINIMAL_MAX_BYTES = 110_000_000
"""The minimal runner's own size target for the default application (ipython==8.18.1)."""

NOOP_TARGET = 0.02
"""A no-op rebuild, over Grocker's own cold build: an up-to-date image starts no container."""


@dataclass
class Figures:
    """What one method measured."""

    cold_seconds: float = 0.0
    bump_seconds: float = 0.0
    noop_seconds: float = 0.0
    size_bytes: int = 0
    push_bump_bytes: int = 0
    notes: list[str] = field(default_factory=list)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="ipython==8.18.1", help="the bumped release (NAME==VERSION)")
    parser.add_argument("--previous", default="ipython==8.18.0", help="the release before it")
    parser.add_argument("--entrypoint", default="ipython", help="a command the application installs")
    parser.add_argument("--runtime", default="trixie/3.13")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "latest.json")
    parser.add_argument(
        "--registry",
        metavar="HOST:PORT",
        help="push to this registry (as the engine names it, e.g. localhost:5000 for an engine in a "
        "container) and count the bytes from its manifests, instead of starting a fresh registry on loopback",
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join((*METHODS, "fleet"))
    )
    args = parser.parse_args()

    client = docker.from_env(timeout=900)
    run_id = uuid.uuid4().hex[:8]
    results: dict[str, Figures] = {}
    fleet_report: dict[str, object] | None = None
    with _context_dir() as context:
        for method in args.methods.split(","):
            if method == "fleet":
                import fleet  # it imports this module: only when asked for

                scenario = fleet.Scenario(args.app, args.previous, args.entrypoint, args.runtime)
                fleet_report = fleet.measure(scenario, context, run_id)
                continue
            print(f"== {method}", file=sys.stderr)
            measure = {
                "grocker": _grocker,
                "naive": _dockerfile,
                "multistage": _dockerfile,
                "grocker-minimal": _grocker,
            }[method]
            results[method] = measure(client, method, args, context, run_id)
            print(f"   {asdict(results[method])}", file=sys.stderr)
    report = _report(results, args)
    if fleet_report is not None:
        report["fleet"] = fleet_report
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"JSON written to {args.json}", file=sys.stderr)
    return 0


def _grocker(client: docker.DockerClient, method: str, args: argparse.Namespace, context: Path, run_id: str) -> Figures:
    figures = Figures()
    runner = "minimal" if method == "grocker-minimal" else "full"
    config = api.load_config(cwd=context, overrides={"runtime": args.runtime, "runner": runner})
    # The builds read the pip settings of this environment: their wheel volume is those settings'.
    names = naming.internal_names(config, load_pip_settings(None, os.environ, Path.home()))
    repository = f"bench-{method}-{run_id}"

    def build(release: str, tag: str, *extra: str) -> tuple[float, str]:
        arguments = [release, "-e", args.entrypoint, "-r", args.runtime, "-n", f"{repository}:{tag}", "--no-push"]
        return timed_build([*arguments, "--runner", runner, *extra], context)

    # Cold: no wheel or candidates volume, no internal images, no layer cache.
    for name in (names.minimal, names.wheel_server, names.compiler, names.root):
        _remove_image(client, name)
    for volume in (names.volume, names.candidates):  # a candidates volume left would feed pip's resolve
        _remove_volume(client, volume)
    figures.cold_seconds, summary = build(args.previous, "previous", "--no-cache")
    figures.notes.append(f"cold: {summary}")
    figures.bump_seconds, summary = build(args.app, "bumped")
    figures.notes.append(f"bump: {summary}")
    figures.noop_seconds, summary = build(args.app, "bumped")
    figures.notes.append(f"no-op: {summary}")
    return _measure_image(client, repository, args.entrypoint, figures, args.registry)


def _dockerfile(
    client: docker.DockerClient, method: str, args: argparse.Namespace, context: Path, run_id: str
) -> Figures:
    figures = Figures()
    repository = f"bench-{method}-{run_id}"
    shutil.copy(HERE / "dockerfiles" / method / "Dockerfile", context / f"{method}.Dockerfile")
    # Every image a step made: the classic builder leaves a builder stage's images untagged, and
    # removing the final image does not remove them.
    steps: list[str] = []

    def build(release: str, tag: str, nocache: bool = False) -> float:
        _settle()
        started = time.monotonic()
        stream = client.api.build(
            path=str(context),
            dockerfile=f"{method}.Dockerfile",
            tag=f"{repository}:{tag}",
            buildargs={"APP": release},
            nocache=nocache,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                raise SystemExit(f"{method} build of {release} failed: {chunk['error']}")
            steps.extend(_STEP_ID_RE.findall(chunk.get("stream", "")))
        return time.monotonic() - started

    figures.cold_seconds = build(args.previous, "previous", nocache=True)
    figures.bump_seconds = build(args.app, "bumped")
    figures.noop_seconds = build(args.app, "bumped")
    measured = _measure_image(client, repository, args.entrypoint, figures, args.registry)
    for image_id in reversed(steps):  # children first
        with suppress(docker.errors.ImageNotFound, docker.errors.APIError):
            if not client.images.get(image_id).tags:
                client.images.remove(image_id)
    return measured


_STEP_ID_RE = re.compile(r"^ ---> ([0-9a-f]{12})$", re.MULTILINE)


def timed_build(arguments: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, str]:
    """`grocker build ARGUMENTS` timed after the page cache is written out: seconds and its phase lines."""
    _settle()
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "grocker", "build", *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    if completed.returncode != 0:
        raise SystemExit(f"grocker build {arguments[0]} failed:\n{completed.stderr}")
    # Grocker's own phase lines: where the time went.
    phases = [line for line in completed.stderr.splitlines() if not line.startswith("warning:")]
    return seconds, " | ".join(phases)


def _settle() -> None:
    """Write out what earlier steps left in the page cache, before a timed build starts.

    Each step's layer is written to the same disk: right after the naive method's push (a 944 MB
    image, then its removal) the multi-stage's cold build measured 58 s, against 35 s by hand
    with `docker build`, its first layer's commit alone taking about 8 s. Every timed build, of
    every method, starts with no earlier writes pending (docs/benchmarks.rst).
    """
    os.sync()


def _measure_image(
    client: docker.DockerClient, repository: str, entrypoint: str, figures: Figures, registry: str | None
) -> Figures:
    """Size and bytes pushed on the bump, a check that the image runs, then clean up."""
    figures.size_bytes = client.images.get(f"{repository}:bumped").attrs["Size"]
    figures.push_bump_bytes = _push_bytes(client, repository, registry)
    _check(client, f"{repository}:bumped", [entrypoint, "--version"])
    for tag in ("previous", "bumped"):
        _remove_image(client, f"{repository}:{tag}")
    return figures


def _push_bytes(client: docker.DockerClient, repository: str, registry: str | None = None) -> int:
    """Push the previous version to a fresh registry, then measure what the bumped one adds."""
    if registry:
        return _push_bytes_by_manifest(client, repository, registry)
    with _registry() as (address, storage):
        for tag in ("previous", "bumped"):
            target = f"{address}/{repository}"
            client.images.get(f"{repository}:{tag}").tag(target, tag)
            before = _size(storage)
            for chunk in client.api.push(target, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise SystemExit(f"push failed: {chunk['error']}")
            client.api.remove_image(f"{target}:{tag}")
            added = _size(storage) - before
        return added


def _push_bytes_by_manifest(client: docker.DockerClient, repository: str, registry: str) -> int:
    """Push both versions to `registry`; the compressed size of the bumped one's blobs that the previous lacks."""
    blobs: dict[str, dict[str, int]] = {}
    target = f"{registry}/{repository}"
    for tag in ("previous", "bumped"):
        client.images.get(f"{repository}:{tag}").tag(target, tag)
        for chunk in client.api.push(target, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise SystemExit(f"push failed: {chunk['error']}")
        client.api.remove_image(f"{target}:{tag}")
        # The engine may name the registry localhost:PORT; from here it is on loopback too.
        host = registry.replace("localhost", "127.0.0.1", 1)
        manifest = loopback_manifest(host, repository, tag)
        entries = [manifest["config"], *manifest["layers"]]
        blobs[tag] = {entry["digest"]: int(entry["size"]) for entry in entries}
    return sum(size for digest, size in blobs["bumped"].items() if digest not in blobs["previous"])


@contextmanager
def _registry() -> Iterator[tuple[str, Path]]:
    root = Path(tempfile.mkdtemp(prefix="grocker-bench-registry-"))
    port = 5100 + os.getpid() % 800
    config = root / "config.yml"
    config.write_text(
        f"version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {root}/data}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2))
        yield f"localhost:{port}", root / "data"
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_for(probe: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) if folder.exists() else 0


def _check(client: docker.DockerClient, image: str, command: list[str]) -> None:
    output = client.containers.run(image, command, entrypoint=[], remove=True).decode().strip()
    print(f"   {image}: {output}", file=sys.stderr)


def _remove_image(client: docker.DockerClient, name: str) -> None:
    with suppress(docker.errors.ImageNotFound):
        client.images.remove(name, force=True)


def _remove_volume(client: docker.DockerClient, name: str) -> None:
    with suppress(docker.errors.NotFound):
        client.volumes.get(name).remove()


def loopback_manifest(host: str, repository: str, tag: str) -> dict[str, Any]:
    """The image manifest of `repository:tag` in the registry at `host` (on loopback, plain HTTP)."""
    request = urllib.request.Request(
        f"http://{host}/v2/{repository}/manifests/{tag}",
        headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - a loopback registry
        manifest: dict[str, Any] = json.load(response)
    return manifest


@contextmanager
def _context_dir() -> Iterator[Path]:
    """An empty folder (no .grocker.yml) with the CA bundle pip is configured with."""
    with tempfile.TemporaryDirectory(prefix="grocker-bench-") as folder:
        context = Path(folder)
        pip = load_pip_settings(None, os.environ, Path.home())
        cert = pip.cert or Path("/etc/ssl/certs/ca-certificates.crt")
        shutil.copy(cert, context / "ca.pem")
        yield context


def _report(results: dict[str, Figures], args: argparse.Namespace) -> dict[str, object]:
    rows = [
        ("cold build (s)", "cold_seconds"),
        ("version bump (s)", "bump_seconds"),
        ("no-op rebuild (s)", "noop_seconds"),
        ("image size (MB)", "size_bytes"),
        ("bytes pushed on a bump (MB)", "push_bump_bytes"),
    ]
    methods = list(results)
    ratios: dict[str, float] = {}
    if methods:  # none when only the fleet scenario ran: it printed its own table
        print(f"\n{args.previous} -> {args.app} on {args.runtime}")
        print(f"{'':32}" + "".join(f"{method:>14}" for method in methods) + f"{'grocker/multi':>16}")
    for label, key in rows if methods else ():
        values = {method: getattr(results[method], key) for method in methods}
        scale = 1e6 if key.endswith("bytes") else 1.0
        cells = "".join(f"{values[method] / scale:>14.1f}" for method in methods)
        ratio = ""
        if "grocker" in values and values.get("multistage"):
            ratios[key] = values["grocker"] / values["multistage"]
            ratio = f"{ratios[key]:>16.2f}"
        print(f"{label:32}{cells}{ratio}")
    if "grocker" in results:
        noop = results["grocker"].noop_seconds / results["grocker"].cold_seconds
        ratios["noop_over_own_cold"] = noop
        print(f"{'no-op / own cold (grocker)':32}{noop:>14.2f}")
    checks = {
        "size": ratios.get("size_bytes"),
        "bump": ratios.get("bump_seconds"),
        "push_bump": ratios.get("push_bump_bytes"),
        "cold": ratios.get("cold_seconds"),
    }
    verdicts = {}
    for key, (_op, limit, label) in TARGETS.items():
        value = checks[key]
        if value is not None:
            verdicts[key] = {"ratio": round(value, 3), "target": limit, "met": value <= limit, "what": label}
    verdicts.update(_minimal_verdicts(results, ratios))
    if "noop_over_own_cold" in ratios:
        value = ratios["noop_over_own_cold"]
        verdicts["noop"] = {
            "ratio": round(value, 3),
            "target": NOOP_TARGET,
            "met": value <= NOOP_TARGET,
            "what": "no-op rebuild time / Grocker's own cold build",
        }
    print()
    for verdict in verdicts.values():
        mark = "met" if verdict["met"] else "MISSED"
        print(f"{verdict['what']:52} {verdict['ratio']:>6.2f} (target <= {verdict['target']:.2f}) {mark}")
    return {
        "app": args.app,
        "previous": args.previous,
        "runtime": args.runtime,
        "methods": {method: asdict(figures) for method, figures in results.items()},
        "ratios": {key: round(value, 3) for key, value in ratios.items()},
        "targets": verdicts,
        "machine": {"cpus": os.cpu_count()},
    }


def _minimal_verdicts(results: dict[str, Figures], ratios: dict[str, float]) -> dict[str, dict[str, object]]:
    """The minimal runner's figures over the multi-stage Dockerfile's, and its own size, as verdicts."""
    minimal, multistage = results.get("grocker-minimal"), results.get("multistage")
    if minimal is None:
        return {}
    verdicts: dict[str, dict[str, object]] = {
        "minimal_size_mb": {
            "ratio": round(minimal.size_bytes / 1e6, 1),
            "target": MINIMAL_MAX_BYTES / 1e6,
            "met": minimal.size_bytes <= MINIMAL_MAX_BYTES,
            "what": "image size of Grocker minimal (MB)",
        }
    }
    for key, (limit, label) in MINIMAL_TARGETS.items():
        if multistage is not None and getattr(multistage, key):
            value = getattr(minimal, key) / getattr(multistage, key)
            ratios[f"minimal_{key}"] = value
            verdicts[f"minimal_{key}"] = {
                "ratio": round(value, 3),
                "target": limit,
                "met": value <= limit,
                "what": label,
            }
    return verdicts


if __name__ == "__main__":
    sys.exit(main())
