"""What the host and the wheelhouse's scripts (resources/wheelhouse) exchange, defined once.

The scripts run in containers of the compiler image with its Python and the standard library
only, so they import nothing of Grocker: each keeps its own copy of the mark it prints and
reads the request's keys named here. tests/unit/test_wire_wheelhouse.py imports each script by path and
checks that it agrees with these shapes. Paths come in the request: a script spells none.
"""

from __future__ import annotations

from typing import Any, TypedDict

REPORT_MARK = "GROCKER-REPORT:"
"""The start of the resolve's one output line: its report (`Report`), as JSON."""
PUBLISH_MARK = "GROCKER-PUBLISH:"
"""The start of the publisher's one output line: its result (`PublishResult`), as JSON."""


class ResolveRequest(TypedDict):
    """The resolve's request (the JSON file it is given)."""

    target: str
    """The requirement, or the path of the local RELEASE file in the container's input."""
    constraint: str | None
    """The path of the constraints file in the container's input, if any."""
    candidates: str
    """Where the candidates volume is mounted (read-only): every wheel in it may be reused."""
    links: str
    """A folder to make, of links to the candidates' wheels: pip's ``--find-links``."""


class ReportItem(TypedDict):
    """One distribution the resolve chose."""

    name: str
    version: str
    filename: str
    in_volume: bool
    """True when pip chose the candidates volume's copy of the file."""
    requested: bool


class Report(TypedDict):
    """The resolve's report."""

    pip: str
    items: list[ReportItem]


class PublishPaths(TypedDict):
    """Where the publisher finds what it writes: the request's ``paths``."""

    wheels: str
    """The wheel volume's mount (read-write)."""
    candidates: str
    """The candidates volume's mount (read-write)."""
    sdists: str
    """Where it leaves the sdists it downloads, for the host to take."""


class PublishResult(TypedDict):
    """The publisher's result."""

    added: list[str]
    reused: list[str]
    warnings: list[str]
    ignored: list[str]
    sdists: list[dict[str, str]]
    wheels: dict[str, str]
    lock: dict[str, Any] | None


def keys(shape: type) -> frozenset[str]:
    """The keys of a TypedDict `shape`, for the tests that hold the scripts to it."""
    return frozenset(shape.__annotations__)
