"""Engine objects made in a thread of their own while the build goes on, and always removed.

The wheel server starts while the wheels are compiled, and the publisher's container while the
resolve runs: each is made by a function that enters what it creates (containers, networks) in
an ExitStack, which `close` unwinds once that function has ended, whatever happened.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


TURN_TIMEOUT = 10.0
"""Seconds a container started in the background waits for its turn at most (see `wait_turn`)."""


def wait_turn(turn: threading.Event, parallel: bool) -> None:
    """In a background thread, wait until `turn` is set: the build's own waiting comes first.

    On 2 cores, the resolve's container started at the same time as the publisher's and the wheel
    server's took 0.2 to 0.4 s longer to answer, and the build waits for the resolve, not for
    them (they are needed after it). Inline (one engine call at a time), there is nothing to wait for.
    """
    if parallel:
        turn.wait(TURN_TIMEOUT)


class Background(Generic[T]):
    """What `make` returns, made in the background; `close` waits for it, then removes what it made."""

    def __init__(self, make: Callable[[contextlib.ExitStack], T], name: str, *, inline: bool = False) -> None:
        """Start making it; `inline` makes it here and now (an engine that takes one call at a time:
        the callers pass `not engine.parallel`, the engine's own statement of it)."""
        self._made = contextlib.ExitStack()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._future: concurrent.futures.Future[T]
        self._inline = inline
        if not self._inline:
            self._future = self._pool.submit(self._make, make)
        else:
            self._future = concurrent.futures.Future()
            try:
                self._future.set_result(self._make(make))
            except Exception as err:  # raised by `result`, as the thread's would be
                self._future.set_exception(err)

    def _make(self, make: Callable[[contextlib.ExitStack], T]) -> T:
        with contextlib.ExitStack() as made:
            value = make(made)
            # Kept for `close`: removed once the build is done with it.
            self._made.push(made.pop_all())
        return value

    def result(self) -> T:
        """Wait for it; raise what making it raised."""
        return self._future.result()

    def release(self) -> None:
        """Start removing what was made, in the background thread; `close` waits for the removal."""
        if self._inline:
            self._made.close()
        else:
            self._pool.submit(self._made.close)

    def close(self) -> None:
        """Wait for the making to end, then remove what it made (idempotent)."""
        self._pool.shutdown(wait=True)
        self._made.close()


@contextlib.contextmanager
def background(
    make: Callable[[contextlib.ExitStack], T], name: str, *, inline: bool = False
) -> Iterator[Background[T]]:
    """Make something in the background while the block runs; always remove it on the way out."""
    made = Background(make, name, inline=inline)
    try:
        yield made
    finally:
        made.close()
