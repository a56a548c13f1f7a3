"""Role names and label keys of everything Grocker creates on an engine, defined once.

Purge finds Grocker's objects by these labels, so their values never change between versions:
renaming one here would leave older objects behind.
"""

from __future__ import annotations

from typing import Final, Literal

Role = Literal[
    "root",
    "minimal-base",
    "compiler",
    "wheel-server",
    "runner",
    "wheel",
    "wheel-candidates",
    "outbox",
    "compile",
    "publish",
    "build-sdist",
    "check",
    "lock",
    "network",
    "abi-cache",
    "abi-check",
    "abi-suggest",
    "sbom",
    "lease",
]
"""The value of ROLE_LABEL: an image's, the wheel volume's, or a container's that Grocker runs."""

ImageRole = Literal["root", "minimal-base", "compiler", "wheel-server", "runner"]

ROOT: Final = "root"
MINIMAL_BASE: Final = "minimal-base"
"""The base of a minimal runner: the root image's interpreter, libraries and run packages, FROM scratch."""
COMPILER: Final = "compiler"
WHEEL_SERVER: Final = "wheel-server"
RUNNER: Final = "runner"
WHEEL_VOLUME: Final = "wheel"
CANDIDATES: Final = "wheel-candidates"
"""The volume of the wheel volume's public wheels: the only files of it the resolve mounts."""
OUTBOX: Final = "outbox"
"""The volume one isolated sdist build writes its wheel into: garbage once that build is over."""
COMPILE: Final = "compile"
"""The container that resolves the release against the index (package code may run there; volume read-only)."""
PUBLISH: Final = "publish"
"""The container that writes the wheel volume: it runs no package code and publishes only checked files."""
BUILD_SDIST: Final = "build-sdist"
"""The container that builds one sdist into its outbox, with no access to the wheel volume."""
CHECK: Final = "check"
"""The container that checks the runner's entrypoint."""
ABI_CACHE: Final = "abi-cache"
"""The volume of the ABI gate's bytecode, one per configuration."""
ABI_CHECK: Final = "abi-check"
"""The container of the root image that checks the lock's wheels (ABI gate)."""
ABI_SUGGEST: Final = "abi-suggest"
"""The container of the compiler image that says which package provides a missing library."""
SBOM: Final = "sbom"
"""The container of the runner image that reads its package database and its wheels' metadata."""
NETWORK: Final = "network"
"""The internal network one build's wheel server and runner steps share."""
LEASE: Final = "lease"
"""The container whose life is a command's lease on the engine (grocker.engine.lease)."""
MUTEX: Final = "lock"
"""The container that holds an engine-wide mutex (its value predates the name: kept for purge)."""

INTERNAL_IMAGE_ROLES: Final = frozenset({ROOT, MINIMAL_BASE, COMPILER, WHEEL_SERVER})

VERSION_LABEL: Final = "grocker.version"
ROLE_LABEL: Final = "grocker.image.role"
RUNTIME_LABEL: Final = "grocker.runtime"
CONFIG_HASH_LABEL: Final = "grocker.config.hash"
APP_NAME_LABEL: Final = "grocker.app.name"
APP_EXTRAS_LABEL: Final = "grocker.app.extras"
APP_VERSION_LABEL: Final = "grocker.app.version"
BASE_ID_LABEL: Final = "grocker.base.id"
"""On root: the ID of the base image it was built FROM, so that it is rebuilt when the base changes."""
ROOT_ID_LABEL: Final = "grocker.root.id"
"""On compiler and wheel-server: the ID of the root image they were built FROM."""
INPUTS_LABEL: Final = "grocker.inputs"
"""On a runner: a digest of what it was built from (Grocker's version, the runner's configuration,
the release's wheel lock, the root image's ID), so that a rebuild from the same inputs is skipped."""
ABI_CHECKED_LABEL: Final = "grocker.abi.checked"
"""On a runner: a digest of the root image's ID and of the wheels the ABI gate passed for it (those
with ELF files or tags of one interpreter), so that a later build with the same ones skips the gate."""
LEASE_LABEL: Final = "grocker.lease"
"""On the containers and networks a command makes, and on its lease container: the lease's token."""
MUTEX_OWNER_LABEL: Final = "grocker.lock.owner"
"""On a mutex container: a token of the build holding it."""

OCI_TITLE: Final = "org.opencontainers.image.title"
OCI_VERSION: Final = "org.opencontainers.image.version"
OCI_CREATED: Final = "org.opencontainers.image.created"
OCI_BASE_NAME: Final = "org.opencontainers.image.base.name"
