"""Is the final image up to date? Decided from image inspects alone, before any container.

A runner records in its INPUTS_LABEL a digest of what it was built from: Grocker's version, the
runner's configuration (its Dockerfile rendered without the lock: env, ports, volumes,
entrypoint, runtime, root image name), the key of the release's wheel lock (with the digest of
the index settings, grocker.trust) and the ID of the root image. With lock reuse
(grocker.chain.wheelhouse), a pinned release's lock is decided by that key once it exists, so
equal digests mean that a build would make the same image again: the build is skipped. Never
with --no-cache or --refresh, and never for a version range (the newest version it allows may
have changed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence

from grocker._version import __version__
from grocker.chain import render
from grocker.chain.background import Background, background, wait_turn
from grocker.chain.session import Session
from grocker.chain.wheelhouse import reuses_lock
from grocker.engine.protocol import ImageInfo, LabelledImage
from grocker.labels import (
    APP_NAME_LABEL,
    BASE_ID_LABEL,
    CONFIG_HASH_LABEL,
    INPUTS_LABEL,
    ROLE_LABEL,
    RUNNER,
    VERSION_LABEL,
)
from grocker.log import logger
from grocker.naming import config_hash, runner_labels
from grocker.wheels import lock_key

CACHE_SOURCES = 16
"""At most this many runner images are given to a runner build as its cache sources."""


def inputs_digest(session: Session, root_id: str) -> str:
    """The digest a runner built now from the root image `root_id` records in its INPUTS_LABEL."""
    release, config = session.request.release, session.config
    # Everything of the runner but the lock's wheels and the build time: the placeholder lock and
    # a fixed date stand in for them, the lock's key for the lock.
    context = render.runner_context(
        release,
        config,
        session.names.runner_base(config),
        render.placeholder_lock(release),
        runner_labels(release, config, ""),
        session.request.source_date_epoch,
    )
    content = {
        "grocker": __version__,
        "runner": {path: hashlib.sha256(data).hexdigest() for path, data in sorted(context.files.items())},
        "lock": lock_key(release, config.pip_constraint, session.names.index_domain),
        "root": root_id,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()


def up_to_date(session: Session) -> ImageInfo | None:
    """The final image, when it exists and was built from the inputs this build would use."""
    request, engine = session.request, session.engine
    if request.no_cache or not request.build_image or not reuses_lock(request):
        return None
    image = engine.image(request.image_name)
    if image is None or image.labels.get(ROLE_LABEL) != RUNNER or image.labels.get(VERSION_LABEL) != __version__:
        return None
    recorded = image.labels.get(INPUTS_LABEL)
    root_id = current_root_id(session)
    if recorded is None or root_id is None:
        return None
    if recorded != inputs_digest(session, root_id):
        logger.debug("%s was built from other inputs than this build's: building it again", request.image_name)
        return None
    return image


def current_root_id(session: Session) -> str | None:
    """The root image's ID, unless it is missing or would be rebuilt (its base image changed)."""
    root = session.engine.image(session.names.root)
    if root is None:
        return None
    base = session.engine.image(session.config.runtime.image)
    built_from = root.labels.get(BASE_ID_LABEL)
    if base is not None and built_from and built_from != base.id:
        return None
    return root.id


def cache_sources(session: Session, runners: Sequence[LabelledImage]) -> list[str]:
    """The runner images of the same application and configuration: the runner build's cache.

    `runners` are the engine's runner images, newest first (see `listing_runners`). A runner
    pulled from the fleet's registry (grocker.chain.registry_freshness) was built on another
    engine: the engine's build cache knows nothing of its steps, and a version bump would build
    its dependencies' layer again. Given as cache sources, its steps are reused. Every such image
    is given (the newest first, at most CACHE_SOURCES), as the engine then takes a cached step
    only from their chains: the runners built here stay usable as the cache they were.
    """
    if session.request.no_cache:
        return []
    release, config = session.request.release, session.config
    wanted = {APP_NAME_LABEL: release.name, CONFIG_HASH_LABEL: config_hash(config)}
    same = [image.id for image in runners if all(image.labels.get(key) == value for key, value in wanted.items())]
    return same[:CACHE_SOURCES]


@contextlib.contextmanager
def listing_runners(session: Session) -> Iterator[Background[Sequence[LabelledImage]]]:
    """The engine's runner images (role RUNNER), listed in the background once the resolve runs.

    One listing for the runner build's cache sources (`cache_sources`) and the ABI gate's memo
    (grocker.chain.abi): neither needs the lock to be listed, and the build then waits for neither.
    """

    def listing(made: contextlib.ExitStack) -> Sequence[LabelledImage]:
        if session.request.build_dependencies:  # else there is no resolve to wait for
            wait_turn(session.resolving, session.engine.parallel)
        return session.engine.labelled_images({ROLE_LABEL: RUNNER})

    with background(listing, "grocker-runners", inline=not session.engine.parallel) as listed:
        try:
            yield listed
        finally:
            session.resolving.set()  # a listing still waiting for its turn goes on now


def inputs_label(session: Session) -> dict[str, str]:
    """The label that lets a later build of the same inputs skip (added to the runner's labels)."""
    root = session.engine.image(session.names.root)
    return {INPUTS_LABEL: inputs_digest(session, root.id)} if root is not None else {}
