"""The wheel lock: which wheels of the volume make up one release, written by the compile step.

Not to be confused with the engine mutex (DockerEngine.mutex) that serialises image builds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grocker.config import release as release_module
from grocker.config.release import Release
from grocker.errors import BuildError

# What a wheel's file name may hold, as a whole: PEP 427's parts and nothing a shell or a
# Dockerfile reads as syntax. Every name of a lock must match before it is used.
# Defined with RELEASE's parsing, which refuses a local file whose name would not pass it.
WHEEL_NAME_RE = release_module.WHEEL_NAME_RE
# The compiled installer (resources/wheelhouse/publish.py): the pip wheel's name without .whl,
# then the interpreter its bytecode is for, e.g. pip-25.1.1-py3-none-any.cpython313.zip.
COMPILED_INSTALLER_RE = re.compile(r"pip-[A-Za-z0-9_.!+]+-py3-none-any\.[a-z]+[0-9]+\.zip")
# pypa/installer from Grocker's own installation, compiled by the publisher for the runtime's
# Python (resources/wheelhouse/publish.py): installer-VERSION.INTERPRETER.zip, e.g.
# installer-1.1.0.cpython313.zip.
WHEEL_INSTALLER_RE = re.compile(r"installer-[0-9][A-Za-z0-9_.!+]*\.[a-z]+[0-9]+\.zip")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
LOCKED_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


@dataclass(frozen=True)
class Origin:
    """Where a wheel of the volume came from, as the compile step recorded it.

    `kind` is "index" (downloaded: `url` is the file's and `index` the project page's, both
    without credentials), "built" (compiled here from an sdist), "file" (the local file given
    as RELEASE) or "unknown" (a wheel published before Grocker recorded origins). `compiler` is
    the ID of the compiler image that built a "built" wheel.
    """

    kind: str = "unknown"
    url: str | None = None
    index: str | None = None
    compiler: str | None = None


@dataclass(frozen=True)
class WheelFile:
    """One file of the volume (a wheel, or the compiled installer), its SHA-256 and where it came from."""

    file: str
    sha256: str
    origin: Origin = Origin()
    elf: bool | None = None
    """Whether the wheel holds an ELF file (the publisher looks at every member's first bytes);
    None in a lock written before the publisher recorded it."""


@dataclass(frozen=True)
class WheelLock:
    """The application's wheel, its dependencies' wheels and the pip wheel that installs them."""

    application: WheelFile
    dependencies: tuple[WheelFile, ...]
    installer: WheelFile
    installer_compiled: WheelFile | None = None
    """The pip wheel with its bytecode for the runtime's Python; None in a lock written before
    the publisher made it."""
    wheel_installer: WheelFile | None = None
    """pypa/installer, compiled for the runtime's Python, which the runner's steps install the
    wheels with; None in a lock written before the publisher made it (the steps then run pip)."""
    added: tuple[str, ...] = ()
    reused: tuple[str, ...] = ()
    locked: str | None = None
    """When the publisher wrote the lock (UTC, RFC 3339), if it recorded it."""

    @property
    def runner_installer(self) -> WheelFile:
        """What the runner's steps install the wheels with: pypa/installer when the lock has it,
        else pip, compiled when the lock has it so."""
        return self.wheel_installer or self.installer_compiled or self.installer

    @property
    def app_version(self) -> str:
        """The application's version, read from its wheel's file name."""
        return self.application.file.split("-")[1]


def lock_key(release: Release, constraint: Path | None, domain: str) -> str:
    """Name of the lock of `release` in the volume: what was asked, with what constraints, from where.

    `domain` is the digest of the index settings (grocker.trust.index_domain): a project that
    moves to another index resolves again, even in a volume that holds a lock of the old one.
    """
    digest = hashlib.sha256()
    digest.update(release.requirement.encode("utf-8"))
    digest.update(b"\0domain\0" + domain.encode("ascii"))
    if release.path is not None:
        digest.update(b"\0file\0" + _file_digest(release.path).encode("ascii"))
    if constraint is not None:
        digest.update(b"\0constraint\0" + constraint.read_bytes())
    return f"{release.name}-{digest.hexdigest()[:24]}"


def parse_lock(data: Mapping[str, Any]) -> WheelLock:
    """Build a WheelLock from the compile script's JSON, refusing anything malformed."""
    try:
        return WheelLock(
            application=_wheel_file(data["application"]),
            dependencies=tuple(_wheel_file(item) for item in data["dependencies"]),
            installer=_wheel_file(data["installer"]),
            installer_compiled=_wheel_file(data["installer_compiled"]) if data.get("installer_compiled") else None,
            wheel_installer=_wheel_file(data["wheel_installer"]) if data.get("wheel_installer") else None,
            added=tuple(data.get("added", ())),
            reused=tuple(data.get("reused", ())),
            locked=_locked(data.get("locked")),
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise BuildError(
            f"The wheel lock written by the compile step is malformed ({err}). Run the build "
            "again with --build-dependencies to rewrite it."
        ) from err


def _locked(value: object) -> str | None:
    # Shown in the summary line: only a plain UTC time is taken from the volume.
    if isinstance(value, str) and LOCKED_RE.fullmatch(value):
        return value
    return None


def _wheel_file(item: Mapping[str, Any]) -> WheelFile:
    origin = item.get("origin") or {}
    return WheelFile(
        file=item["file"],
        sha256=item["sha256"],
        elf=item["elf"] if isinstance(item.get("elf"), bool) else None,
        origin=Origin(
            kind=origin.get("kind", "unknown"),
            url=origin.get("url"),
            index=origin.get("index"),
            compiler=origin.get("compiler"),
        ),
    )


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
