"""The wheel server: an nginx container serving the wheel volume, read-only, to the runner build."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from grocker import layout, render
from grocker.chain import images
from grocker.chain.session import Session
from grocker.labels import WHEEL_SERVER
from grocker.log import phase
from grocker.naming import internal_labels
from grocker.protocol import Container

READY_TIMEOUT = 30.0
"""Seconds nginx has to start answering."""
# nginx writes its pid file once its socket listens: a probe that needs no Python, which a
# runtime may install in the compiler only.
_READY_PROBE = ("/bin/sh", "-c", "test -s /tmp/nginx.pid")


@contextmanager
def serve(session: Session) -> Iterator[tuple[Container, str]]:
    """Run the wheel server while the block runs: yield its container and address; always remove it."""
    config, names = session.config, session.names
    image = images.ensure_child(
        session, WHEEL_SERVER, names.wheel_server, render.wheel_server_context(config, names.root)
    )
    with session.engine.container(
        image,
        role=WHEEL_SERVER,
        labels=internal_labels(config, WHEEL_SERVER),
        volumes={names.volume: (layout.SERVE_MOUNT, "ro")},
    ) as server:
        with phase("start wheel server"):
            server.start()
            server.wait_until(_READY_PROBE, READY_TIMEOUT, "wheel server")
            address = server.ip_address()
        yield server, address
