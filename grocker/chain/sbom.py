"""The SBOM steps of a build: write it once the final image exists, push it after the image.

Called from grocker/chain/build.py. The libraries behind them (cyclonedx-python-lib, oras-py with
jsonschema) take a noticeable time to import and only a run with --sbom needs them, so they
are imported here, inside the steps; a build that will write an SBOM starts importing the
formatter in the background while the engine works (preload), so the step seldom waits for it.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grocker.config import ProjectConfig
from grocker.config.release import Release
from grocker.engine.protocol import ChainEngine
from grocker.log import counted, phase
from grocker.wheels import WheelLock, lock_key


def preload() -> None:
    """Import the SBOM formatter in a background thread (the engine's work leaves this process idle).

    A failure is left to the step's own import, which reports it where it happens.
    """

    def load() -> None:
        with contextlib.suppress(Exception):  # the step imports it again and raises there
            importlib.import_module("grocker.sbom.facts")

    threading.Thread(target=load, name="grocker-sbom-preload", daemon=True).start()


SBOM_TITLE = "sbom.cdx.json"
"""The title (org.opencontainers.image.title) of the SBOM's file in the pushed artifact."""


def write(
    engine: ChainEngine,
    config: ProjectConfig,
    image_name: str,
    release: Release,
    volume: str,
    domain: str,
    lock: WheelLock | None,
    gathered: Mapping[str, Any] | None = None,
) -> str:
    """Write the SBOM of the final image to `config.sbom` and return its text.

    `volume` is the wheel volume of the index settings whose digest is `domain`. `lock` is the
    compile step's, or None when this run did not compile: the lock of the
    release is then read from the wheel volume. `gathered` is the facts the ABI gate's container
    collected in this build; without them, a container of the final image collects them.
    """
    path = config.sbom
    if path is None:
        raise ValueError("write() needs config.sbom")
    with phase(f"write SBOM {path}") as note:
        from grocker.sbom import document as sbom
        from grocker.sbom import facts as sbom_facts

        request = sbom_facts.SbomRequest(
            image_name=image_name,
            volume=volume,
            lock_key=lock_key(release, config.pip_constraint, domain),
            lock=lock,
            extras=release.extras,
            gathered=gathered,
        )
        facts = sbom_facts.collect(engine, config, request)
        text = sbom.document(facts)
        sbom_facts.write(path, text)
        distributions = counted(len(facts.dependencies) + 1, "Python distribution")
        note(f"{distributions}, {counted(len(facts.packages), 'system package')}")
    return text


def push(image_name: str, image_digest: str, text: str, docker_config: Path | None) -> str:
    """Push the SBOM next to the pushed image, as an artifact whose subject is the image; its digest.

    The registry's login is read from `docker_config`/config.json, as the engine's push reads it.
    """
    with phase("push SBOM") as note:
        from grocker.sbom import document as sbom
        from grocker.sbom import referrers

        # One title whatever the local file's name: the artifact depends on the SBOM and the image
        # alone, so pushing the same SBOM again (a push phase run later) adds no second referrer.
        pushed = referrers.push_artifact(
            image_name, image_digest, text.encode("utf-8"), sbom.MEDIA_TYPE, SBOM_TITLE, docker_config
        )
        note(pushed.digest + (f" (referrers tag {pushed.fallback_tag})" if pushed.fallback_tag else ""))
    return pushed.digest
