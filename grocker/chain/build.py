"""The build chain: root, compiler, compile, wheel server, runner, push.

This module decides which steps run and in what order; each step lives in grocker.chain and
talks to the engine through grocker.engine.protocol only. Internal images and the wheel volume are
shared by every build of the same configuration; the final image is tagged only once it is
built and its entrypoint resolves.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import yaml

from grocker._version import __version__
from grocker.chain import abi, freshness, images, push, render, runner, wheel_server, wheelhouse
from grocker.chain import sbom as sbom_step
from grocker.chain.background import background
from grocker.chain.session import BuildRequest, BuildResult, Session
from grocker.engine.protocol import ChainEngine
from grocker.labels import ABI_CHECKED_LABEL, COMPILER, MINIMAL_BASE
from grocker.log import logger
from grocker.naming import internal_names
from grocker.wheels import WheelLock

__all__ = ["BuildRequest", "BuildResult", "build", "write_result"]


def build(request: BuildRequest, engine: ChainEngine) -> BuildResult:
    """Run the enabled phases of the chain for one release and return what they produced."""
    start = time.monotonic()
    config = request.config
    names = internal_names(config, request.pip)
    result = BuildResult(release=request.release.text, image=request.image_name, runtime=config.runtime.name)
    session = Session(engine, request, names, result, request.pip.secrets())
    lock: WheelLock | None = None
    gate: abi.Report | None = None
    if config.sbom is not None:
        sbom_step.preload()
    current = freshness.up_to_date(session)
    from grocker.chain import registry_freshness  # requests and oras-py only when a build runs

    pulled = registry_freshness.pull_if_up_to_date(session) if current is None else None
    if pulled is not None:
        # Built by another engine of the fleet from the same inputs: pulled, nothing to build or push.
        current = pulled.image
        result.up_to_date, result.pulled_from, result.hash = True, pulled.registry, pulled.digest
        result.root_image, result.image_id, result.size = names.root, current.id, current.size
        logger.info(
            "%s is up to date in %s (built from the same inputs by Grocker %s on another engine): pulled",
            request.image_name,
            pulled.registry,
            __version__,
        )
    elif current is not None:
        # Image inspects only: no container, no build. The push and the SBOM below still happen.
        result.up_to_date = True
        result.root_image, result.image_id, result.size = names.root, current.id, current.size
        logger.info(
            "%s is up to date (built from the same inputs by Grocker %s): nothing to build",
            request.image_name,
            __version__,
        )
    else:
        lock, gate = _build_images(session)
    sbom_text = None
    if config.sbom is not None:
        # In a build, the gate's container has collected the SBOM's facts: no container starts for them.
        gathered = gate.sbom if gate is not None else None
        sbom_text = sbom_step.write(
            engine, config, request.image_name, request.release, names.volume, names.index_domain, lock, gathered
        )
        result.sbom = str(config.sbom)
    if request.push:
        if pulled is None:
            result.hash = push.push(session)
        if sbom_text is not None and result.hash is not None:
            result.sbom_digest = sbom_step.push(request.image_name, result.hash, sbom_text, request.docker_config)
    elif current is None:  # an up-to-date image said all there is to say in its one line
        push.explain_no_push(session)
    result.duration_seconds = time.monotonic() - start
    _summary(result, request)
    if request.result_file is not None:
        write_result(request.result_file, result)
    return result


def _build_images(session: Session) -> tuple[WheelLock | None, abi.Report | None]:
    """The phases that make images: root, compiler and wheels, the ABI gate, the runner."""
    request, config, names, result = session.request, session.config, session.names, session.result
    engine = session.engine
    lock: WheelLock | None = None
    gate: abi.Report | None = None
    if request.build_dependencies or request.build_image:
        result.root_image = images.ensure_root(session)
    # The wheel server starts while the wheels are compiled and checked: it mounts the volume,
    # which must exist first (with its labels), and serves nothing until it knows the lock.
    if request.build_dependencies:
        wheelhouse.ensure_volume(session)
    elif request.build_image:
        wheelhouse.require_volume(session)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(wheel_server.starting(session)) if request.build_image else None
        # The runner images (the gate's memos, the runner build's cache sources), listed while the wheels compile.
        runners = stack.enter_context(freshness.listing_runners(session)) if server is not None else None
        if request.build_dependencies:
            compiler_context = render.compiler_context(config, names.root)
            result.compiler_image = images.ensure_child(session, COMPILER, names.compiler, compiler_context)
            # Kept to the end of the build: released (removed in the background) once used.
            publisher = stack.enter_context(wheelhouse.standby(session))
            lock = wheelhouse.compile_wheels(session, publisher)
        if server is not None and config.runner == "minimal":
            minimal_context = render.minimal_context(config, names.root)
            images.ensure_child(session, MINIMAL_BASE, names.minimal, minimal_context)
        if server is not None and runners is not None:
            listed = runners.result()
            # The server allows the lock's files while the ABI gate runs (or finds its memo): a
            # wheel that would not load in the runner still fails here, before any runner exists.
            with background(lambda made: server.serve(lock), "grocker-serve", inline=not engine.parallel) as serving:
                gate = abi.check_wheels(engine, config, names, request.release, lock, session.stream_line, listed)
                served = serving.result()
            memo = {ABI_CHECKED_LABEL: gate.memo} if gate is not None and gate.memo else {}
            sources = freshness.cache_sources(session, listed)
            image_id = runner.build_runner(session, served, server, memo, sources)
            info = session.engine.image(image_id)
            result.image_id = image_id
            result.size = info.size if info else None
    return lock, gate


def write_result(path: Path, result: BuildResult) -> None:
    """Write the result file as YAML with sorted keys, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(result.as_dict(), sort_keys=True, default_flow_style=False), "utf-8")


def _summary(result: BuildResult, request: BuildRequest) -> None:
    if result.up_to_date:
        return  # said in one line before the push, if any
    # A version range names the version it built (the runner step records it in the result).
    built = f" ({result.release})" if result.release != request.release.text else ""
    size = f", {result.size / 1e6:.0f} MB" if result.size else ""
    dependencies = f"; dependencies {result.dependencies}" if result.dependencies else ""
    reused = f"; reused: {', '.join(result.reused)}" if result.reused else ""
    logger.info("done %s%s in %.1fs%s%s%s", result.image, built, result.duration_seconds, size, dependencies, reused)
