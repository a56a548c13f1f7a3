"""Push: the final image and, when the prefix names a registry, the internal images."""

from __future__ import annotations

from grocker.chain.session import Session
from grocker.errors import PushError
from grocker.labels import COMPILER, ROOT, WHEEL_SERVER
from grocker.log import logger, phase
from grocker.naming import has_registry


def push(session: Session) -> str | None:
    """Push the final image (and the internal ones); its manifest digest, or None when its name
    has no registry to push to."""
    name = session.request.image_name
    if not has_registry(name):
        logger.warning("Not pushing %s: its name has no registry or namespace (use --image-prefix or -n).", name)
        return None
    if not session.request.build_image and session.engine.image(name) is None:
        raise PushError(
            f"There is no image {name} on the engine to push. Build it first (run without "
            "--no-build-image), then push with --no-build-dependencies --no-build-image --push."
        )
    push_internal_images(session)
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
    for role, name in ((ROOT, names.root), (COMPILER, names.compiler), (WHEEL_SERVER, names.wheel_server)):
        if session.engine.image(name) is not None:
            with phase(f"push {role} image"):
                session.engine.push(name, session.stream_line)
