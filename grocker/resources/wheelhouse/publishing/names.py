"""File names the publisher accepts, and URLs as they may be recorded."""

from __future__ import annotations

import re
import sys
import urllib.parse

WHEEL_RE = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._]*[A-Za-z0-9])?)-(?P<version>[A-Za-z0-9_.!+]+)"
    r"(?:-(?P<build>[0-9][A-Za-z0-9_.]*))?-(?P<python>[A-Za-z0-9_.]+)-(?P<abi>[A-Za-z0-9_.]+)"
    r"-(?P<platform>[A-Za-z0-9_.]+)\.whl"
)
# The compiled installer: the pip wheel's name, then the interpreter it is compiled for.
COMPILED_RE = re.compile(r"pip-[A-Za-z0-9_.!+]+-py3-none-any\.[a-z]+[0-9]+\.zip")
# pypa/installer compiled for this Python (wheel_installer): the same as grocker.wheels.WHEEL_INSTALLER_RE.
INSTALLER_RE = re.compile(r"installer-[0-9][A-Za-z0-9_.!+]*\.[a-z]+[0-9]+\.zip")
SDIST_RE = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)-(?P<version>[A-Za-z0-9_.!+]+)\.(?:tar\.gz|zip)"
)
# A path segment that looks like a token (grocker/pipconf.py's rule, kept the same here: this
# code has the standard library only): 16 or more of these, with letters and digits both.
PATH_TOKEN_RE = re.compile(r"[A-Za-z0-9_.~+=-]{16,}")


def normalize(name: str) -> str:
    """A project's name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def same_version(left: str, right: str) -> bool:
    """True when two spellings of a version in file names are the same version."""
    return re.sub(r"[-_.]+", ".", left.lower()) == re.sub(r"[-_.]+", ".", right.lower())


def wheel_of(filename: str, name: str, version: str) -> bool:
    """True when `filename` is, as a whole, a wheel name of project `name` at `version`."""
    match = WHEEL_RE.fullmatch(filename)
    return bool(match and normalize(match["name"]) == normalize(name) and same_version(match["version"], version))


def sdist_of(filename: str, name: str, version: str) -> bool:
    """True when `filename` is, as a whole, an sdist name of project `name` at `version`."""
    match = SDIST_RE.fullmatch(filename)
    if not match:
        return False
    # A hyphen may belong to the name or the version: the version is what follows the last one.
    return normalize(match["name"]) == normalize(name) and same_version(match["version"], version)


def publishable(filename: str) -> bool:
    """True for a name the publisher may write: a wheel, the compiled pip, the compiled installer."""
    return any(pattern.fullmatch(filename) for pattern in (WHEEL_RE, COMPILED_RE, INSTALLER_RE))


def interpreter_tag() -> str:
    """This Python's name in the file names of what is compiled for it, e.g. cpython313."""
    return f"{sys.implementation.name}{sys.version_info[0]}{sys.version_info[1]}"


def public_url(url: str, index: str | None = None) -> str:
    """`url` without its credentials, query, fragment or path tokens: what may be written in an SBOM.

    The same rule as grocker.pipconf.public_url (tests/unit/test_origins.py holds them together):
    the token-like segments of the index URL (`index`, else `url` itself) wherever they stand in
    `url`, Gemfury's first segment when another follows, Cloudsmith's first segment unless
    `public` or `basic`: each becomes `****`. A file's own name and hash folders are kept.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    tokens = {segment for segment in urllib.parse.urlsplit(index or url).path.split("/") if is_token(segment)}
    segments = parts.path.split("/")
    first = segments[1] if len(segments) > 1 else ""
    name = (parts.hostname or "").rstrip(".")
    known = bool(first) and (
        ((name == "fury.io" or name.endswith(".fury.io")) and len(segments) > 2 and bool(segments[2]))
        or (name == "dl.cloudsmith.io" and first.lower() not in ("public", "basic"))
    )
    cleaned = [
        "****" if segment in tokens or (position == 1 and known) else segment
        for position, segment in enumerate(segments)
    ]
    return urllib.parse.urlunsplit((parts.scheme, host, "/".join(cleaned), "", ""))


def is_token(segment: str) -> bool:
    """True for a path segment that looks like a token."""
    return (
        PATH_TOKEN_RE.fullmatch(segment) is not None
        and any(char.isdigit() for char in segment)
        and any(char.isalpha() for char in segment)
    )
