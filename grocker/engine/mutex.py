"""The engine-wide mutex: one build at a time makes an internal image, whichever machine it runs on.

The mutex is a container with a name made from its key: the engine refuses a second container of
that name. The container runs `cat` on a stdin attached to the holder (grocker.engine.lease's
`start_attached`) and is removed when that stdin ends, so the mutex goes away by itself when its
holder dies, however it dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping

from grocker.engine._calls import EngineRefusalError, GuardedApi
from grocker.engine.containers import name_in_use
from grocker.engine.lease import close_attached, start_attached
from grocker.errors import EngineError
from grocker.labels import MUTEX_OWNER_LABEL
from grocker.log import logger

STALE_SECONDS = 60.0
"""A mutex container seen unstarted this long (by this process's clock) has lost its holder."""
POLL_SECONDS = 1.0


def mutex_name(key: str) -> str:
    """The name of the mutex container of `key` ("lock" predates the word mutex; kept for purge)."""
    return f"grocker-lock-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]}"


class MutexOps:
    """The engine-wide mutex (part of DockerEngine)."""

    api: GuardedApi

    @contextlib.contextmanager
    def mutex(self, key: str, image: str, labels: Mapping[str, str], on_wait: Callable[[], None]) -> Iterator[None]:
        """Hold the engine-wide mutex called `key` while the block runs; wait while another build holds it.

        `image` must be local. `on_wait` is called once, when another build holds the mutex.
        """
        name = mutex_name(key)
        owner = uuid.uuid4().hex
        created_since: dict[str, float] = {}
        waiting = False
        while True:
            try:
                # From here on, by ID: once a released mutex's container is gone, the name is the
                # next holder's, and an operation by name would reach that one.
                holder, connection = start_attached(self.api, image, name, {**labels, MUTEX_OWNER_LABEL: owner})
                break
            except EngineRefusalError as err:
                if not name_in_use(err.status_code, err.explanation):
                    raise
            if not waiting:
                waiting = True
                on_wait()
            clear_stale(self.api, name, created_since)
            time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            close_attached(connection)
            if owner_of(self.api, name) == owner:
                with contextlib.suppress(EngineError):
                    self.api.remove_container(holder, force=True)


def owner_of(api: GuardedApi, name: str) -> str | None:
    """The owner token of the mutex container `name`, or None when it is gone (or unreadable)."""
    try:
        attrs = api.inspect_container(name)
    except EngineError:
        return None
    return (attrs.get("Config", {}).get("Labels") or {}).get(MUTEX_OWNER_LABEL)


def clear_stale(api: GuardedApi, name: str, created_since: dict[str, float]) -> bool:
    """Remove a mutex container whose holder died before starting it, or that outlived `cat`.

    `created_since` remembers when each container was first seen unstarted, across calls.
    Returns whether it removed one.
    """
    try:
        attrs = api.inspect_container(name)
    except EngineError:
        return False  # gone already, or the engine is busy: look again on the next turn
    status = attrs.get("State", {}).get("Status")
    # Holders start their mutex right after creating it; one seen unstarted for a minute
    # (measured here, so that the engine's clock does not matter) has lost its holder.
    first_seen = created_since.setdefault(attrs["Id"], time.monotonic())
    if status in ("exited", "dead") or (status == "created" and time.monotonic() - first_seen > STALE_SECONDS):
        logger.debug("removing the abandoned mutex %s (%s)", name, status)
        with contextlib.suppress(EngineError):
            api.remove_container(attrs["Id"], force=True)
        return True
    return False
