"""The fleet scenario (issue 23): a fresh engine rebuilds and bumps a release the fleet built.

    .venv/bin/python benchmarks/fleet.py [--app ipython==8.18.1] [--previous ipython==8.18.0] [--json FILE]
    .venv/bin/python benchmarks/run.py --methods grocker,multistage,fleet

Every engine of the scenario is a private dockerd with an empty data root and a bridge of its own
(grfbN, 10.247.N.0/24, its folders under /tmp/fleetbench); the only thing they share is a registry
process of the benchmark's own on loopback. The base image (debian:trixie) is copied into each from
the engine DOCKER_HOST names before anything is timed: it is what a CI runner's base-image cache
holds.

- Engine A builds the previous release (N) with an image prefix naming the registry, push on.
- A fresh engine B builds N again under the same name (the rebuild: the registry holds that image,
  built from the same inputs, so B pulls it), then the bumped release (N+1), push on.
- A fresh engine C builds N under a second name, which the registry does not hold: the build from
  the fleet's lock and wheels (what a rebuild costs when the final image must be built).
- The multi-stage Dockerfile (benchmarks/dockerfiles/multistage) builds N on a fresh engine, then
  N+1 on another fresh engine: the baseline, a CI runner without Grocker.

Figures: each build's time; what B's and C's builds compiled, downloaded and fetched from the registry
(Grocker's result file, `wheels:`); the layer bytes B's pushes added to the registry (the
compressed size of the layers of its image that the registry lacked before). Targets: B's rebuild
compiles and downloads nothing, pushes no layer bytes and takes at most 0.3 of the multi-stage's
cold build; B's bump compiles only N+1's own new sdists (--new-sdists) and takes at most 0.4 of
the multi-stage's build of N+1 on a fresh engine. Each engine, bridge, firewall rule, data root
and the registry are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import run  # noqa: E402 - the benchmark's shared helpers, from this folder

from tests.integration.engines import PrivateEngine, start_engine  # noqa: E402

PARENT = Path("/tmp/fleetbench")
REBUILD_TARGET = 0.30
"""B's rebuild of N, over the multi-stage Dockerfile's cold build of N."""
BUMP_TARGET = 0.40
"""B's bump to N+1, over the multi-stage Dockerfile's build of N+1 on a fresh engine."""


@dataclass
class Scenario:
    """What to build, where to keep the registry."""

    app: str = "ipython==8.18.1"
    previous: str = "ipython==8.18.0"
    entrypoint: str = "ipython"
    runtime: str = "trixie/3.13"
    base_image: str = "debian:trixie"
    registry_port: int = 24810
    new_sdists: int = 0
    base_tar: Path | None = None


@dataclass
class FleetFigures:
    """What the scenario measured: seconds, the `wheels:` mapping of each Grocker build, layer bytes pushed."""

    a_seconds: float = 0.0
    a_wheels: dict[str, int] = field(default_factory=dict)
    rebuild_seconds: float = 0.0
    rebuild_wheels: dict[str, int] = field(default_factory=dict)
    rebuild_pulled_from: str | None = None
    rebuild_pushed_layer_bytes: int = 0
    from_wheels_seconds: float = 0.0
    """C's build of N under a name the registry lacks: from the fleet's lock and wheels."""
    from_wheels_wheels: dict[str, int] = field(default_factory=dict)
    from_wheels_pushed_layer_bytes: int = 0
    from_wheels_same_layers: bool = False
    bump_seconds: float = 0.0
    bump_wheels: dict[str, int] = field(default_factory=dict)
    bump_pushed_layer_bytes: int = 0
    multistage_cold_seconds: float = 0.0
    multistage_fresh_bump_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Registry:
    """A registry process of the benchmark's own on loopback, and its storage."""

    def __init__(self, port: int, root: Path) -> None:
        self.address = f"127.0.0.1:{port}"
        self.root = root
        config = root / "config.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "version": 0.1,
                    "log": {"level": "error"},
                    "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
                    "http": {"addr": self.address},
                }
            )
        )
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        run._wait_for(lambda: urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2))

    def blobs(self) -> set[str]:
        """The digests of the blobs the registry holds."""
        folder = self.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
        return {f"sha256:{path.name}" for path in folder.glob("*/*")} if folder.exists() else set()

    def layers(self, image: str) -> dict[str, int]:
        """The layers of a pushed image (`<address>/<repository>:<tag>`): digest -> compressed size."""
        repository, tag = image.removeprefix(f"{self.address}/").rsplit(":", 1)
        manifest = run.loopback_manifest(self.address, repository, tag)
        return {layer["digest"]: int(layer["size"]) for layer in manifest["layers"]}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Scenario()
    parser.add_argument("--app", default=defaults.app, help="the bumped release, N+1 (NAME==VERSION)")
    parser.add_argument("--previous", default=defaults.previous, help="the release the fleet built, N")
    parser.add_argument("--entrypoint", default=defaults.entrypoint, help="a command the application installs")
    parser.add_argument("--runtime", default=defaults.runtime)
    parser.add_argument("--base-image", default=defaults.base_image, help="copied into each engine, untimed")
    parser.add_argument(
        "--base-tar",
        type=Path,
        help="a `docker save` of the base image to load, instead of saving it from DOCKER_HOST's",
    )
    parser.add_argument("--registry-port", type=int, default=defaults.registry_port)
    parser.add_argument(
        "--new-sdists", type=int, default=defaults.new_sdists, help="N+1's own new sdists: what its bump may compile"
    )
    parser.add_argument("--json", type=Path, default=HERE / "results" / "fleet.json")
    args = parser.parse_args()
    scenario = Scenario(
        args.app,
        args.previous,
        args.entrypoint,
        args.runtime,
        args.base_image,
        args.registry_port,
        args.new_sdists,
        args.base_tar,
    )
    with run._context_dir() as context:
        report = measure(scenario, context, uuid.uuid4().hex[:8])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"JSON written to {args.json}", file=sys.stderr)
    return 0


