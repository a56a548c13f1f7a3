"""What the host and the minimal base's assembler (resources/minimal/assemble.py) exchange.

The assembler runs in stage 1 of the minimal base's build, without Grocker: it spells the same
shape, and tests/unit/test_wire.py checks that it agrees with this one.
"""

from __future__ import annotations

from typing import TypedDict


class MinimalRequest(TypedDict):
    """The assembler's request (request.json in the build context, argv[1])."""

    packages: list[str]
    """The runtime's run packages: kept with their dependencies."""
    python: str
    """The runtime's interpreter command."""
    home: str
    """The home of the user grocker, kept (empty) in the minimal base."""
