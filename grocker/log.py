"""One logger setup: steps and warnings on stderr, colour only on a terminal without NO_COLOR."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TextIO

LOGGER_NAME = "grocker"
logger = logging.getLogger(LOGGER_NAME)

# Control characters (C0 but tab and newline, DEL, C1) and the bidirectional overrides: build
# output relayed from the engine must not move the cursor, clear the screen, set the terminal's
# title or reorder what is shown. Grocker's own colours are added after this.
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

_COLOURS = {
    logging.DEBUG: "\x1b[2m",
    logging.INFO: "\x1b[1;36m",
    logging.WARNING: "\x1b[1;33m",
    logging.ERROR: "\x1b[1;31m",
}


class Mask:
    """What every line Grocker prints passes through: secrets hidden, control characters shown as `?`.

    Installed once, by `setup`, and held by the command line for what it prints around the
    logger (tracebacks, log tails). `hide` hides what is always hidden (URL credentials); the
    secrets of the pip settings are added (`learn`) once they are read, which is after the
    first lines are logged.
    """

    def __init__(self, hide: Callable[[str, Sequence[str]], str] = lambda text, secrets: text) -> None:
        self._hide = hide
        self._secrets: tuple[str, ...] = ()

    def learn(self, secrets: Sequence[str]) -> None:
        """Hide `secrets` too in every line from now on."""
        self._secrets = (*self._secrets, *secrets)

    def __call__(self, text: str) -> str:
        """`text` as it may be printed."""
        return printable(self._hide(text, self._secrets))


class _Formatter(logging.Formatter):
    def __init__(self, colour: bool, mask: Mask) -> None:
        super().__init__("%(message)s")
        self.colour = colour
        self.mask = mask

    def format(self, record: logging.LogRecord) -> str:
        text = self.mask(super().format(record))
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        if self.colour and record.levelno in _COLOURS:
            return f"{_COLOURS[record.levelno]}{text}\x1b[0m"
        return text


def setup(verbosity: int, env: Mapping[str, str], mask: Mask, stream: TextIO | None = None) -> None:
    """Configure the `grocker` logger: -q warnings only, default steps, -v engine output.

    Every line goes through `mask`. A second setup (the CLI run again in one process, as the
    tests do) replaces the first one's handler.
    """
    stream = stream or sys.stderr
    colour = stream.isatty() and "NO_COLOR" not in env and env.get("TERM") != "dumb"
    for handler in list(logger.handlers):
        if isinstance(handler.formatter, _Formatter):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter(colour, mask))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO)


def printable(text: str) -> str:
    """`text` with each control character (tab and newline kept) shown as `?`."""
    return _CONTROL_RE.sub("?", text)


@contextmanager
def phase(title: str) -> Iterator[Callable[[str], None]]:
    """Log one line for a phase with its elapsed time; the callback adds a short outcome."""
    start = time.monotonic()
    outcome: list[str] = []
    logger.debug("%s ...", title)
    try:
        yield outcome.append
    except BaseException:
        logger.info("%s: failed after %.1fs", title, time.monotonic() - start)
        raise
    detail = f" ({', '.join(outcome)})" if outcome else ""
    logger.info("%s: %.1fs%s", title, time.monotonic() - start, detail)


def counted(count: int, noun: str) -> str:
    """`count` and `noun`, in the plural unless the count is one: "1 wheel", "0 wheels", "2 wheels"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def tail(lines: Sequence[str], count: int = 25) -> str:
    """The last `count` non-empty lines, for error messages."""
    kept = [line.rstrip() for line in lines if line.strip()]
    return "\n".join(kept[-count:])
