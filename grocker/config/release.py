"""RELEASE: what to build, a pinned requirement or a local wheel or sdist of the application."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from grocker.errors import UsageError, cut, shown

_SDIST_SUFFIXES = (".tar.gz", ".zip")
# What a wheel's file name may hold, as a whole: PEP 427's parts and nothing a shell or a
# Dockerfile reads as syntax (grocker.wheels uses it for every name of a lock; the publisher's
# WHEEL_RE is the same). packaging's parse_wheel_filename accepts more: non-ASCII letters in the
# name, anything but `-` in the tags.
WHEEL_NAME_RE = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._]*[A-Za-z0-9])?-[A-Za-z0-9_.!+]+(?:-[0-9][A-Za-z0-9_.]*)?"
    r"-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+\.whl"
)
# An sdist's file name as the publisher (resources/wheelhouse/publish.py, SDIST_RE) accepts it.
SDIST_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?-[A-Za-z0-9_.!+]+\.(?:tar\.gz|zip)")
# RELEASE longer than this is refused before any parsing: no path or requirement is that long.
MAX_RELEASE_LENGTH = 4096
# A PEP 508 extra name (as packaging reads it); used with fullmatch.
_EXTRA_RE = re.compile(r"[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]")
# A wheel's Python tag: cp313, py3, pp310 ...; the digits are ASCII.
_INTERPRETER_RE = re.compile(r"(?P<impl>[a-z]+)(?P<digits>[0-9]+)")
# `name @ url` and `name[extras] @ url`: a PEP 508 URL requirement, not a local path.
_URL_REQUIREMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*@")


@dataclass(frozen=True)
class Release:
    """The application to build.

    `version` is None for an unpinned requirement (allowed only with an explicit image name);
    then `specifier` holds its version range (`>=8.18,<9`), if any, and the compile step builds
    the newest version it allows. `path` is set when the application comes from a local wheel
    or sdist.
    """

    text: str
    name: str
    extras: tuple[str, ...] = ()
    version: str | None = None
    path: Path | None = None
    specifier: str = ""

    @property
    def extras_text(self) -> str:
        """Extras joined with commas, as in labels and GROCKER_APP_EXTRAS."""
        return ",".join(self.extras)

    @property
    def requirement(self) -> str:
        """The requirement pip resolves for the application (`name[extras]==version`)."""
        extras = f"[{self.extras_text}]" if self.extras else ""
        pin = f"=={self.version}" if self.version else self.specifier
        return f"{self.name}{extras}{pin}"

    def pinned(self, version: str) -> Release:
        """This release at the exact `version` the compile step chose (for labels and results)."""
        return replace(self, version=version, specifier="")

    @property
    def is_wheel(self) -> bool:
        """True when the application is given as a local wheel file."""
        return self.path is not None and self.path.name.endswith(".whl")


def parse_release(text: str, cwd: Path) -> Release:
    """Parse RELEASE as a local package path or a PEP 508 requirement.

    A requirement with one exact version (`==`) gets a default image name; a range
    (`>=8.18,<9`) needs an explicit image name. Markers and URLs are refused because the image is
    built for one application at one version.
    """
    text = text.strip()
    if len(text) > MAX_RELEASE_LENGTH:
        raise UsageError(
            f"RELEASE {shown(text)} is {len(text)} characters long, more than any requirement or path "
            f"({MAX_RELEASE_LENGTH}). Give it as NAME==VERSION or as the path of a wheel or sdist."
        )
    if "\x00" in text or "\n" in text or "\r" in text:
        raise UsageError(
            f"RELEASE {shown(text)} holds a line break or a NUL character. Give it as NAME==VERSION "
            "or as the path of a wheel or sdist."
        )
    if _looks_like_path(text):
        return _parse_path(text, cwd)
    url_error = UsageError(
        f"RELEASE {shown(text)} is a URL requirement, which Grocker does not build. Release the "
        "application to an index, or download it and give the path of the wheel or sdist."
    )
    if "://" in text and not _URL_REQUIREMENT_RE.match(text):
        raise url_error
    try:
        requirement = Requirement(text)
    except InvalidRequirement as err:
        # packaging's message spans lines (it draws a caret); keep its first, to stay one paragraph.
        reason = str(err).splitlines()[0].rstrip()
        raise UsageError(
            f"RELEASE {shown(text)} is not a valid requirement ({reason}). Give it as NAME==VERSION, "
            "e.g. ipython==8.18.1, or as the path of a wheel or sdist."
        ) from err
    if requirement.url:
        raise url_error
    if requirement.marker:
        raise UsageError(
            f"RELEASE {shown(text)} has an environment marker ({requirement.marker}); the image is "
            "built for one runtime, so drop the `; ...` part."
        )
    version = _exact_version(requirement)
    return Release(
        text=text,
        name=canonicalize_name(requirement.name),
        extras=tuple(sorted(canonicalize_name(extra) for extra in requirement.extras)),
        version=version,
        path=None,
        specifier="" if version else str(requirement.specifier),
    )


def _exact_version(requirement: Requirement) -> str | None:
    """The version pinned by a single `==`/`===` (no wildcard), else None (a range or nothing)."""
    specifiers = list(requirement.specifier)
    if len(specifiers) == 1 and specifiers[0].operator in ("==", "===") and "*" not in specifiers[0].version:
        return specifiers[0].version
    return None


def _looks_like_path(text: str) -> bool:
    if _URL_REQUIREMENT_RE.match(text) or "://" in text:
        return False
    path, _extras = split_extras(text)
    return "/" in path or path.endswith((".whl", *_SDIST_SUFFIXES))


def split_extras(text: str) -> tuple[str, str]:
    r"""A path RELEASE and its trailing `[extras]` (without brackets; "" when it has none).

    The extras start at the first `[` after the last `]` before the closing one, the path keeping
    at least one character: the split a lazy `(.+?)(\[[^]]*\])?` would make, in linear time
    (that pattern took seconds on 100,000 `[`).
    """
    if len(text) < 3 or not text.endswith("]"):
        return text, ""
    inner_close = text.rfind("]", 0, len(text) - 1)
    start = text.find("[", max(inner_close + 1, 1), len(text) - 1)
    if start == -1:
        return text, ""
    return text[:start], text[start + 1 : -1]


def _parse_path(text: str, cwd: Path) -> Release:
    path_text, extras_text = split_extras(text)
    names = [e.strip() for e in extras_text.split(",") if e.strip()]
    for extra in names:
        if not _EXTRA_RE.fullmatch(extra):
            raise UsageError(
                f"RELEASE {shown(text)} names the extra {shown(extra)}, which is not a valid extra name "
                "(letters, digits, '.', '_' and '-', starting and ending with a letter or digit). "
                "Give the path as dist/app-1.0-py3-none-any.whl[extra1,extra2]."
            )
    extras = tuple(sorted(canonicalize_name(extra) for extra in names))
    try:
        path = (cwd / Path(path_text).expanduser()).resolve()
        is_file = path.is_file()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop, before Python 3.13
        raise UsageError(
            f"RELEASE {shown(text)} looks like a path, but it cannot be resolved ({cut(str(err), 120)}). Give the "
            "path of a wheel or sdist."
        ) from err
    if not is_file:
        what = "is not a regular file" if path.exists() else "does not exist"
        raise UsageError(
            f"RELEASE {shown(text)} looks like a path, but {cut(str(path))} {what}. Build the package "
            "first (python -m build) or give NAME==VERSION to take it from the index."
        )
    try:
        if path.name.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(path.name)
        elif path.name.endswith(_SDIST_SUFFIXES):
            name, version = parse_sdist_filename(path.name)
        else:
            raise UsageError(
                f"RELEASE {cut(str(path))} is neither a wheel (.whl) nor an sdist (.tar.gz, .zip); "
                "give the file that `python -m build` makes."
            )
    except (InvalidWheelFilename, InvalidSdistFilename) as err:
        raise UsageError(
            f"RELEASE {cut(path.name)} is not a standard package file name ({cut(str(err))}); keep the name "
            "`python -m build` gave it."
        ) from err
    if not (WHEEL_NAME_RE if path.name.endswith(".whl") else SDIST_NAME_RE).fullmatch(path.name):
        # packaging accepts it, but the wheel volume and the runner's scripts take ASCII names only.
        raise UsageError(
            f"RELEASE {shown(path.name)} has characters a package file name does not have (only ASCII "
            "letters, digits and `._-!+` in its parts). Rename it to the name `python -m build` gives."
        )
    if not os.access(path, os.R_OK) or not _readable(path):
        raise UsageError(f"RELEASE {cut(str(path))} cannot be read. Fix its permissions.")
    return Release(text=text, name=str(name), extras=extras, version=str(version), path=path)


def _readable(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            stream.read(1)
    except OSError:
        return False
    return True


def check_wheel_platform(release: Release, python_version: str, family: str = "debian") -> None:
    """Refuse a local wheel that cannot install on the runtime's Linux, libc and Python.

    The libc family is known here (glibc on Debian, musl on Alpine); the architecture is only
    known once the engine answers, so it is checked with the wheels, before the runner build.
    """
    if not release.is_wheel or release.path is None:
        return
    _name, _version, _build, tags = parse_wheel_filename(release.path.name)
    libc = "musllinux" if family == "alpine" else "manylinux"
    other_libc = "manylinux" if family == "alpine" else "musllinux"
    for tag in tags:
        platform_ok = tag.platform == "any" or ("linux" in tag.platform and not tag.platform.startswith(other_libc))
        if platform_ok and _python_ok(tag.interpreter, tag.abi, python_version):
            return
    shown_tags = cut(", ".join(sorted(str(tag) for tag in tags)), 200)
    libc_name = "musl" if family == "alpine" else "glibc"
    raise UsageError(
        f"Wheel {cut(release.path.name)} is built for {shown_tags}, which does not install on the runtime "
        f"(Linux, CPython {python_version}, {libc_name}: {libc} or pure-Python wheels). Give the sdist "
        "instead, or a wheel built for that Python and libc on Linux (or a pure-Python py3-none-any wheel)."
    )


def _python_ok(interpreter: str, abi: str, python_version: str) -> bool:
    digits = python_version.replace(".", "")
    if interpreter in ("cp" + digits, "py" + digits, "py" + python_version.split(".")[0]):
        return True
    match = _INTERPRETER_RE.fullmatch(interpreter)
    # abi3: built for CPython 3.N, installs on every CPython 3.M with M >= N.
    return (
        abi == "abi3"
        and match is not None
        and match.group("impl") == "cp"
        and match.group("digits").startswith("3")
        and len(match.group("digits")) >= 2
        and int(match.group("digits")[1:]) <= int(digits[1:] or "0")
    )
