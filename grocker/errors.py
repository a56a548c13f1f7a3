"""One exception hierarchy; each class carries the exit code the CLI returns for it."""

from __future__ import annotations

import re

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class GrockerError(Exception):
    """Base of every error Grocker reports to its user.

    The message is one paragraph: what failed, why, and what to do. ``details`` holds
    optional extra lines (such as the tail of a build log) shown below it.
    """

    exit_code = 1

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class UsageError(GrockerError):
    """The command line is wrong (bad RELEASE, bad option value)."""

    exit_code = 2


class ConfigError(GrockerError):
    """A configuration file or value is invalid."""

    exit_code = 3


class EngineError(GrockerError):
    """The Docker engine cannot be reached, denies access, or is too old."""

    exit_code = 4


class BuildError(GrockerError):
    """An image build or the wheel compilation failed."""

    exit_code = 5


class PushError(GrockerError):
    """The registry rejected a push."""

    exit_code = 6


class InterruptError(GrockerError):
    """The build was interrupted by a signal; containers were removed."""

    def __init__(self, signal_name: str, exit_code: int) -> None:
        super().__init__(f"Interrupted by {signal_name}; Grocker removed its containers.")
        self.exit_code = exit_code


def shown(value: object, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters with an ellipsis, for quoting a value in a message.

    A hostile or mistaken value (a 300 MB YAML alias expansion, a pasted file) must not turn a
    one-paragraph error into megabytes of output.
    """
    return cut(repr(value), limit)


def cut(text: str, limit: int = 160) -> str:
    """`text` cut to `limit` characters with an ellipsis (paths and other unquoted values).

    Control characters are shown escaped (`\\n`), so that a value cannot break the message's
    single paragraph.
    """
    text = _CONTROL_RE.sub(lambda match: repr(match.group(0))[1:-1], text)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
