"""Purge: remove from the engine what Grocker created, and nothing else.

Grocker's objects are found by the `grocker.version` label and told apart by
`grocker.image.role`. Images: `root`, `compiler`, `wheel-server` (internal) and `runner`
(final); volumes: `wheel`, `wheel-candidates` (the copy of its public wheels the resolve
mounts), `abi-cache` (the ABI gate's bytecode) and `outbox` (one sdist
build's output, removed by every purge); containers carry their image's labels, and the ones
Grocker runs get roles of their own (`compile`, `publish`, `build-sdist`, `wheel-server`,
`check`, `abi-check`, `abi-suggest`).

Grocker's per-build networks (role `network`) left by an interrupted build are removed by every
purge, whatever their version, like outboxes. The containers and networks of a command that lost
its engine go before purge starts: connecting sweeps them (grocker.engine.cleanup); a command's
lease container (role `lease`) ends by itself with the command.

Nothing is ever forced: what the engine refuses to remove because it is in use (a running
container, an image with child images or containers, a mounted volume, a network with members)
is reported and kept. With `-f`, a runner image other images are built FROM (by someone else) loses its names,
as `docker rmi NAME:TAG` does: the engine keeps it, untagged, for its children.

A build container or network younger than `PurgeOptions.created_grace_seconds` is kept: a build
creates each container stopped and starts it moments later, and creates its network just before
its containers join it, so a young one may belong to a build that is running now.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from packaging.version import InvalidVersion, Version

from grocker import labels as keys
from grocker._version import __version__
from grocker.engine.endpoint import from_environment
from grocker.engine.protocol import ContainerInfo, ImageInfo, PurgeEngine, rfc3339_epoch
from grocker.labels import INTERNAL_IMAGE_ROLES, ROLE_LABEL, RUNNER, VERSION_LABEL, WHEEL_VOLUME
from grocker.log import logger

# Roles that only Grocker gives to the containers it runs (the chain).
OWN_CONTAINER_ROLES = frozenset(
    {
        keys.COMPILE,
        keys.PUBLISH,
        keys.BUILD_SDIST,
        keys.CHECK,
        keys.MUTEX,
        keys.ABI_CHECK,
        keys.ABI_SUGGEST,
        keys.SBOM,
    }
)
# Volumes of a configuration, purged with it by version.
_VERSIONED_VOLUMES = frozenset({WHEEL_VOLUME, keys.CANDIDATES, keys.ABI_CACHE})
# Grocker 6 gave its containers no labels of their own: a compile or wheel-server container
# carried its image's role, so it counts as a build container when its image is Grocker's.
IMAGE_CONTAINER_ROLES = frozenset({keys.COMPILER, keys.WHEEL_SERVER})
# Removal order: children before parents (every Grocker image but root is built FROM root, but a
# minimal runner, FROM the minimal base, itself FROM scratch with root's files).
_IMAGE_ORDER = {RUNNER: 0, keys.COMPILER: 1, keys.WHEEL_SERVER: 1, keys.MINIMAL_BASE: 1, keys.ROOT: 2}
# The OCI annotations Grocker sets as labels, by role (naming.runner_labels, internal_labels).
_OCI_KEYS = {RUNNER: frozenset({keys.OCI_TITLE, keys.OCI_VERSION, keys.OCI_CREATED, keys.OCI_BASE_NAME})}
_INTERNAL_OCI_KEYS = frozenset({keys.OCI_BASE_NAME})
# A LABEL step as the classic builder records it ("/bin/sh -c #(nop)  LABEL k=v") or BuildKit does.
_LABEL_STEP = re.compile(r"^(?:(?:/bin/sh -c|cmd /S /C) #\(nop\)\s+)?LABEL\s+(?P<pairs>.*)$", re.DOTALL)

Kind = Literal["container", "image", "volume", "network"]
# Container states a build container is removed in: never started (a build that died before
# starting it), stopped, or dead (the engine failed to remove it).
_LEFT_STATES = frozenset({"created", "exited", "dead"})


@dataclass(frozen=True)
class PurgeOptions:
    """What `grocker purge` removes beyond the defaults."""

    all_versions: bool = False
    """Also what the current and newer Grocker versions created, not only older ones."""
    including_final_images: bool = False
    """Also runner (final) images, and the stopped containers that block their removal."""
    created_grace_seconds: float = 60.0
    """A build container never started, or a build network, younger than this may belong to a
    build running now: it is kept (the mutex's rule for an abandoned mutex)."""


@dataclass(frozen=True)
class PurgedObject:
    """One object purge removed or kept."""

    kind: Kind
    name: str
    version: str
    role: str
    reason: str = ""

    def describe(self) -> str:
        """`image grocker-…-root:6.3-… (grocker 6.3, root)`."""
        return f"{self.kind} {self.name} (grocker {self.version or '?'}, {self.role or 'no role'})"


@dataclass(frozen=True)
class PurgeReport:
    """What purge removed and what it had to keep because it is in use."""

    removed: tuple[PurgedObject, ...] = ()
    kept: tuple[PurgedObject, ...] = ()
    untagged: tuple[PurgedObject, ...] = ()
    """Runner images that lost their names only: other images are built FROM them."""

    def lines(self) -> list[str]:
        """One line per object: removed ones first, then the untagged ones, then the ones in use."""
        if not self.removed and not self.kept and not self.untagged:
            return ["nothing to purge"]
        return (
            [f"removed {item.describe()}" for item in self.removed]
            + [f"untagged {item.describe()}: {item.reason}" for item in self.untagged]
            + [f"in use, kept {item.describe()}: {item.reason}" for item in self.kept]
        )


def purge(options: PurgeOptions, env: Mapping[str, str], *, engine: PurgeEngine | None = None) -> PurgeReport:
    """Remove Grocker's containers, images and volumes that `options` select; report what happened.

    Connects to the engine named by `env` unless `engine` is given. Objects in use are kept and
    reported; only engine failures raise (EngineError).
    """
    if engine is None:
        from grocker.engine.connection import connect  # docker-py is imported only to reach an engine

        engine = connect(from_environment(env))
    removed: list[PurgedObject] = []
    kept: list[PurgedObject] = []
    untagged: list[PurgedObject] = []
    # The images of the containers that stay: they must keep their names too.
    used: set[str] = set()

    own = _grocker_images(engine)
    own_ids = {image.id for image in own}
    images = [image for image in own if _image_selected(image, options)]
    runner_ids = {image.id for image in images if image.labels.get(ROLE_LABEL) == RUNNER}

    # Containers first: they hold images and volumes.
    for container in engine.containers(VERSION_LABEL):
        build = _is_build_container(container, own_ids) and _version_selected(container.labels, options)
        if not build and container.image_id not in runner_ids:
            continue
        item = _container_item(container)
        reason = _why_keep_container(container, build, options)
        if reason is None:
            reason = engine.try_remove_container(container.id)
        if reason is None:
            removed.append(item)
        else:
            kept.append(_with_reason(item, reason))
            used.add(container.image_id)

    # Images, children first by role. Should an image still have a child among the selected
    # ones (an unusual build chain), it gets another try after a pass that removed something.
    # An untagged image with children is not in the engine's list at all; the engine removes it
    # along with its last child.
    pending = sorted(images, key=lambda image: _IMAGE_ORDER.get(image.labels.get(ROLE_LABEL, ""), 3))
    refused: dict[str, str] = {}
    while pending:
        still: list[ImageInfo] = []
        for image in pending:
            intermediates = engine.image_intermediates(image.id)
            reason = engine.try_remove_image(image.id)
            if reason is None:
                removed.append(_image_item(image))
                _remove_intermediates(engine, intermediates, own_ids | _parents(image))
            else:
                refused[image.id] = reason
                still.append(image)
        if len(still) == len(pending):
            break
        pending = still
    for image in pending:
        reason = refused[image.id]
        if _untaggable(image, options, used):
            # Refused with no container of it left: other images are built FROM it.
            reason = engine.untag_image(image.id) or ""
            if not reason:
                untagged.append(_with_reason(_image_item(image), "other images are built FROM it and keep its layers"))
                continue
        kept.append(_with_reason(_image_item(image), reason))

    # Networks of builds that are over: an interrupted build may leave one.
    for network in engine.networks(VERSION_LABEL):
        if network.labels.get(ROLE_LABEL) != keys.NETWORK:
            continue
        item = PurgedObject("network", network.name, network.labels.get(VERSION_LABEL, ""), keys.NETWORK)
        reason = _why_young(network.age, options)
        if reason is None:
            reason = engine.try_remove_network(network.name)
        (removed if reason is None else kept).append(_with_reason(item, reason))

    # Volumes last: a build container mounts its wheel volume.
    for volume in engine.volumes(VERSION_LABEL):
        role = volume.labels.get(ROLE_LABEL, "")
        # An outbox is garbage once its sdist build is over: every purge removes it, whatever its version.
        wanted = role == keys.OUTBOX or (role in _VERSIONED_VOLUMES and _version_selected(volume.labels, options))
        if not wanted:
            continue
        item = PurgedObject("volume", volume.name, volume.labels.get(VERSION_LABEL, ""), role)
        reason = engine.try_remove_volume(volume.name)
        (removed if reason is None else kept).append(_with_reason(item, reason))

    return PurgeReport(tuple(removed), tuple(kept), tuple(untagged))


def _why_keep_container(container: ContainerInfo, build: bool, options: PurgeOptions) -> str | None:
    """Why purge must not remove this container, or None to try."""
    status = container.status or "not exited"
    if container.status == "exited":
        return None
    if not build or container.status not in _LEFT_STATES:
        # Running means a build or a user is using it right now: never stop it. A runner's
        # container the user created but never started is theirs to start.
        return status
    if container.status == "created":
        return _why_young(container.age, options)
    return None


def _why_young(age: float | None, options: PurgeOptions) -> str | None:
    """A reason to keep a build's container or network that may belong to a running build."""
    if age is not None and age >= options.created_grace_seconds:
        return None
    since = "at a time the engine does not give" if age is None else f"{age:.0f} s ago"
    return f"created {since}; a running build may be about to use it (purge again in a minute)"


def _untaggable(image: ImageInfo, options: PurgeOptions, used: set[str]) -> bool:
    """A runner image `-f` selected that has names and no container: untag it instead."""
    return (
        options.including_final_images
        and image.labels.get(ROLE_LABEL) == RUNNER
        and bool(image.tags)
        and image.id not in used
    )


def _parents(image: ImageInfo) -> set[str]:
    """The images `image` was built FROM, as its labels record them: the base image, the root image.

    The walk down the build steps stops there: a base image pulled by digest
    (`debian@sha256:...`) has no name, and so looks like one more step image (issue 20).
    """
    return {value for key in (keys.BASE_ID_LABEL, keys.ROOT_ID_LABEL) if (value := image.labels.get(key))}


def _remove_intermediates(engine: PurgeEngine, intermediates: Sequence[str], own_ids: set[str]) -> None:
    """Remove the build steps' images a removed image leaves on the containerd image store.

    Docker with overlay2 prunes them with the image (they are gone here); the containerd store
    keeps each as an image, so purge would leave Grocker's chain behind. Newest first, down to
    the first one that is Grocker's own image (purge handles it) or that the engine keeps (used
    by another image or container), or that the image was built FROM (its base or root image).
    """
    for image_id in intermediates:
        if image_id in own_ids or engine.try_remove_image(image_id) is not None:
            return
        logger.debug("removed the intermediate image %s", image_id)


def _grocker_images(engine: PurgeEngine) -> list[ImageInfo]:
    """The images Grocker built, without the ones someone else built FROM them."""
    found = []
    for image in engine.images(VERSION_LABEL):
        history = engine.image_history(image.id)
        if history is None:
            continue
        if built_by_grocker(image.labels, *history):
            found.append(image)
        else:
            logger.debug("%s carries Grocker's labels but was built FROM a Grocker image by someone else", _name(image))
    return found


def built_by_grocker(labels: Mapping[str, str], created: str, steps: Sequence[tuple[int, str]]) -> bool:
    """True when Grocker built this image itself, False for an image built FROM one of Grocker's.

    Labels are inherited, so an image built FROM a Grocker image carries all of Grocker's labels;
    names and parents do not tell them apart either (a Grocker image may be dangling, pulled
    without its parent chain, or tagged by hand). The image's own history does. Grocker gives
    its labels to the build, which records them as the very last steps of the image (one
    `LABEL key=value` step per label with the classic builder). Building on top of an image
    adds at least one step after those, and a metadata-only change that records no step (such
    as BuildKit's `--label`) still makes a new image whose creation time is later than its last
    step's. So the image is Grocker's when:

    - its newest step was made when the image itself was (nothing was changed after it), and
    - its newest steps are an unbroken run of LABEL steps that set `grocker.version` and
      `grocker.image.role`, each key once, and only Grocker's keys (`grocker.*` and the OCI
      annotations Grocker sets on that role): a LABEL added on top repeats one of them or adds
      another key.

    When in doubt (a history this rule cannot read), the image is not Grocker's, and is kept.
    """
    epoch = rfc3339_epoch(created)
    if not steps or epoch is None or int(epoch) != steps[0][0]:
        return False
    allowed = _OCI_KEYS.get(labels.get(ROLE_LABEL, ""), _INTERNAL_OCI_KEYS)
    seen: set[str] = set()
    for _when, created_by in steps:
        keys = _label_keys(created_by)
        if keys is None:
            break
        for key in keys:
            if key in seen or not (key.startswith("grocker.") or key in allowed):
                return False
            seen.add(key)
    return VERSION_LABEL in seen and ROLE_LABEL in seen


def _label_keys(created_by: str) -> list[str] | None:
    """The keys a LABEL step sets, or None for any other step."""
    found = _LABEL_STEP.match(created_by.strip())
    if found is None:
        return None
    pairs = found.group("pairs")
    try:
        tokens = shlex.split(pairs)
    except ValueError:
        tokens = pairs.split()
    keys = [token.split("=", 1)[0] for token in tokens if "=" in token]
    # `LABEL key value`, the old one-pair form without "=".
    return keys or tokens[:1]


def _is_older(version: str) -> bool:
    # A label that is no version at all comes from some old or broken Grocker: older.
    try:
        return Version(version) < Version(__version__)
    except InvalidVersion:
        return True


def _version_selected(labels: Mapping[str, str], options: PurgeOptions) -> bool:
    return options.all_versions or _is_older(labels.get(VERSION_LABEL, ""))


def _image_selected(image: ImageInfo, options: PurgeOptions) -> bool:
    role = image.labels.get(ROLE_LABEL, "")
    wanted = role in INTERNAL_IMAGE_ROLES or (options.including_final_images and role == RUNNER)
    return wanted and _version_selected(image.labels, options)


def _is_build_container(container: ContainerInfo, own_ids: set[str]) -> bool:
    role = container.labels.get(ROLE_LABEL, "")
    return role in OWN_CONTAINER_ROLES or (role in IMAGE_CONTAINER_ROLES and container.image_id in own_ids)


def _name(image: ImageInfo) -> str:
    short = image.id.removeprefix("sha256:")[:12]
    names = ", ".join(_familiar(tag) for tag in image.tags)
    return f"{names} [{short}]" if names else f"<untagged> [{short}]"


def _familiar(tag: str) -> str:
    """A name as the user gave it: Podman lists `app:1` as `docker.io/library/app:1`, as the CLI hides."""
    if tag.startswith("docker.io/library/"):
        return tag.removeprefix("docker.io/library/")
    rest = tag.removeprefix("docker.io/")
    return rest if "/" in rest else tag


def _image_item(image: ImageInfo) -> PurgedObject:
    return PurgedObject("image", _name(image), image.labels.get(VERSION_LABEL, ""), image.labels.get(ROLE_LABEL, ""))


def _container_item(container: ContainerInfo) -> PurgedObject:
    labels = container.labels
    return PurgedObject("container", container.name, labels.get(VERSION_LABEL, ""), labels.get(ROLE_LABEL, ""))


def _with_reason(item: PurgedObject, reason: str | None) -> PurgedObject:
    return item if reason is None else PurgedObject(item.kind, item.name, item.version, item.role, reason)
