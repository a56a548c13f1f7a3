"""A TCP proxy on 127.0.0.1 in front of the engine's unix socket, that can cut or stall it.

Grocker reaches it with DOCKER_HOST=tcp://127.0.0.1:PORT. The test decides when the fault
happens (on an event it observes through its own client, not after a guessed delay):

- `cut()`: every open connection is closed, and new ones are closed as soon as they are
  accepted, as when an engine (or the link to it) goes away mid-build;
- `stall()`: connections stay open but nothing goes through any more, in either direction,
  and new ones are accepted and never answered, as with an engine that hangs.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

FORWARD, CUT, STALL = "forward", "cut", "stall"


class FaultProxy:
    """Forwards 127.0.0.1:`port` to the unix socket `target` until told to fail."""

    def __init__(self, target: str, port: int) -> None:
        self.target = target
        self.port = port
        self.mode = FORWARD
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        """The DOCKER_HOST value that reaches the engine through this proxy."""
        return f"tcp://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Close every connection, and every new one at once."""
        with self._lock:
            self.mode = CUT
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def stall(self) -> None:
        """Let nothing through any more; keep the connections open."""
        with self._lock:
            self.mode = STALL

    def close(self) -> None:
        """Stop listening and close everything."""
        self.cut()
        _close(self._listener)
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                mode = self.mode
                if mode == CUT:
                    _close(client)
                    continue
                self._open.append(client)
            if mode == STALL:
                continue  # held open, never answered
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.target)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.append(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                # One side ended: shut the other's writing half, as a TCP proxy does.
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            if self.mode == STALL:
                continue  # swallowed: the other side waits for ever
            try:
                sink.sendall(data)
            except OSError:
                return


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@contextlib.contextmanager
def fault_proxy(port: int, target: str = "/var/run/docker.sock") -> Iterator[FaultProxy]:
    """A proxy in front of `target` for the block; closed on the way out."""
    proxy = FaultProxy(target, port)
    try:
        yield proxy
    finally:
        proxy.close()
