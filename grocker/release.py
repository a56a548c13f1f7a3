"""RELEASE: what to build, a pinned requirement or a local wheel or sdist of the application."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from grocker.errors import UsageError

_SDIST_SUFFIXES = (".tar.gz", ".zip")
_PATH_EXTRAS_RE = re.compile(r"^(?P<path>.+?)(\[(?P<extras>[^\]]*)\])?$")
# `name @ url` and `name[extras] @ url`: a PEP 508 URL requirement, not a local path.
_URL_REQUIREMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*@")


@dataclass(frozen=True)
class Release:
    """The application to build.

    `version` is None for an unpinned requirement (allowed only with an explicit image name);
    `path` is set when the application comes from a local wheel or sdist.
    """

    text: str
    name: str
    extras: tuple[str, ...] = ()
    version: str | None = None
    path: Path | None = None

    @property
    def extras_text(self) -> str:
        """Extras joined with commas, as in labels and GROCKER_APP_EXTRAS."""
        return ",".join(self.extras)

    @property
    def requirement(self) -> str:
        """The requirement pip resolves for the application (`name[extras]==version`)."""
        extras = f"[{self.extras_text}]" if self.extras else ""
        pin = f"=={self.version}" if self.version else ""
        return f"{self.name}{extras}{pin}"

    @property
    def is_wheel(self) -> bool:
        """True when the application is given as a local wheel file."""
        return self.path is not None and self.path.name.endswith(".whl")


def parse_release(text: str, cwd: Path) -> Release:
    """Parse RELEASE as a local package path or a PEP 508 requirement.

    A requirement must name one exact version (`==`) to get a default image name; markers and
    URLs are refused because the image is built for one application at one version.
    """
    text = text.strip()
    if _looks_like_path(text):
        return _parse_path(text, cwd)
    url_error = UsageError(
        f"RELEASE {text!r} is a URL requirement, which Grocker does not build. Release the "
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
            f"RELEASE {text!r} is not a valid requirement ({reason}). Give it as NAME==VERSION, "
            "e.g. ipython==8.18.1, or as the path of a wheel or sdist."
        ) from err
    if requirement.url:
        raise url_error
    if requirement.marker:
        raise UsageError(
            f"RELEASE {text!r} has an environment marker ({requirement.marker}); the image is "
            "built for one runtime, so drop the `; ...` part."
        )
    return Release(
        text=text,
        name=canonicalize_name(requirement.name),
        extras=tuple(sorted(canonicalize_name(extra) for extra in requirement.extras)),
        version=_exact_version(requirement),
        path=None,
    )


def _exact_version(requirement: Requirement) -> str | None:
    specifiers = list(requirement.specifier)
    if len(specifiers) == 1 and specifiers[0].operator in ("==", "===") and "*" not in specifiers[0].version:
        return specifiers[0].version
    if specifiers:
        raise UsageError(
            f"RELEASE {str(requirement)!r} must pin one exact version with `==` "
            f"(e.g. {requirement.name}==1.2.3); ranges and wildcards would build a different "
            "application on every run."
        )
    return None


def _looks_like_path(text: str) -> bool:
    if _URL_REQUIREMENT_RE.match(text) or "://" in text:
        return False
    base = _PATH_EXTRAS_RE.match(text)
    path = base.group("path") if base else text
    return "/" in path or path.endswith((".whl", *_SDIST_SUFFIXES))


def _parse_path(text: str, cwd: Path) -> Release:
    match = _PATH_EXTRAS_RE.match(text)
    assert match is not None  # the pattern matches any non-empty text
    path = (cwd / Path(match.group("path")).expanduser()).resolve()
    extras_text = match.group("extras") or ""
    extras = tuple(sorted(canonicalize_name(e.strip()) for e in extras_text.split(",") if e.strip()))
    if not path.is_file():
        raise UsageError(
            f"RELEASE {text!r} looks like a path, but {path} does not exist. Build the package "
            "first (python -m build) or give NAME==VERSION to take it from the index."
        )
    try:
        if path.name.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(path.name)
        elif path.name.endswith(_SDIST_SUFFIXES):
            name, version = parse_sdist_filename(path.name)
        else:
            raise UsageError(
                f"RELEASE {path} is neither a wheel (.whl) nor an sdist (.tar.gz, .zip); "
                "give the file that `python -m build` makes."
            )
    except (InvalidWheelFilename, InvalidSdistFilename) as err:
        raise UsageError(
            f"RELEASE {path.name} is not a standard package file name ({err}); keep the name `python -m build` gave it."
        ) from err
    return Release(text=text, name=str(name), extras=extras, version=str(version), path=path)


def check_wheel_platform(release: Release, python_version: str) -> None:
    """Refuse a local wheel that cannot install on the runtime's Linux and Python."""
    if not release.is_wheel or release.path is None:
        return
    _name, _version, _build, tags = parse_wheel_filename(release.path.name)
    digits = python_version.replace(".", "")
    accepted = {"cp" + digits, "py" + digits, "py" + python_version.split(".")[0]}
    for tag in tags:
        platform_ok = tag.platform == "any" or "linux" in tag.platform
        python_ok = tag.interpreter in accepted or (
            tag.abi == "abi3" and tag.interpreter.startswith("cp3") and int(tag.interpreter[2:]) <= int(digits)
        )
        if platform_ok and python_ok:
            return
    shown = ", ".join(sorted(str(tag) for tag in tags))
    raise UsageError(
        f"Wheel {release.path.name} is built for {shown}, which does not install on the runtime "
        f"(Linux, CPython {python_version}). Give the sdist instead, or a wheel built for that "
        "Python on Linux (or a pure-Python py3-none-any wheel)."
    )