def measure(scenario: Scenario, context: Path, run_id: str) -> dict[str, object]:
    """Run the scenario, print its figures and verdicts; its report (figures, verdicts) as a mapping."""
    figures = FleetFigures()
    PARENT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="base-", dir=PARENT) as folder:
        base = scenario.base_tar or Path(folder) / "base.tar"
        if scenario.base_tar is None:
            # Saved once from the engine DOCKER_HOST names: the only moment the scenario uses it.
            subprocess.run(["docker", "save", "-o", str(base), scenario.base_image], check=True)
        _grocker_builds(scenario, context, run_id, base, figures)
        _multistage_builds(scenario, context, run_id, base, figures)
    return _report(scenario, figures)


@contextmanager
def _fresh_engine(base: Path) -> Iterator[PrivateEngine]:
    """A private dockerd with an empty data root and the base image loaded; stopped and removed after."""
    engine = start_engine(bridge_name="grfb", net="10.247", parent=PARENT)
    try:
        with base.open("rb") as tar:
            subprocess.run(
                ["docker", "load", "-q"],
                stdin=tar,
                env={**os.environ, **engine.env},
                check=True,
                stdout=subprocess.DEVNULL,
            )
        yield engine
    finally:
        engine.stop()


def _grocker_builds(scenario: Scenario, context: Path, run_id: str, base: Path, figures: FleetFigures) -> None:
    print(
        "== fleet: engine A builds N, a fresh engine B rebuilds N then bumps to N+1, a fresh C builds N",
        file=sys.stderr,
    )
    with ExitStack() as stack:
        registry = Registry(scenario.registry_port, Path(tempfile.mkdtemp(prefix="registry-", dir=PARENT)))
        stack.callback(registry.stop)
        prefix = f"{registry.address}/bench-fleet-{run_id}"

        def build(engine: PrivateEngine, release: str, tag: str, label: str) -> tuple[float, dict[str, object], str]:
            image = f"{prefix}/app:{tag}"
            result_file = context / f"result-{label}.yml"
            seconds, summary = _grocker(engine, scenario, context, release, image, prefix, result_file)
            figures.notes.append(f"{label}: {summary}")
            result = yaml.safe_load(result_file.read_text())
            where = f"pulled from {result['pulled_from']}" if "pulled_from" in result else f"wheels {result['wheels']}"
            print(f"   {label}: {seconds:.1f} s, {where}", file=sys.stderr)
            return seconds, result, image

        # One engine at a time: A is gone (as an ephemeral runner is) before B starts, B before C.
        with _fresh_engine(base) as engine_a:
            figures.a_seconds, result, image_a = build(engine_a, scenario.previous, "n", "a-n")
            figures.a_wheels = result["wheels"]
        with _fresh_engine(base) as engine_b:
            before = registry.blobs()
            figures.rebuild_seconds, result, image_b = build(engine_b, scenario.previous, "n", "b-n")
            figures.rebuild_wheels = result.get("wheels", {})
            figures.rebuild_pulled_from = result.get("pulled_from")
            figures.rebuild_pushed_layer_bytes = _added(registry.layers(image_b), before)
            run._check(engine_b.client(), image_b, [scenario.entrypoint, "--version"])
            before = registry.blobs()
            figures.bump_seconds, result, image_bump = build(engine_b, scenario.app, "n1", "b-n1")
            figures.bump_wheels = result["wheels"]
            figures.bump_pushed_layer_bytes = _added(registry.layers(image_bump), before)
            run._check(engine_b.client(), image_bump, [scenario.entrypoint, "--version"])
        with _fresh_engine(base) as engine_c:
            before = registry.blobs()
            figures.from_wheels_seconds, result, image_c = build(engine_c, scenario.previous, "n-copy", "c-n")
            figures.from_wheels_wheels = result["wheels"]
            figures.from_wheels_pushed_layer_bytes = _added(registry.layers(image_c), before)
            figures.from_wheels_same_layers = registry.layers(image_c) == registry.layers(image_a)


