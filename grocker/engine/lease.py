"""A command's lease on the engine: how a lost build's containers are told from a live one's.

A build's containers and networks may outlive the process that made them: the engine keeps the
wheel server and the publisher's waiting container running when the connection to it is cut or
the process is killed. Every container and network a command makes carries its lease's label;
the lease itself is a container running `cat` on a stdin attached to this process, created with
auto-remove, as the engine mutex's holder is (grocker.engine.mutex). When the process dies, or
its connection to the engine does, the attached stdin ends, `cat` exits and the engine removes
the lease container: objects whose lease container is gone belong to a lost command, and the
next Grocker command on that engine removes them (grocker.engine.cleanup.sweep), never the
objects of a lease that runs.

The lease runs while the command holds at least one container or network: it starts with the
first one and ends, removed, with the last.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from grocker._version import __version__
from grocker.engine._calls import EngineRefusalError, GuardedApi
from grocker.errors import EngineError
from grocker.labels import LEASE, LEASE_LABEL, ROLE_LABEL, VERSION_LABEL
from grocker.log import logger


class Lease:
    """The lease of one command on one engine: started with its first object, ended with its last."""

    def __init__(self, api: GuardedApi, *, enabled: bool = True) -> None:
        self._api = api
        self._lock = threading.Lock()
        self._count = 0
        self.id = uuid.uuid4().hex
        self._holder: str | None = None
        self._connection: Any = None
        # Off over ssh (an attached stdin is one more ssh session for the whole command, and sshd
        # limits them), or when an image's `cat` did not start: the objects then go unleased, and
        # the sweep never removes them (purge does, once they have stopped).
        self._failed = not enabled

    @contextlib.contextmanager
    def held(self, image: str | None) -> Iterator[Mapping[str, str]]:
        """Hold the lease while the block makes and uses an object; yield the labels that object carries.

        `image` (a local image with `cat`) starts the lease if it does not run yet; a network,
        which has no image, is labelled and counted, and the lease starts with the next container.
        """
        with self._lock:
            if self._holder is None and image is not None and not self._failed:
                self._start(image)
            self._count += 1
            labels = {} if self._failed else {LEASE_LABEL: self.id}
        try:
            yield labels
        finally:
            with self._lock:
                self._count -= 1
                if self._count == 0:
                    self._end()

    def _start(self, image: str) -> None:
        name = f"grocker-lease-{uuid.uuid4().hex[:12]}"
        labels = {VERSION_LABEL: __version__, ROLE_LABEL: LEASE, LEASE_LABEL: self.id}
        try:
            self._holder, self._connection = start_attached(self._api, image, name, labels)
        except EngineRefusalError as err:
            # An image without `cat`: the build goes on, its objects unleased (purge removes them).
            logger.debug("no lease from %s: %s", image, err)
            self._failed = True

    def _end(self) -> None:
        if self._holder is None:
            return
        close_attached(self._connection)
        # The engine removes it once `cat` has read the end of its input; removed here too, so that
        # it is gone when the command returns.
        with contextlib.suppress(EngineError):
            self._api.remove_container(self._holder, force=True)
        self._holder = self._connection = None


def start_attached(api: GuardedApi, image: str, name: str, labels: Mapping[str, str]) -> tuple[str, Any]:
    """Create and start a container running `cat` on a stdin attached to this process.

    It ends, and the engine removes it, once that stdin does: when this process closes it, dies,
    or loses its connection. Returns its ID and the attached socket. EngineRefusalError 409 (or
    Podman's 500) when a container of that name exists.
    """
    created = api.create_container(
        image,
        entrypoint=["cat"],
        name=name,
        stdin_open=True,
        labels=dict(labels),
        network_disabled=True,
        host_config=api.create_host_config(auto_remove=True),
    )
    container_id = str(created["Id"])
    try:
        connection = api.attach_socket(container_id, params={"stdin": 1, "stream": 1})
        try:
            api.start(container_id)
        except BaseException:
            close_attached(connection)
            raise
    except BaseException:
        with contextlib.suppress(EngineError):
            api.remove_container(container_id, force=True)
        raise
    return container_id, connection


def close_attached(connection: Any) -> None:
    """Close the socket `start_attached` returned: its container's `cat` reads the end of its input."""
    raw = getattr(connection, "_sock", connection)
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)
    # docker-py keeps the attach request's HTTP response on the socket it returns: closed here, in
    # order, or a process that builds more than once (the library, the tests) leaks a socket per
    # build and an error when the response is collected.
    response = getattr(connection, "_response", None)
    if response is not None:
        with contextlib.suppress(OSError, ValueError):
            response.close()
    with contextlib.suppress(OSError):
        connection.close()
        raw.close()
