"""The image-reference grammar: what a Docker image name may be, and its parts.

A leaf module (it imports only grocker.errors): configuration checks a prefix with it, naming
builds names that satisfy it, the CLI checks -n with it, and the engine splits a name into the
repository and tag its API takes.
"""

from __future__ import annotations

import re

from grocker.errors import UsageError, shown

# A Docker reference: [registry[:port]/]path[:tag], path components lower-case.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?)"
# Used with fullmatch (`$` would let a trailing newline through); the tag alphabet is ASCII, as
# in Docker's grammar (`\w` would take any script's letters).
_REFERENCE_RE = re.compile(rf"(?:{_REGISTRY}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?")
_PREFIX_RE = re.compile(rf"(?:{_REGISTRY})(?:/{_COMPONENT})*")
# Docker's limits: 255 characters for the repository (registry and path), 128 for the tag.
MAX_REPOSITORY = 255
MAX_TAG = 128


def check_image_name(name: str) -> str:
    """Return `name` with a `:latest` tag if it has none; refuse an invalid reference."""
    if not _REFERENCE_RE.fullmatch(name):
        raise UsageError(
            f"Image name {shown(name)} is not a valid Docker reference: use lower-case "
            "[registry[:port]/]path[:tag], e.g. registry.example.com/team/app:1.0."
        )
    repository, tag = split_tag(name)
    name = f"{repository}:{tag}"
    check_length(name, "-n/--image-name")
    return name


def check_length(name: str, where: str) -> None:
    """Refuse a reference over Docker's limits (255 for the repository, 128 for the tag)."""
    repository, _colon, tag = name.rpartition(":")
    if len(repository) > MAX_REPOSITORY:
        raise UsageError(
            f"Image name {shown(name)} has a repository of {len(repository)} characters; Docker allows "
            f"{MAX_REPOSITORY}. Give a shorter name ({where})."
        )
    if len(tag) > MAX_TAG:
        raise UsageError(
            f"Image name {shown(name)} has a tag of {len(tag)} characters; Docker allows {MAX_TAG}. "
            f"Give a shorter tag ({where})."
        )


def is_valid_prefix(prefix: str) -> bool:
    """True when `prefix` can start a Docker reference (a registry and/or namespaces)."""
    return bool(_PREFIX_RE.fullmatch(prefix))


def is_valid_base_name(base: str) -> bool:
    """True when an image base name keeps at least one letter or digit once normalised."""
    return bool(re.search(r"[A-Za-z0-9]", base))


def check_prefix(prefix: str) -> None:
    """Refuse an image prefix that cannot start a Docker reference."""
    if not is_valid_prefix(prefix):
        raise UsageError(
            f"Image prefix {shown(prefix)} is not a registry or namespace: use e.g. "
            "registry.example.com, localhost:5000/team or myaccount (lower-case)."
        )


def has_registry(name: str) -> bool:
    """True when the reference names a registry or a namespace, so that it can be pushed."""
    return "/" in name


def split_tag(name: str) -> tuple[str, str]:
    """Split `repo[:tag]` into repository and tag (default `latest`), port numbers aside."""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repository, _, tag = name.rpartition(":")
        return repository, tag
    return name, "latest"