def _grocker(
    engine: PrivateEngine, scenario: Scenario, context: Path, release: str, image: str, prefix: str, result: Path
) -> tuple[float, str]:
    arguments = [release, "-e", scenario.entrypoint, "-r", scenario.runtime, "-n", image, "--image-prefix", prefix]
    arguments += ["--push", "--result-file", str(result)]
    return run.timed_build(arguments, context, {**os.environ, **engine.env})


def _added(layers: dict[str, int], before: set[str]) -> int:
    """The compressed bytes of the layers the registry lacked before a push."""
    return sum(size for digest, size in layers.items() if digest not in before)


def _multistage_builds(scenario: Scenario, context: Path, run_id: str, base: Path, figures: FleetFigures) -> None:
    print("== fleet baseline: the multi-stage Dockerfile, N then N+1, each on a fresh engine", file=sys.stderr)
    shutil.copy(HERE / "dockerfiles" / "multistage" / "Dockerfile", context / "multistage.Dockerfile")
    for release, attribute in (
        (scenario.previous, "multistage_cold_seconds"),
        (scenario.app, "multistage_fresh_bump_seconds"),
    ):
        with _fresh_engine(base) as engine:
            client = engine.client()
            run._settle()
            started = time.monotonic()
            stream = client.api.build(
                path=str(context),
                dockerfile="multistage.Dockerfile",
                tag=f"bench-fleet-multistage-{run_id}:latest",
                buildargs={"APP": release},
                rm=True,
                forcerm=True,
                decode=True,
            )
            for chunk in stream:
                if "error" in chunk:
                    raise SystemExit(f"multi-stage build of {release} failed: {chunk['error']}")
            seconds = time.monotonic() - started
            setattr(figures, attribute, seconds)
            print(f"   multi-stage {release}: {seconds:.1f} s", file=sys.stderr)
            if release == scenario.app:
                run._check(client, f"bench-fleet-multistage-{run_id}:latest", [scenario.entrypoint, "--version"])


