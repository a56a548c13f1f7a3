"""Names of images and volumes, the configuration hash, and labels."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from grocker import __version__
from grocker.errors import UsageError
from grocker.release import Release

if TYPE_CHECKING:
    # Only for annotations: config imports this module to check the image prefix.
    from grocker.config import ProjectConfig

LABEL_PREFIX = "grocker"
VERSION_LABEL = "grocker.version"
ROLE_LABEL = "grocker.image.role"

# A Docker reference: [registry[:port]/]path[:tag], path components lower-case.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?)"
_REFERENCE_RE = re.compile(rf"^(?:{_REGISTRY}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?$")
_PREFIX_RE = re.compile(rf"^(?:{_REGISTRY})(?:/{_COMPONENT})*$")


@dataclass(frozen=True)
class InternalNames:
    """Names of the objects shared by every build of one configuration."""

    config_hash: str
    root: str
    compiler: str
    wheel_server: str
    volume: str


def config_hash(config: ProjectConfig) -> str:
    """SHA-256 of everything that changes the root, compiler and wheel-server images.

    Canonical JSON, so the order of keys in the YAML files does not matter; package lists keep
    their order, since it is the install order.
    """
    runtime = config.runtime
    content = {
        "grocker_resources": _resources_digest(),
        "base_image": runtime.image,
        "family": runtime.family,
        "python": runtime.python,
        "run": list(config.all_run_packages),
        "build": list(config.all_build_packages),
        "repositories": [[repo.id, repo.uri, repo.key] for repo in config.repositories],
    }
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()


IMAGELESS_RESOURCES = frozenset({"abi"})


@functools.cache
def _resources_digest() -> str:
    """Digest of Grocker's templates and scripts: changing them must give new internal images,
    even within one Grocker version (development builds)."""
    digest = hashlib.sha256()
    root = resources.files("grocker").joinpath("resources")
    for folder in sorted(root.iterdir(), key=lambda item: item.name):
        # The ABI checker runs in a container and goes into no image: changing it rebuilds nothing.
        if folder.is_dir() and folder.name not in IMAGELESS_RESOURCES:
            for item in sorted(folder.iterdir(), key=lambda item: item.name):
                if item.is_file():
                    digest.update(f"{folder.name}/{item.name}\0".encode() + item.read_bytes())
    return digest.hexdigest()


def internal_names(config: ProjectConfig) -> InternalNames:
    """Names of the root, compiler and wheel-server images and of the wheel volume."""
    digest = config_hash(config)
    prefix = f"{config.image_prefix}/" if config.image_prefix else ""
    slug = config.runtime.slug
    tag = f"{__version__}-{digest[:16]}"
    return InternalNames(
        config_hash=digest,
        root=f"{prefix}grocker-{slug}-root:{tag}",
        compiler=f"{prefix}grocker-{slug}-compiler:{tag}",
        wheel_server=f"{prefix}grocker-{slug}-wheel-server:{tag}",
        volume=f"grocker-wheel-cache-{__version__}-{slug}-{digest[:16]}",
    )


def default_image_name(release: Release, config: ProjectConfig) -> str:
    """`[<prefix>/]<base name or app name[-extras]>:<version>`, always a valid reference."""
    if release.version is None:
        raise UsageError(
            f"RELEASE {release.text!r} names no exact version, so there is no default image name. "
            f"Pin it ({release.name}==VERSION) or name the image with -n NAME:TAG."
        )
    base = config.image_base_name or "-".join((release.name, *release.extras))
    name = f"{_repository(base)}:{_tag(release.version)}"
    return f"{config.image_prefix}/{name}" if config.image_prefix else name


def check_image_name(name: str) -> str:
    """Return `name` with a `:latest` tag if it has none; refuse an invalid reference."""
    if not _REFERENCE_RE.match(name):
        raise UsageError(
            f"Image name {name!r} is not a valid Docker reference: use lower-case "
            "[registry[:port]/]path[:tag], e.g. registry.example.com/team/app:1.0."
        )
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def is_valid_prefix(prefix: str) -> bool:
    """True when `prefix` can start a Docker reference (a registry and/or namespaces)."""
    return bool(_PREFIX_RE.match(prefix))


def is_valid_base_name(base: str) -> bool:
    """True when an image base name keeps at least one letter or digit once normalised."""
    return bool(re.search(r"[A-Za-z0-9]", base))


def check_prefix(prefix: str) -> None:
    """Refuse an image prefix that cannot start a Docker reference."""
    if not is_valid_prefix(prefix):
        raise UsageError(
            f"Image prefix {prefix!r} is not a registry or namespace: use e.g. "
            "registry.example.com, localhost:5000/team or myaccount (lower-case)."
        )


def has_registry(name: str) -> bool:
    """True when the reference names a registry or a namespace, so that it can be pushed."""
    return "/" in name


def runner_labels(release: Release, config: ProjectConfig, created: str) -> dict[str, str]:
    """Labels and OCI annotations of the final image."""
    return {
        VERSION_LABEL: __version__,
        ROLE_LABEL: "runner",
        "grocker.runtime": config.runtime.name,
        "grocker.config.hash": config_hash(config),
        "grocker.app.name": release.name,
        "grocker.app.extras": release.extras_text,
        "grocker.app.version": release.version or "",
        "org.opencontainers.image.title": release.name,
        "org.opencontainers.image.version": release.version or "",
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.base.name": config.runtime.image,
    }


def internal_labels(config: ProjectConfig, role: str) -> dict[str, str]:
    """Labels of the root, compiler and wheel-server images and of the wheel volume."""
    return {
        VERSION_LABEL: __version__,
        ROLE_LABEL: role,
        "grocker.runtime": config.runtime.name,
        "grocker.config.hash": config_hash(config),
        "org.opencontainers.image.base.name": config.runtime.image,
    }


def _repository(base: str) -> str:
    path = base.lower()
    path = re.sub(r"[^a-z0-9._/-]+", "-", path)
    parts = [re.sub(r"^[._-]+|[._-]+$", "", re.sub(r"[._-]{2,}", "-", part)) for part in path.split("/")]
    parts = [part for part in parts if part]
    if not parts:
        raise UsageError(f"Image base name {base!r} has no letters or digits; choose another one.")
    return "/".join(parts)


def _tag(version: str) -> str:
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", version)
    if tag[0] in ".-":
        tag = f"v{tag}"
    return tag[:128]
