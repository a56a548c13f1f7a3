"""The internal images: reuse one on the engine, pull it from the prefix's registry, or build it.

Root is built FROM the runtime's base image, compiler and wheel-server FROM root. Each records
the ID of the image it was built FROM in a label, and is rebuilt when that image changed.
Concurrent builds of one configuration take turns (an engine mutex per image name): the first
one pulls or builds, the others wait and reuse its image, so that no name moves under a running
build.
"""

from __future__ import annotations

from grocker.chain import render
from grocker.chain.session import Session
from grocker.config.families import missing_packages_message
from grocker.errors import BuildError
from grocker.labels import BASE_ID_LABEL, MUTEX, ROOT, ROOT_ID_LABEL, ImageRole
from grocker.log import logger, phase
from grocker.naming import internal_labels


def ensure_root(session: Session) -> str:
    """Get, pull or build the root image; rebuild it when its base image changed."""
    engine, config, names = session.engine, session.config, session.names
    base = config.runtime.image
    base_info = engine.image(base)
    if base_info is None and config.image_prefix and not session.request.no_cache:
        # A machine sharing the prefix's registry may have built root already: its base
        # image is then not needed here at all.
        with phase("pull root image") as note:
            note("pulled from the registry" if engine.pull(names.root) else "not in the registry")
    if base_info is None and not _available(session, names.root, BASE_ID_LABEL, None):
        with phase(f"pull base image {base}"):
            if not engine.pull(base):
                raise BuildError(
                    f"The base image {base} of runtime {config.runtime.name} is not on the "
                    "engine and cannot be pulled. Provide it: `docker load -i image.tar` from a "
                    "machine that has it, `docker import` of a debootstrapped root file system "
                    "(scripts/import-debian-image.sh in Grocker's repository does it), or a "
                    "registry mirror configured in the engine (registry-mirrors in daemon.json)."
                )
        base_info = engine.image(base)
    base_id = base_info.id if base_info else None
    return _ensure(session, ROOT, names.root, render.root_context(config), BASE_ID_LABEL, base_id)


def ensure_child(session: Session, role: ImageRole, name: str, context: render.BuildContext) -> str:
    """Get, pull or build an image FROM root; rebuild it when root was rebuilt."""
    root = session.engine.image(session.names.root)
    return _ensure(session, role, name, context, ROOT_ID_LABEL, root.id if root else None)


def _ensure(
    session: Session, role: ImageRole, name: str, context: render.BuildContext, label: str, parent_id: str | None
) -> str:
    """Reuse a local image, or take the image's mutex, then reuse, pull or build it.

    `label` records the ID of the image it was built FROM, and `parent_id` is that image's
    current ID: an image built from an older parent is stale and rebuilt.
    """
    no_cache = session.request.no_cache
    if not no_cache and _available(session, name, label, parent_id):
        session.reused(f"{role} image")
        logger.debug("%s image %s is already on the engine", role, name)
        return name
    waited: list[str] = []

    def on_wait() -> None:
        waited.append(name)
        logger.info("waiting for another Grocker build to finish the %s image %s", role, name)

    # The mutex container needs a local image: root is built FROM the base, the others FROM root.
    mutex_image = session.config.runtime.image if role == ROOT else session.names.root
    with session.engine.mutex(name, mutex_image, internal_labels(session.config, MUTEX), on_wait):
        if waited and not no_cache and _available(session, name, label, parent_id):
            session.reused(f"{role} image (built by a concurrent build)")
            return name
        if not no_cache and session.config.image_prefix:
            with phase(f"pull {role} image") as note:
                if session.engine.pull(name) and _available(session, name, label, parent_id):
                    note("pulled from the registry")
                    session.reused(f"{role} image (pulled)")
                    return name
                note("not in the registry")
        _build(session, role, name, context, label, parent_id)
    return name


def _build(
    session: Session, role: ImageRole, name: str, context: render.BuildContext, label: str, parent_id: str | None
) -> None:
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        session.stream_line(line)

    with phase(f"build {role} image {name}"):
        labels = internal_labels(session.config, role)
        if parent_id:
            labels[label] = parent_id
        try:
            image_id = session.engine.build(
                context.files,
                labels=labels,
                what=f"{role} image",
                on_line=on_line,
                nocache=session.request.no_cache,
            )
        except BuildError as err:
            # These images install system packages: say which name the distribution lacks.
            message = missing_packages_message(f"{role} image", lines)
            if message is None:
                raise
            raise BuildError(message, details=err.details) from err
        session.engine.tag(image_id, name)


def _available(session: Session, name: str, label: str, parent_id: str | None) -> bool:
    """True when `name` is on the engine and was built from the current parent image."""
    info = session.engine.image(name)
    if info is None:
        return False
    built_from = info.labels.get(label)
    if parent_id and built_from and built_from != parent_id:
        logger.info("%s was built from an older %s; rebuilding it", name, label.split(".")[1])
        return False
    return True