def _report(scenario: Scenario, figures: FleetFigures) -> dict[str, object]:
    rebuild_ratio = figures.rebuild_seconds / figures.multistage_cold_seconds
    from_wheels_ratio = figures.from_wheels_seconds / figures.multistage_cold_seconds
    bump_ratio = figures.bump_seconds / figures.multistage_fresh_bump_seconds
    rebuild, bump, from_wheels = figures.rebuild_wheels, figures.bump_wheels, figures.from_wheels_wheels
    if figures.rebuild_pulled_from:
        # A pulled image started no container: nothing was compiled or downloaded.
        rebuild = {"total": 0, "registry": 0, "downloaded": 0, "compiled": 0, "reused": 0}
    print(f"\nfleet: {scenario.previous} -> {scenario.app} on {scenario.runtime}, a fresh engine B")
    rows = [
        ("A builds N (s)", figures.a_seconds),
        ("B rebuilds N (s)", figures.rebuild_seconds),
        ("C builds N, another name (s)", figures.from_wheels_seconds),
        ("B bumps to N+1 (s)", figures.bump_seconds),
        ("multi-stage N, fresh engine (s)", figures.multistage_cold_seconds),
        ("multi-stage N+1, fresh engine (s)", figures.multistage_fresh_bump_seconds),
        ("B's rebuild: layer bytes pushed", figures.rebuild_pushed_layer_bytes),
        ("C's build: layer bytes pushed", figures.from_wheels_pushed_layer_bytes),
        ("B's bump: layer bytes pushed", figures.bump_pushed_layer_bytes),
    ]
    for label, value in rows:
        print(f"{label:36}{value:>14.1f}")
    print(f"{'A wheels':36}{figures.a_wheels}\n{'B bump wheels':36}{bump}\n{'C wheels':36}{from_wheels}")
    print(f"{'B rebuild pulled from':36}{figures.rebuild_pulled_from or '- (built)'} {figures.rebuild_wheels or ''}")
    print(f"{'C: same layers as A':36}{figures.from_wheels_same_layers}")
    verdicts = {
        "rebuild_compiled": _verdict(rebuild.get("compiled", -1), 0, "B's rebuild of N: wheels compiled"),
        "rebuild_downloaded": _verdict(rebuild.get("downloaded", -1), 0, "B's rebuild of N: wheels downloaded"),
        "rebuild_time": _verdict(rebuild_ratio, REBUILD_TARGET, "B's rebuild of N / multi-stage cold N"),
        "rebuild_push": _verdict(figures.rebuild_pushed_layer_bytes, 0, "B's rebuild of N: layer bytes pushed"),
        "bump_compiled": _verdict(bump.get("compiled", -1), scenario.new_sdists, "B's bump: wheels compiled"),
        "from_wheels_compiled": _verdict(from_wheels.get("compiled", -1), 0, "C's build of N: wheels compiled"),
        "from_wheels_downloaded": _verdict(from_wheels.get("downloaded", -1), 0, "C's build of N: wheels downloaded"),
        "from_wheels_push": _verdict(figures.from_wheels_pushed_layer_bytes, 0, "C's build of N: layer bytes pushed"),
        "bump_time": _verdict(bump_ratio, BUMP_TARGET, "B's bump / multi-stage N+1 on a fresh engine"),
    }
    print(f"{'C builds N under another name / multi-stage cold N':52} {from_wheels_ratio:>10.2f} (no target)")
    print()
    for verdict in verdicts.values():
        mark = "met" if verdict["met"] else "MISSED"
        print(f"{verdict['what']:52} {verdict['value']:>10.2f} (target <= {verdict['target']}) {mark}")
    return {
        "app": scenario.app,
        "previous": scenario.previous,
        "runtime": scenario.runtime,
        "figures": asdict(figures),
        "ratios": {
            "rebuild_over_multistage_cold": round(rebuild_ratio, 3),
            "from_wheels_over_multistage_cold": round(from_wheels_ratio, 3),
            "bump_over_multistage_fresh": round(bump_ratio, 3),
        },
        "targets": verdicts,
        "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()},
    }


def _verdict(value: float, target: float, what: str) -> dict[str, object]:
    """A figure against its target (at most), as the report records it."""
    # A missing count (-1) is not "at most 0": it fails.
    met = 0 <= value <= target
    return {"value": round(value, 3), "target": target, "met": met, "what": what}


if __name__ == "__main__":
    sys.exit(main())
