"""Names of images and volumes, the configuration hash, and labels."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from grocker import labels as keys
from grocker._version import __version__
from grocker.config.pipconf import PipSettings
from grocker.config.release import Release
from grocker.errors import UsageError, cut, shown
from grocker.labels import Role
from grocker.reference import check_length
from grocker.trust import index_domain

if TYPE_CHECKING:
    # Only for annotations: naming reads a configuration, it does not load one.
    from grocker.config import ProjectConfig


@dataclass(frozen=True)
class InternalNames:
    """Names of the objects shared by every build of one configuration (the volume: and index settings)."""

    config_hash: str
    root: str
    compiler: str
    wheel_server: str
    volume: str
    """The wheel volume of the configuration and the index settings' trust domain (grocker.trust)."""
    index_domain: str
    """The digest of the index settings (grocker.trust.index_domain) the volume belongs to."""
    minimal: str = ""
    """The minimal runner's base (built only for `runner: minimal`)."""

    @property
    def candidates(self) -> str:
        """The volume of the wheel volume's public wheels, the resolve's only view of the domain.

        A copy of each wheel an index of these settings offered or that was built from one of
        their sdists (resources/wheelhouse/publish.py); never locks, records, origins or a
        build's local files, which stay in `volume`, that package code never mounts.
        """
        return self.volume.replace("grocker-wheel-cache-", "grocker-wheel-candidates-", 1)

    def runner_base(self, config: ProjectConfig) -> str:
        """The image the runner is built FROM: root, or the minimal base."""
        return self.minimal if config.runner == "minimal" else self.root


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


# Modules whose text goes into the internal images, besides the templates under resources/:
# the layout and the families' commands are rendered in. Each is digested under its file name
# alone, so that moving it between folders changes no image name.
_IMAGE_MODULES = ("layout.py", "config/families.py")
# Resource folders outside the configuration hash: copied into containers when they run, never
# into an internal image (the SBOM collector runs in the gate's container or with `python -c`; the
# runner's install steps and entrypoint check are in the runner's own build), so that changing
# them rebuilds nothing internal; or (`minimal`) making the minimal base alone, whose name has
# their own digest (see `_minimal_digest`), so that changing them rebuilds neither root nor compiler.
_IMAGELESS_RESOURCES = frozenset({"wheelhouse", "abi", "sbom", "minimal", "install", "entrypoint"})
_MINIMAL_RESOURCES = ("minimal",)


@functools.cache
def _resources_digest() -> str:
    """Digest of Grocker's templates and scripts: changing them must give new internal images,
    even within one Grocker version (development builds)."""
    digest = hashlib.sha256()
    package = resources.files("grocker")
    root = package.joinpath("resources")
    for folder in sorted(root.iterdir(), key=lambda item: item.name):
        if folder.is_dir() and folder.name not in _IMAGELESS_RESOURCES:
            for item in sorted(folder.iterdir(), key=lambda item: item.name):
                if item.is_file():
                    digest.update(f"{folder.name}/{item.name}\0".encode() + item.read_bytes())
    for name in _IMAGE_MODULES:
        digest.update(f"{name.rpartition('/')[2]}\0".encode() + package.joinpath(name).read_bytes())
    return digest.hexdigest()


@functools.cache
def _minimal_digest() -> str:
    """Digest of the minimal base's template and script (which decides what it keeps)."""
    digest = hashlib.sha256()
    package = resources.files("grocker")
    for folder in _MINIMAL_RESOURCES:
        for item in sorted(package.joinpath(f"resources/{folder}").iterdir(), key=lambda item: item.name):
            if item.is_file():
                digest.update(f"{folder}/{item.name}\0".encode() + item.read_bytes())
    return digest.hexdigest()


def base_kind(config: ProjectConfig) -> str:
    """What the runner is built FROM, in words: "root image" or "minimal base"."""
    return "minimal base" if config.runner == "minimal" else "root image"


