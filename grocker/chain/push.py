"""Push: the final image to its name's registry, the internal images to the prefix's.

A run pushes (BuildRequest.push, decided by api.decide_push) when the final name or the image
prefix names a registry or a namespace. Each image goes only where its own name says: the final
image when its name has a registry, the root, compiler and wheel-server images when the prefix
is set (their names are under it), even if the final name has no registry.
"""

from __future__ import annotations

from grocker.chain.session import Session
from grocker.errors import PushError
from grocker.labels import COMPILER, MINIMAL_BASE, ROOT, WHEEL_SERVER
from grocker.log import logger, phase
from grocker.reference import has_registry


def push(session: Session) -> str | None:
    """Push the internal images, then the final one; its manifest digest, or None when its name
    has no registry to push to."""
    name = session.request.image_name
    final = has_registry(name)
    if final and not session.request.build_image and session.engine.image(name) is None:
        raise PushError(
            f"There is no image {name} on the engine to push. Build it first (run without "
            "--no-build-image), then push with --no-build-dependencies --no-build-image --push."
        )
    push_internal_images(session)
    if not final:
        logger.info(
            "not pushing %s: its name has no registry or namespace (give -n REGISTRY/NAME:TAG to push it)%s",
            name,
            "; the internal images went to the prefix's registry" if session.config.image_prefix else "",
        )
        return None
    with phase(f"push {name}") as note:
        digest = session.engine.push(name, session.stream_line)
        note(digest)
    return digest


def push_internal_images(session: Session) -> None:
    """Share the root, compiler and wheel-server images through the prefix's registry.

    Done in the push phase, whichever run built them (in CI, the build often runs with
    --no-push and a later run pushes); a layer the registry has is not sent again.
    """
    if not session.config.image_prefix:
        return
    names = session.names
    shared = [(ROOT, names.root), (COMPILER, names.compiler), (WHEEL_SERVER, names.wheel_server)]
    if session.config.runner == "minimal":
        shared.append((MINIMAL_BASE, names.minimal))
    for role, name in shared:
        if session.engine.image(name) is not None:
            with phase(f"push {role} image"):
                session.engine.push(name, session.stream_line)
        else:
            logger.info("not pushing the %s image %s: it is not on this engine", role, name)


def explain_no_push(session: Session) -> None:
    """Say why a run that builds the image, or the push phase alone, pushes nothing."""
    request = session.request
    if request.build_dependencies and not request.build_image:
        return  # a dependencies-only run pushes only when asked
    if has_registry(request.image_name) or session.config.image_prefix:
        logger.debug("not pushing %s: --no-push", request.image_name)
        return
    logger.info(
        "not pushing %s: neither its name nor an image prefix names a registry (give -n "
        "REGISTRY/NAME:TAG or --image-prefix REGISTRY to push)",
        request.image_name,
    )
