"""What the host and the ABI checker (resources/abi/check.py) exchange.

The checker runs in a container without Grocker: it spells the same mark and shapes, and
tests/unit/test_wire.py checks that they agree with these.
"""

from __future__ import annotations

from typing import Any, TypedDict

from grocker.wire.sbom import CollectFacts, CollectRequest

RESULT_MARK = "GROCKER-ABI:"
"""The start of the checker's one line of result, JSON after it."""


class AbiFolders(TypedDict):
    """Where the checker finds the wheel volume's files, in its container."""

    wheel_dir: str
    """Where the wheel volume is mounted."""
    lock_dir: str
    """Where the volume's locks are."""


class AbiRequest(AbiFolders, total=False):
    """The checker's request (a JSON file, argv[1]): `wheels` or `lock`, and the folders."""

    wheels: list[str]
    """The wheel file names to check."""
    lock: str
    """Without `wheels`: the lock key whose wheels to check (a lock of the volume)."""
    sbom: CollectRequest
    """The SBOM collector's request, when the build asks for an SBOM."""


class AbiReport(TypedDict, total=False):
    """The checker's answer, after RESULT_MARK."""

    lock_missing: bool
    runtime: dict[str, Any]
    findings: list[dict[str, Any]]
    checked: dict[str, int]
    sbom: CollectFacts
