"""The wheel server: an nginx container serving the wheel volume, read-only, to the runner build.

It serves only the files of the build's wheel lock: the volume is shared by every project built
with the same configuration, and a build has no business reading the others' wheels or the
volume's metadata.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from grocker import layout
from grocker.chain import images, render, wheelhouse
from grocker.chain.background import Background, wait_turn
from grocker.chain.session import Session
from grocker.engine.protocol import Container
from grocker.labels import NETWORK, WHEEL_SERVER
from grocker.log import phase
from grocker.naming import internal_labels
from grocker.wheels import WheelLock

READY_TIMEOUT = 30.0
"""Seconds nginx has to start answering."""
# nginx writes its pid file once its socket listens: a probe that needs no Python, which a
# runtime may install in the compiler only.
_READY_PROBE = ("/bin/sh", "-c", "test -s /tmp/nginx.pid")
# Where the image's ENTRYPOINT reads nginx's configuration (resources/wheel-server/Dockerfile.j2):
# each build writes this Grocker's, so that an image baked by an older one serves the same way.
_CONFIG_DIR = "/etc/grocker"
_CONFIG_FILE = "nginx.conf"


@dataclass(frozen=True)
class Served:
    """A running wheel server, and how the runner build reaches it."""

    container: Container
    network: str
    """The build's own internal network: only the wheel server and the runner's steps are on it."""
    hosts: Mapping[str, str] | None
    """/etc/hosts entries for the runner build, on engines whose builds do not use the network's DNS."""
    lock: WheelLock
    """The wheel lock whose files, and only those, the server serves."""


class Starting:
    """A wheel server that starts in the background while the build compiles and checks its wheels.

    It serves nothing until `serve` allows the files of the build's lock. `close` waits for the
    start to end, then removes the server and its network, whatever happened: call it always.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._started = Background(self._start, "grocker-wheel-server", inline=not session.engine.parallel)

    def _start(self, made: contextlib.ExitStack) -> tuple[Container, str, Mapping[str, str] | None]:
        session = self._session
        config, names = session.config, session.names
        image = images.ensure_child(
            session, WHEEL_SERVER, names.wheel_server, render.wheel_server_context(config, names.root)
        )
        if session.request.build_dependencies:  # else there is no resolve to wait for
            wait_turn(session.resolving, session.engine.parallel)
        network = made.enter_context(session.engine.network(internal_labels(config, NETWORK)))
        server = made.enter_context(
            session.engine.container(
                image,
                role=WHEEL_SERVER,
                labels=internal_labels(config, WHEEL_SERVER),
                volumes={names.volume: (layout.SERVE_MOUNT, "ro")},
                network=network,
                aliases=[render.WHEEL_SERVER_HOST],
            )
        )
        server.put_files(_CONFIG_DIR, {_CONFIG_FILE: render.wheel_server_config()}, mode=0o444)
        with phase("start wheel server"):
            server.start()
            server.wait_until(_READY_PROBE, READY_TIMEOUT, "wheel server")
            # Docker's DNS resolves the alias in build steps; where builds do not use the
            # network's DNS (Podman), the name goes in their /etc/hosts.
            hosts = None if session.engine.build_network_dns else {render.WHEEL_SERVER_HOST: server.ip_address()}
        return server, network, hosts

    def serve(self, lock: WheelLock | None) -> Served:
        """Wait for the server, then allow the files of `lock`; raise what its start raised.

        Without `lock` (no compile in this run), the release's lock is read from the volume.
        """
        server, network, hosts = self._started.result()
        if lock is None:
            lock = wheelhouse.read_lock(self._session, server)
        # put_files needs an existing folder: the allowed one is made with its files.
        parent, folder = render.WHEEL_SERVER_ALLOWED.rsplit("/", 1)
        server.put_files(parent, {f"{folder}/{name}": b"" for name in render.served_files(lock)}, mode=0o444)
        return Served(server, network, hosts, lock)

    def close(self) -> None:
        """Wait for the start to end, then remove the server and its network (idempotent)."""
        self._session.resolving.set()  # a start still waiting for its turn goes on now, to be removed
        self._started.close()


@contextlib.contextmanager
def starting(session: Session) -> Iterator[Starting]:
    """Start the build's wheel server in the background; always remove it on the way out."""
    started = Starting(session)
    try:
        yield started
    finally:
        started.close()


@contextlib.contextmanager
def serve(session: Session, lock: WheelLock | None) -> Iterator[Served]:
    """Run the wheel server of `lock` while the block runs, on a network of this build's; always remove both.

    It serves the files of `lock` and answers 404 for anything else. Without `lock` (no compile
    in this run), the release's lock is read from the volume once the server runs.
    """
    with starting(session) as started:
        yield started.serve(lock)
