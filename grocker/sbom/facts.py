"""Collect the facts of a runner's SBOM on the engine: at most one short container, nothing large moved.

The facts are what grocker/sbom/document.py needs: os-release, the package database and, from each
wheel of the lock, its metadata fields and PEP 770 SBOMs (resources/sbom/collect.py gathers
them). In a build, the ABI gate's container has already gathered them (it runs the root image,
whose package database is the runner's: the runner is FROM root and adds no system package),
so no container starts here. Otherwise (the push phase alone, an up-to-date image, a remembered
gate verdict) a container of the runner image itself runs the collector with the wheel volume
mounted read-only. Either way the wheels are read in place, engine-side, so a remote engine sends
back a few kilobytes of JSON, not the wheels.

The runner's container runs none of the packages' code (issue 20): the collector is run by the
system interpreter named by a reset PATH (never the venv's python3, whose `.pth` files would
run), in isolated mode without `site` (`-I -S`: no PYTHON* variable, no user or system
site-packages, no `.pth` file, no sitecustomize), with no network. It only opens the files of
the lock (or, with no lock known, the lock of this release), so what it reports is what the
image's package database and the wheels' metadata say, not what package code would print.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from grocker import labels as keys
from grocker import layout
from grocker.config import ProjectConfig
from grocker.engine.protocol import NO_NETWORK, ChainEngine
from grocker.errors import BuildError, UsageError
from grocker.log import tail
from grocker.naming import internal_labels
from grocker.sbom.document import Distribution, NestedSbom, SbomFacts, SystemPackage
from grocker.wheels import WheelFile, WheelLock, parse_lock
from grocker.wire.sbom import collect_request

# A wheel file name as pip writes it; anything else never reaches the container's command line.
_WHEEL_RE = re.compile(r"[A-Za-z0-9_.+!-]+\.whl")
_LOCK_KEY_RE = re.compile(r"[A-Za-z0-9_.-]+")
# The PATH of the collector's container: the distribution's folders only, not the venv's bin,
# which the runner image puts first (its python3 would run the venv's .pth files).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class SbomRequest:
    """What the SBOM describes: the runner image, and the lock it was built from when known."""

    image_name: str
    volume: str
    lock_key: str
    lock: WheelLock | None = None
    extras: tuple[str, ...] = ()
    gathered: Mapping[str, Any] | None = None
    """The collector's output when the ABI gate's container gathered it in this build."""


def collect(engine: ChainEngine, config: ProjectConfig, request: SbomRequest) -> SbomFacts:
    """The SBOM's facts: those the gate gathered, else the collector's, run in a container of the runner."""
    info = engine.image(request.image_name)
    if info is None:
        raise BuildError(
            f"The SBOM of {request.image_name} cannot be made because there is no such image on the engine. "
            "Build it first (run without --no-build-image)."
        )
    data = request.gathered if request.gathered is not None else _run_collector(engine, config, request, info.id)
    lock = request.lock
    if lock is None:
        if "lock" not in data:
            raise BuildError(
                f"The SBOM of {request.image_name} cannot be made because the wheel volume {request.volume} "
                "holds no wheel lock of this release (with these constraints). Run the build with "
                "--build-dependencies and --sbom."
            )
        lock = parse_lock(data["lock"])
    return _facts(info.id, info.labels, config, request, lock, data)


def _run_collector(
    engine: ChainEngine, config: ProjectConfig, request: SbomRequest, image_id: str
) -> Mapping[str, Any]:
    """Run the collector in a short container of the runner image; its JSON output."""
    if engine.volume_labels(request.volume) is None:
        raise BuildError(
            f"The SBOM of {request.image_name} cannot be made because the wheel volume {request.volume} it "
            "was built from is gone. Build again with --build-dependencies, then ask for --sbom."
        )
    files = None
    if request.lock is not None:
        files = [wheel.file for wheel in (request.lock.application, *request.lock.dependencies)]
        bad = [name for name in files if not _WHEEL_RE.fullmatch(name)]
        if bad:
            raise BuildError(
                f"The wheel lock names files that are not wheels ({bad[0]!r}). Rebuild with --build-dependencies."
            )
    if not _LOCK_KEY_RE.fullmatch(request.lock_key):
        raise BuildError(
            f"The lock key {request.lock_key!r} is not a file name. This key is made by Grocker; report it."
        )
    # The script goes in as `python -c` text, not copied in: one engine call fewer (time counts here).
    script = resources.files("grocker").joinpath("resources/sbom/collect.py").read_text("utf-8")
    with engine.container(
        image_id,
        role=keys.SBOM,
        labels=internal_labels(config, keys.SBOM),
        entrypoint=[config.runtime.python, "-I", "-S", "-c", script],
        command=[json.dumps(collect_request(request.lock_key, files))],
        environment={"PATH": SYSTEM_PATH},
        volumes={request.volume: (layout.COMPILE_MOUNT, "ro")},
        network=NO_NETWORK,
    ) as container:
        status, lines = container.run(lambda _line: None)
    output = next((line for line in reversed(lines) if line.startswith("{")), None)
    if status != 0 or output is None:
        raise BuildError(
            f"Collecting the SBOM facts of {request.image_name} failed (exit status {status}): the collector "
            f"ran with {config.runtime.python} in the image. Its output ends with:",
            details=tail(lines),
        )
    data: dict[str, Any] = json.loads(output)
    return data


def write(path: Path, text: str) -> None:
    """Write the SBOM file, creating its folders."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    except OSError as err:
        raise UsageError(
            f"Writing the SBOM to {path} failed because {err.strerror or err}. Give --sbom (or `sbom` in "
            "the configuration) a file path in a folder you can write to."
        ) from err


def _facts(
    image_id: str,
    labels: Mapping[str, str],
    config: ProjectConfig,
    request: SbomRequest,
    lock: WheelLock,
    data: Mapping[str, Any],
) -> SbomFacts:
    wheels: Mapping[str, Any] = data.get("wheels") or {}

    def distribution(wheel: WheelFile) -> Distribution:
        meta = wheels.get(wheel.file) or {}
        return Distribution(
            file=wheel.file,
            sha256=wheel.sha256,
            origin=wheel.origin,
            name=meta.get("name"),
            license_expression=meta.get("license_expression"),
            license=meta.get("license"),
            classifiers=tuple(meta.get("classifiers") or ()),
            sboms=tuple(
                NestedSbom(path=item["path"], sha256=item["sha256"], document=item.get("document"))
                for item in meta.get("sboms") or ()
            ),
        )

    packages = sorted(
        {SystemPackage(item["name"], item["version"], item["architecture"]) for item in data.get("packages") or ()},
        key=lambda package: (package.name, package.version, package.architecture),
    )
    release = data.get("os") or {}
    return SbomFacts(
        image_name=request.image_name,
        image_id=image_id,
        image_created=labels.get("org.opencontainers.image.created", ""),
        runtime=config.runtime.name,
        base_image=config.runtime.image,
        # Root records the ID of the base image it was built FROM; the runner inherits the label.
        base_image_id=labels.get("grocker.base.id"),
        family=config.runtime.family,
        os_id=str(release.get("id") or config.runtime.family),
        os_version=str(release.get("version_id") or ""),
        application=distribution(lock.application),
        dependencies=tuple(distribution(wheel) for wheel in lock.dependencies),
        packages=tuple(packages),
        extras=request.extras,
    )
