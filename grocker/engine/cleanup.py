"""Purge's half of the engine: list Grocker's objects and remove them, never forcing.

And the sweep every command runs when it connects: the containers and networks of commands
whose lease has ended (grocker.engine.lease) are removed, forced, since nothing uses them.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

from grocker.engine._calls import EngineRefusalError, GuardedApi
from grocker.engine.protocol import ContainerInfo, ImageInfo, NetworkInfo, VolumeInfo, rfc3339_epoch
from grocker.errors import EngineError
from grocker.labels import LEASE, LEASE_LABEL, ROLE_LABEL
from grocker.log import logger

LEASE_GRACE_SECONDS = 60.0
"""A network made before its command's lease started (or a lease never started) may be a live
command's this long; a lease that runs is always a live command's."""
# An engine refusing to remove a network a container is on.
# Docker: 403 "network ... has active endpoints"; Podman: 500 "network is being used".
_NETWORK_IN_USE_RE = re.compile(r"active endpoints|is being used|in use")
# An engine refusing to remove an image by ID because several names point at it.
_SEVERAL_NAMES_RE = re.compile(r"referenced in multiple repositories|by ID with more than one tag")
# The engine's preamble before the reason of a 409 ("conflict: unable to delete 1a2b (cannot be
# forced) - image has dependent child images", "remove vol: volume is in use - [id]").
_CONFLICT_PREAMBLE = (
    r"^(?:conflict: unable to \w+ .*?\((?:cannot be forced|must be forced|must force)\) - |remove \S+: )"
)


class CleanupOps:
    """What purge lists and removes (part of DockerEngine; grocker.engine.protocol.PurgeEngine)."""

    api: GuardedApi
    described: str

    image: Callable[[str], ImageInfo | None]
    """Inspect a local image, or None when it does not exist (DockerEngine's, with its size)."""

    def images(self, label: str) -> list[ImageInfo]:
        """Every image carrying the label, dangling ones included."""
        summaries = self.api.images(all=False, filters={"label": label})
        dangling = self.api.images(all=False, filters={"label": label, "dangling": True})
        seen: dict[str, ImageInfo] = {}
        for summary in [*summaries, *dangling]:
            info = self.image(summary["Id"])
            if info is not None:
                seen[info.id] = info
        return list(seen.values())

    def volumes(self, label: str) -> list[VolumeInfo]:
        """Every volume carrying the label."""
        answer = self.api.volumes(filters={"label": label})
        return [VolumeInfo(v["Name"], v.get("Labels") or {}) for v in answer.get("Volumes") or []]

    def containers(self, label: str) -> list[ContainerInfo]:
        """Every container, running or not, carrying the label, with its age by the engine's clock."""
        answer = self.api.containers(all=True, filters={"label": label})
        now = self._clock() if answer else None
        return [
            ContainerInfo(
                c["Id"],
                (c.get("Names") or ["?"])[0].lstrip("/"),
                c.get("State", ""),
                c.get("ImageID", ""),
                c.get("Labels") or {},
                age=age(now, c.get("Created")),
            )
            for c in answer
        ]

    def networks(self, label: str) -> list[NetworkInfo]:
        """Every network carrying the label, with its age by the engine's clock."""
        answer = self.api.networks(filters={"label": label})
        now = self._clock() if answer else None
        return [NetworkInfo(n["Name"], n.get("Labels") or {}, age=age(now, n.get("Created"))) for n in answer]

    def _clock(self) -> float:
        """The engine's time (epoch seconds), so that ages do not depend on this machine's clock."""
        try:
            moment = rfc3339_epoch(str(self.api.info().get("SystemTime") or ""))
        except EngineError:
            moment = None
        return time.time() if moment is None else moment

    def image_history(self, image_id: str) -> tuple[str, list[tuple[int, str]]] | None:
        """When an image was created (RFC 3339 text) and its build steps, newest first.

        Each step is (creation time in epoch seconds, the instruction that made it). None when
        the image no longer exists. Purge reads it to tell an image Grocker built from one built
        FROM it by someone else, since both carry the same inherited labels.
        """
        try:
            attrs = self.api.inspect_image(image_id)
            steps = self.api.history(image_id)
        except EngineRefusalError as err:
            if err.not_found:
                return None
            raise
        return str(attrs.get("Created") or ""), [
            (int(step.get("Created") or 0), str(step.get("CreatedBy") or "")) for step in steps
        ]

    def image_intermediates(self, image_id: str) -> list[str]:
        """The untagged images the classic builder left under this one, newest first.

        They are the IDs in the image's history down to its first tagged ancestor. Docker with
        overlay2 removes them along with the image; the containerd image store keeps them as
        images of their own, which purge removes next.
        """
        try:
            steps = self.api.history(image_id)
        except EngineRefusalError as err:
            if err.not_found:
                return []
            raise
        found = []
        for step in steps[1:]:
            step_id = str(step.get("Id") or "")
            if not step_id.startswith("sha256:") or step.get("Tags"):
                break
            found.append(step_id)
        return found

    def try_remove_container(self, container_id: str) -> str | None:
        """Remove a stopped container, never forcing; None once gone, else why it is kept."""
        return self._try_remove(lambda: self.api.remove_container(container_id, v=False, force=False))

    def try_remove_volume(self, name: str) -> str | None:
        """Remove a volume, never forcing; None once gone, else why it is kept (in use)."""
        return self._try_remove(lambda: self.api.remove_volume(name, force=False))

    def try_remove_network(self, name: str) -> str | None:
        """Remove a network, never forcing; None once gone, else why it is kept (a container uses it).

        Docker removes a network that a created, not yet started container names (which then
        cannot start) and refuses one with running members; Podman refuses both.
        """

        def remove() -> str | None:
            members = self.api.inspect_network(name).get("Containers") or {}
            if members:
                first = next(iter(members.values())) or {}
                return f"network is in use by container {first.get('Name') or next(iter(members))[:12]}"
            try:
                self.api.remove_network(name)
            except EngineRefusalError as err:
                if not err.not_found and _NETWORK_IN_USE_RE.search(err.explanation):
                    return f"network is in use: {err.explanation}"
                raise
            return None

        return self._try_remove(remove)

    def try_remove_image(self, image_id: str) -> str | None:
        """Remove an image by ID with all its names, never forcing; None once gone, else why it is kept.

        By ID, so that untagged (dangling) images go too. The engine refuses an ID with several
        names unless forced, and forcing would also delete an image under a stopped container,
        so such an image is untagged name by name instead, once no container uses it. The engine
        checks child images and running containers before names, so when names are what it
        objects to, neither exists: an image that is kept keeps all its names.
        """

        def remove() -> str | None:
            try:
                self.api.remove_image(image_id, force=False, noprune=False)
            except EngineRefusalError as err:
                # Docker: 409 "referenced in multiple repositories"; Podman: 500 "by ID with more
                # than one tag".
                if not _SEVERAL_NAMES_RE.search(err.explanation):
                    raise
                users = self.api.containers(all=True, quiet=True, filters={"ancestor": image_id})
                # Podman's `ancestor` filter misses them: compare the containers' images as well.
                short = image_id.removeprefix("sha256:")
                users += [
                    container
                    for container in self.api.containers(all=True)
                    if str(container.get("ImageID") or "").removeprefix("sha256:") == short
                ]
                if users:
                    return f"image is being used by stopped container {users[0]['Id'][:12]}"
                self._remove_names(image_id)
                self.api.remove_image(image_id, force=False, noprune=False)
            return None

        return self._try_remove(remove)

    def untag_image(self, image_id: str) -> str | None:
        """Remove every name of the image, as `docker rmi NAME:TAG` does, not the image itself.

        Docker with overlay2 refuses to remove by ID an image other images are built FROM, but
        removes its names: it then stays, untagged, for its children, and goes with the last of
        them. The caller makes sure no container uses the image (Docker would untag it anyway).
        """

        def remove() -> None:
            self._remove_names(image_id)

        return self._try_remove(remove)

    def _remove_names(self, image_id: str) -> None:
        attrs = self.api.inspect_image(image_id)
        for reference in [*(attrs.get("RepoTags") or []), *(attrs.get("RepoDigests") or [])]:
            # A digest goes with its repository's last tag: it may be gone already.
            try:
                self.api.remove_image(reference, force=False, noprune=False)
            except EngineRefusalError as err:
                if not err.not_found:
                    raise

    def _try_remove(self, remove: Callable[[], str | None]) -> str | None:
        try:
            return remove()
        except EngineRefusalError as err:
            if err.not_found:
                return None
            if err.status_code == 409:
                # Keep the reason, not the engine's preamble.
                return re.sub(_CONFLICT_PREAMBLE, "", err.explanation)
            raise

    def sweep(self) -> list[str]:
        """Remove the containers and networks of commands whose lease has ended; return what went.

        Never an object of a lease that runs: that command is alive, wherever it runs.
        """
        found = self.api.containers(all=True, filters={"label": LEASE_LABEL})
        networks = self.api.networks(filters={"label": LEASE_LABEL})
        if not found and not networks:
            return []
        live = {_lease(c) for c in found if _role(c) == LEASE and c.get("State") == "running"}
        now = self._clock()
        lost: set[str] = set()
        removed: list[str] = []
        for container in found:
            lease, name = _lease(container), (container.get("Names") or ["?"])[0].lstrip("/")
            if lease in live:
                continue
            young = (age(now, container.get("Created")) or 0.0) < LEASE_GRACE_SECONDS
            if _role(container) == LEASE and young:
                continue  # created, about to start: its command is alive
            if _role(container) != LEASE:
                lost.add(lease)
            with contextlib.suppress(EngineError):
                self.api.remove_container(container["Id"], force=True, v=True)
                removed.append(f"container {name}")
        for network in networks:
            lease = _lease(network)
            old = (age(now, network.get("Created")) or 0.0) >= LEASE_GRACE_SECONDS
            if lease in live or not (lease in lost or old):
                continue
            if self.try_remove_network(network["Name"]) is None:
                removed.append(f"network {network['Name']}")
        for what in removed:
            logger.info("removed %s, left on %s by a Grocker command that lost it", what, self.described)
        return removed


def _lease(summary: dict[str, Any]) -> str:
    return str((summary.get("Labels") or {}).get(LEASE_LABEL) or "")


def _role(summary: dict[str, Any]) -> str:
    return str((summary.get("Labels") or {}).get(ROLE_LABEL) or "")


def age(now: float | None, created: object) -> float | None:
    """Seconds from `created` (epoch seconds, or RFC 3339 text as networks give it) to `now`."""
    if now is None:
        return None
    if isinstance(created, (int, float)) and not isinstance(created, bool) and created > 0:
        return max(0.0, now - float(created))
    moment = rfc3339_epoch(created) if isinstance(created, str) else None
    return None if moment is None else max(0.0, now - moment)
