"""The wheel server: an nginx container serving the wheel volume, read-only, to the runner build."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from grocker import layout, render
from grocker.chain import images
from grocker.chain.session import Session
from grocker.labels import NETWORK, WHEEL_SERVER
from grocker.log import phase
from grocker.naming import internal_labels
from grocker.protocol import Container

READY_TIMEOUT = 30.0
"""Seconds nginx has to start answering."""
# nginx writes its pid file once its socket listens: a probe that needs no Python, which a
# runtime may install in the compiler only.
_READY_PROBE = ("/bin/sh", "-c", "test -s /tmp/nginx.pid")


@dataclass(frozen=True)
class Served:
    """A running wheel server, and how the runner build reaches it."""

    container: Container
    network: str
    """The build's own internal network: only the wheel server and the runner's steps are on it."""
    hosts: Mapping[str, str] | None
    """/etc/hosts entries for the runner build, on engines whose builds do not use the network's DNS."""


@contextmanager
def serve(session: Session) -> Iterator[Served]:
    """Run the wheel server while the block runs, on a network of this build's; always remove both."""
    config, names = session.config, session.names
    image = images.ensure_child(
        session, WHEEL_SERVER, names.wheel_server, render.wheel_server_context(config, names.root)
    )
    with (
        session.engine.network(internal_labels(config, NETWORK)) as network,
        session.engine.container(
            image,
            role=WHEEL_SERVER,
            labels=internal_labels(config, WHEEL_SERVER),
            volumes={names.volume: (layout.SERVE_MOUNT, "ro")},
            network=network,
            aliases=[render.WHEEL_SERVER_HOST],
        ) as server,
    ):
        with phase("start wheel server"):
            server.start()
            server.wait_until(_READY_PROBE, READY_TIMEOUT, "wheel server")
            # Docker's DNS resolves the alias in build steps; Podman's builds do not use the
            # network's DNS, so the name goes in their /etc/hosts.
            hosts = {render.WHEEL_SERVER_HOST: server.ip_address()} if session.engine.podman else None
        yield Served(server, network, hosts)
