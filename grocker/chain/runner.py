"""The runner: the final image, built FROM root with the wheels of the lock, checked, then tagged.

The final name is given only to an image that built and whose entrypoint resolves, so a failed
build never leaves the name pointing at a stale or broken image.
"""

from __future__ import annotations

import contextlib
import datetime
import re

from grocker import labels as keys
from grocker import render
from grocker.chain import wheel_server, wheelhouse
from grocker.chain.session import Session
from grocker.errors import BuildError, EngineError
from grocker.log import phase
from grocker.naming import internal_labels, runner_labels
from grocker.wheels import WheelLock

# Docker's classic builder says "---> Using cache"; Podman's (buildah) "--> Using cache ID".
_CACHED_STEP_RE = re.compile(r"-{2,3}> Using cache(?: [0-9a-f]{12,64})?")


def build_runner(session: Session, lock: WheelLock | None) -> str:
    """Serve the volume, build the runner from it, check its entrypoint, then tag it; return its ID.

    Without `lock` (no compile in this run), the release's wheel lock is read from the volume.
    """
    wheelhouse.require_volume(session)
    image_id: str | None = None
    try:
        with wheel_server.serve(session) as served:
            if lock is None:
                lock = wheelhouse.read_lock(session, served.container)
            image_id = _build_image(session, lock, served)
        _check_entrypoint(session, image_id)
    except BaseException:
        # Interrupts included. An image that already has a name is an earlier build's (a fully
        # cached build gives the same image): it stays.
        with contextlib.suppress(EngineError):  # never hide the first error
            info = session.engine.image(image_id) if image_id else None
            if info is not None and not info.tags:
                session.engine.try_remove_image(info.id)
        raise
    session.engine.tag(image_id, session.request.image_name)
    return image_id


def _build_image(session: Session, lock: WheelLock, served: wheel_server.Served) -> str:
    release, config = session.request.release, session.config
    epoch = session.request.source_date_epoch
    # With the user's SOURCE_DATE_EPOCH the label is as reproducible as the layers; otherwise it
    # says when the image was built (the engine records that time in the configuration anyway).
    when = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc) if epoch is not None else None
    created = (when or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = runner_labels(release, config, created)
    labels[keys.APP_VERSION_LABEL] = labels[keys.OCI_VERSION] = lock.app_version
    # A version range resolves to one release: the result file names the one built.
    session.result.release = release.pinned(lock.app_version).requirement if release.version is None else release.text
    # The labels are the Dockerfile's last instruction (see purge.built_by_grocker), not
    # build options, which the classic builder turns into one step each.
    context = render.runner_context(release, config, session.names.root, lock, labels, epoch)
    cached: list[str] = []

    def on_line(line: str) -> None:
        if _CACHED_STEP_RE.fullmatch(line.strip()):
            cached.append(line)
        session.stream_line(line)

    with phase(f"build image {session.request.image_name}") as note:
        image_id = session.engine.build(
            context.files,
            labels={},
            what="runner image",
            on_line=on_line,
            network=served.network,
            extra_hosts=served.hosts,
            nocache=session.request.no_cache,
        )
        if cached:
            note(f"{len(cached)} cached layers")
            session.reused(f"{len(cached)} cached layers")
    return image_id


def _check_entrypoint(session: Session, image_id: str) -> None:
    entrypoint = session.config.entrypoint_name
    with session.engine.container(
        image_id,
        role=keys.CHECK,
        labels=internal_labels(session.config, keys.CHECK),
        entrypoint=["/bin/sh", "-c", 'command -v "$0" >/dev/null'],
        command=[entrypoint],
    ) as container:
        status, _lines = container.run(session.stream_line)
    if status != 0:
        raise BuildError(
            f"The image's entrypoint {entrypoint!r} does not exist in it: neither the "
            f"application {session.request.release.name} nor its dependencies install a command of "
            "that name, and it is not on the image's PATH. Name an existing command with "
            "-e/--entrypoint (or entrypoint_name in .grocker.yml), or add a console_scripts "
            f"entry point called {entrypoint!r} to the application."
        )