def internal_names(config: ProjectConfig, pip: PipSettings) -> InternalNames:
    """Names of the root, compiler and wheel-server images and of the wheel volume.

    The images are shared by every build of the configuration; the wheel volume only by those
    with the same index settings too (`pip`): its wheels are what those indexes offered.
    """
    digest = config_hash(config)
    domain = index_domain(pip)
    prefix = f"{config.image_prefix}/" if config.image_prefix else ""
    slug = config.runtime.slug
    tag = f"{__version__}-{digest[:16]}"
    return InternalNames(
        config_hash=digest,
        root=f"{prefix}grocker-{slug}-root:{tag}",
        compiler=f"{prefix}grocker-{slug}-compiler:{tag}",
        wheel_server=f"{prefix}grocker-{slug}-wheel-server:{tag}",
        minimal=f"{prefix}grocker-{slug}-minimal:{__version__}-{_minimal_tag(digest)}",
        volume=f"grocker-wheel-cache-{__version__}-{slug}-{digest[:16]}-{domain[:12]}",
        index_domain=domain,
    )


def _minimal_tag(config_digest: str) -> str:
    """The minimal base's part of its tag: the configuration's digest and its own resources'."""
    return hashlib.sha256(f"{config_digest}:{_minimal_digest()}".encode()).hexdigest()[:16]


def default_image_name(release: Release, config: ProjectConfig) -> str:
    """`[<prefix>/]<base name or app name[-extras]>:<version>`, always a valid reference."""
    if release.version is None:
        raise UsageError(
            f"RELEASE {shown(release.text)} names no exact version, so there is no default image name "
            f"(it holds the version). Pin the release ({cut(release.name, 60)}==VERSION) or give the image's "
            "name with -n/--image-name NAME:TAG; the newest version the specifier allows is then built."
        )
    base = config.image_base_name or "-".join((release.name, *release.extras))
    name = f"{_repository(base)}:{_tag(release.version)}"
    name = f"{config.image_prefix}/{name}" if config.image_prefix else name
    check_length(name, "shorten docker_image_prefix or image_base_name, or give -n")
    return name


def runner_labels(release: Release, config: ProjectConfig, created: str) -> dict[str, str]:
    """Labels and OCI annotations of the final image."""
    return {
        keys.VERSION_LABEL: __version__,
        keys.ROLE_LABEL: keys.RUNNER,
        keys.RUNTIME_LABEL: config.runtime.name,
        keys.CONFIG_HASH_LABEL: config_hash(config),
        keys.APP_NAME_LABEL: release.name,
        keys.APP_EXTRAS_LABEL: release.extras_text,
        keys.APP_VERSION_LABEL: release.version or "",
        keys.OCI_TITLE: release.name,
        keys.OCI_VERSION: release.version or "",
        keys.OCI_CREATED: created,
        keys.OCI_BASE_NAME: config.runtime.image,
    }


def internal_labels(config: ProjectConfig, role: Role) -> dict[str, str]:
    """Labels of the internal images, the wheel volume and the containers Grocker runs."""
    return {
        keys.VERSION_LABEL: __version__,
        keys.ROLE_LABEL: role,
        keys.RUNTIME_LABEL: config.runtime.name,
        keys.CONFIG_HASH_LABEL: config_hash(config),
        keys.OCI_BASE_NAME: config.runtime.image,
    }


def _repository(base: str) -> str:
    path = base.lower()
    path = re.sub(r"[^a-z0-9._/-]+", "-", path)
    parts = [re.sub(r"^[._-]+|[._-]+$", "", re.sub(r"[._-]{2,}", "-", part)) for part in path.split("/")]
    parts = [part for part in parts if part]
    if not parts:
        raise UsageError(f"Image base name {shown(base)} has no letters or digits; choose another one.")
    return "/".join(parts)


def _tag(version: str) -> str:
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", version)
    if tag[0] in ".-":
        tag = f"v{tag}"
    return tag[:128]
