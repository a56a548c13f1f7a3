"""What the wheelhouse's containers report, read and checked by the host: the resolve's report,
the publisher's result, a wheel lock's names, the publisher's settings, advice on a failed compile.

Everything here is pure: it reads lines and files that untrusted or trusted containers printed or
wrote (grocker.chain.wheelhouse runs them) and refuses what does not match.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)

from grocker.config.pipconf import PipSettings
from grocker.errors import BuildError
from grocker.log import tail
from grocker.wheels import (
    COMPILED_INSTALLER_RE,
    SHA256_RE,
    WHEEL_INSTALLER_RE,
    WHEEL_NAME_RE,
    WheelLock,
)
from grocker.wire.wheelhouse import PUBLISH_MARK, REPORT_MARK

SDIST_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?-[A-Za-z0-9_.!+]+\.(?:tar\.gz|zip)")
_PROJECT_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_VERSION_RE = re.compile(r"[A-Za-z0-9_.!+-]+")


@dataclass(frozen=True)
class ReportItem:
    """One distribution the resolve step chose: project, version, file, and whether it is in the volume."""

    name: str
    version: str
    filename: str
    in_volume: bool

    @property
    def is_wheel(self) -> bool:
        """True for a wheel, False for an sdist."""
        return self.filename.endswith(".whl")

    def as_json(self) -> dict[str, str]:
        """The item as the publisher reads it."""
        return {"name": self.name, "version": self.version, "filename": self.filename}


@dataclass(frozen=True)
class PublishResult:
    """What one publisher run did, and the sdists it downloaded (name, version, file, content)."""

    added: tuple[str, ...]
    reused: tuple[str, ...]
    wheels: dict[str, str]
    lock: Mapping[str, Any] | None
    sdists: tuple[tuple[ReportItem, bytes], ...] = ()
    warnings: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()


@dataclass
class Totals:
    """The files the publisher's runs of one compile added to the volume and reused."""

    added: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)

    def add(self, result: PublishResult) -> None:
        self.added += result.added
        self.reused += result.reused

    def of_release(self, lock: WheelLock) -> tuple[list[str], list[str]]:
        """The added and the reused among the release's wheels (its lock's application and
        dependencies), each once, as the sources line and the summary count them: not the pip
        wheel nor the installers compiled from it, which the publisher reports too."""
        files = {wheel.file for wheel in (lock.application, *lock.dependencies)}
        added = [name for name in dict.fromkeys(self.added) if name in files]
        return added, [name for name in dict.fromkeys(self.reused) if name in files]


def is_wheel_of(filename: str, name: str, version: str) -> bool:
    """True when `filename`, as a whole, is a safe wheel name of project `name` at `version`."""
    if not WHEEL_NAME_RE.fullmatch(filename):
        return False
    try:
        project, wheel_version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return False
    return project == canonicalize_name(name) and canonicalize_version(wheel_version) == canonicalize_version(version)


def is_sdist_of(filename: str, name: str, version: str) -> bool:
    """True when `filename`, as a whole, is a safe sdist name of project `name` at `version`."""
    if not SDIST_NAME_RE.fullmatch(filename):
        return False
    try:
        project, sdist_version = parse_sdist_filename(filename)
    except InvalidSdistFilename:
        return False
    return project == canonicalize_name(name) and canonicalize_version(sdist_version) == canonicalize_version(version)


def check_wheel_name(filename: str) -> str:
    """Return `filename` if it is a safe wheel file name (whole-value match), else fail the build."""
    if not WHEEL_NAME_RE.fullmatch(filename):
        raise BuildError(
            f"The wheel lock names the file {filename!r}, which is not a wheel file name. The wheel "
            "volume may have been tampered with: remove it (`grocker purge -a`) and build again."
        )
    return filename


