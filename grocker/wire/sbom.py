"""What the host and the SBOM collector (resources/sbom/collect.py) exchange.

The collector runs in a container without Grocker: it spells the same shapes, and
tests/unit/test_wire.py checks that they agree with these.
"""

from __future__ import annotations

from typing import Any, TypedDict

from grocker import layout


class CollectRequest(TypedDict):
    """The collector's request (argv[1] as JSON, or the `sbom` of the ABI checker's request)."""

    lock: str
    """The lock key: with no `files`, the lock of that name in `lock_dir` is read and returned."""
    files: list[str] | None
    """The wheel file names to read, or None for the lock's application and dependencies."""
    wheel_dir: str
    """Where the wheel volume is mounted in the container."""
    lock_dir: str
    """Where the volume's locks are, in the container."""


class CollectFacts(TypedDict, total=False):
    """The collector's answer: one line of JSON."""

    os: dict[str, str]
    packages: list[dict[str, str]]
    wheels: dict[str, dict[str, Any]]
    lock: dict[str, Any]


def collect_request(lock: str, files: list[str] | None) -> CollectRequest:
    """The collector's request for the lock `lock` (or its `files`), the wheel volume mounted at COMPILE_MOUNT."""
    return {
        "lock": lock,
        "files": files,
        "wheel_dir": layout.COMPILE_MOUNT,
        "lock_dir": f"{layout.COMPILE_MOUNT}/{layout.LOCKS_DIR}",
    }