def check_lock(lock: WheelLock, application: str) -> WheelLock:
    """Fail the build unless every file of the lock is a safe wheel name, the application's its own."""
    for wheel in (lock.application, *lock.dependencies, lock.installer):
        check_wheel_name(wheel.file)
        if not SHA256_RE.fullmatch(wheel.sha256):
            raise BuildError(
                f"The wheel lock gives {wheel.file} the SHA-256 {wheel.sha256!r}, which is not one. Remove "
                "the wheel volume (`grocker purge -a`) and build again."
            )
    if parse_wheel_filename(lock.application.file)[0] != canonicalize_name(application):
        raise BuildError(
            f"The wheel lock names {lock.application.file} as the application {application}. Remove the "
            "wheel volume (`grocker purge -a`) and build again."
        )
    if parse_wheel_filename(lock.installer.file)[0] != "pip":
        raise BuildError(f"The wheel lock names {lock.installer.file} as the installer, not a pip wheel.")
    compiled = lock.installer_compiled
    if compiled is not None and not (
        COMPILED_INSTALLER_RE.fullmatch(compiled.file)
        and compiled.file.startswith(lock.installer.file.removesuffix(".whl") + ".")
        and SHA256_RE.fullmatch(compiled.sha256)
    ):
        raise BuildError(
            f"The wheel lock names {compiled.file!r} (SHA-256 {compiled.sha256!r}) as the compiled form of "
            f"{lock.installer.file}, which it is not. Remove the wheel volume (`grocker purge -a`) and build again."
        )
    tool = lock.wheel_installer
    if tool is not None and not (WHEEL_INSTALLER_RE.fullmatch(tool.file) and SHA256_RE.fullmatch(tool.sha256)):
        raise BuildError(
            f"The wheel lock names {tool.file!r} (SHA-256 {tool.sha256!r}) as the runner's wheel installer, "
            "which is not one. Remove the wheel volume (`grocker purge -a`) and build again."
        )
    return lock


def parse_report(lines: Sequence[str]) -> tuple[ReportItem, ...]:
    """The resolve step's choices, from its marked output line; every file name checked.

    The resolve step runs package code, so its line is untrusted input: anything that is not a
    distribution file of the project and version it names fails the build.
    """
    data = _marked(lines, REPORT_MARK)
    if data is None:
        raise BuildError(
            "The resolve step printed no report. Run the build again with -v to see pip's output.",
            details=tail(lines),
        )
    items = []
    try:
        for entry in data["items"]:
            name, version, filename = str(entry["name"]), str(entry["version"]), str(entry["filename"])
            valid = _PROJECT_RE.fullmatch(name) and _VERSION_RE.fullmatch(version)
            if not valid or not (is_wheel_of(filename, name, version) or is_sdist_of(filename, name, version)):
                raise BuildError(
                    f"The resolve step chose the file {filename!r} for {name!r} {version!r}, which is not a "
                    "wheel or sdist of that project and version. A package may be tampering with the "
                    "build; check the dependencies of the release."
                )
            items.append(ReportItem(name, version, filename, bool(entry["in_volume"])))
    except (KeyError, TypeError) as err:
        raise BuildError(f"The resolve step's report is malformed ({err}). Run the build again with -v.") from err
    return tuple(items)


def parse_publish(lines: Sequence[str]) -> dict[str, Any] | None:
    """The publisher's result line, or None when it printed none."""
    return _marked(lines, PUBLISH_MARK)


def _marked(lines: Sequence[str], mark: str) -> dict[str, Any] | None:
    for line in reversed(lines):
        if line.startswith(mark):
            try:
                data = json.loads(line[len(mark) :])
            except json.JSONDecodeError:
                return None
            return data if isinstance(data, dict) else None
    return None


def publisher_settings(pip: PipSettings, cert: str | None, client_cert: str | None) -> dict[str, Any]:
    """Where the publisher looks files up: the indexes of the pip settings, credentials included."""
    indexes = [pip.index_url or "https://pypi.org/simple/", *pip.extra_index_urls]
    return {
        "indexes": indexes,
        "find_links": [link for link in pip.find_links if re.match(r"https?://", link)],
        "trusted_hosts": list(pip.trusted_hosts),
        "timeout": float(pip.timeout) if pip.timeout else 15.0,
        "cert": cert,
        "client_cert": client_cert,
    }


def compile_advice(lines: Sequence[str], pip: PipSettings) -> str:
    """What to do about a failed resolve or build, from what pip said."""
    missing = [line.split(" for ", 1)[1].strip() for line in lines if "No matching distribution found for " in line]
    if missing:
        where = ", ".join(pip.sources) or "pip's defaults"
        return (
            f"pip found no distribution of {missing[-1]} on the indexes it was given. Check that this "
            f"version is released there and that the pip settings (from {where}; -v shows them) "
            "name that index, with its credentials."
        )
    return (
        "If a C extension misses a header or library ('fatal error: foo.h: No such file', "
        "'library not found'), add its -dev package to dependencies.build and its runtime "
        "library to dependencies.run in .grocker.yml."
    )
