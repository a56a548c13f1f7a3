"""Runtimes: a base image and its interpreter, with the system packages around it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from grocker.config.families import FAMILIES
from grocker.errors import ConfigError

# `<distribution>/<python version>`, in the alphabet of a Docker path component, since the name
# (with / as -) is part of the internal image and volume names.
_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*/[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_PYTHON_VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+$")
# The interpreter reaches shell scripts: a command name or an absolute path, nothing else.
_PYTHON_RE = re.compile(r"[A-Za-z0-9_.+-]+|(?:/[A-Za-z0-9_.+-]+)+")
# A Docker reference, as a FROM line takes it: [registry[:port]/]path[:tag][@digest].
_IMAGE_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)


@dataclass(frozen=True)
class Runtime:
    """One entry of the runtimes table, validated."""

    name: str
    image: str
    family: str
    """A key of grocker.config.families.FAMILIES."""
    python: str
    python_version: str
    run_packages: tuple[str, ...]
    build_packages: tuple[str, ...]
    deprecated: str | None = None

    @property
    def slug(self) -> str:
        """The name as it appears in image and volume names (`trixie/3.13` -> `trixie-3.13`)."""
        return self.name.replace("/", "-")


def select_runtime(name: str, table: Mapping[str, object], where: str, definitions: str | None = None) -> Runtime:
    """Return the runtime called `name` from the merged `runtimes` table.

    `where` says where the name was chosen and `definitions` where the table comes from (both
    for messages). Raises ConfigError for an unknown or retired name, listing what can be used
    instead, and for an invalid definition.
    """
    definitions = definitions or where
    known = sorted(key for key, entry in table.items() if not is_retired(entry))
    entry = table.get(name)
    if entry is None:
        raise ConfigError(
            f"Unknown runtime {name!r} ({where}). Known runtimes: {', '.join(known)}. "
            "Pick one of them, or define your own under `runtimes:` in .grocker.yml."
        )
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"runtimes.{name} ({definitions}) must be a mapping of image, family, python, ...; got {entry!r}."
        )
    if is_retired(entry):
        replacement = entry["retired"]
        raise ConfigError(
            f"Runtime {name!r} ({where}) is retired: its distribution and Python no longer receive "
            f"security updates. Use {replacement!r} instead (`-r {replacement}` or "
            f"`runtime: {replacement}` in .grocker.yml)."
        )
    return _parse_runtime(name, entry, definitions)


def is_retired(entry: object) -> bool:
    """True for a runtimes-table entry marked `retired: <replacement>`."""
    return isinstance(entry, Mapping) and bool(entry.get("retired"))


def _parse_runtime(name: str, entry: Mapping[str, object], where: str) -> Runtime:
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"Runtime name {name!r} ({where}) must be `<distribution>/<python version>` in lower-case "
            "letters, digits, '.', '_' and '-', e.g. `trixie/3.13`: it becomes part of image names."
        )

    def text(key: str, default: str | None = None) -> str:
        value = entry.get(key, default)
        if not isinstance(value, str) or not value:
            # YAML reads `python_version: 3.10` as the number 3.1: the quotes are what is missing.
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            hint = ', which YAML read as a number: put it in quotes, e.g. "3.10"' if is_number else ""
            raise ConfigError(f"runtimes.{name}.{key} ({where}) must be a non-empty string, got {value!r}{hint}.")
        return value

    family = text("family", "debian")
    if family not in FAMILIES:
        raise ConfigError(f"runtimes.{name}.family ({where}) must be one of {', '.join(FAMILIES)}, got {family!r}.")
    python = text("python", "python3")
    if not _PYTHON_RE.fullmatch(python):
        raise ConfigError(
            f"runtimes.{name}.python ({where}) must be the interpreter's command name or absolute path, "
            f"e.g. python3 or /usr/local/bin/python3; got {python!r}."
        )
    image = text("image")
    if not _IMAGE_RE.fullmatch(image):
        raise ConfigError(
            f"runtimes.{name}.image ({where}) must be a Docker image reference, e.g. debian:trixie or "
            f"registry.example.com/base/python:3.13; got {image!r}."
        )
    deps = entry.get("dependencies") or {}
    if not isinstance(deps, Mapping):
        raise ConfigError(f"runtimes.{name}.dependencies ({where}) must be a mapping with run and build lists.")
    deprecated = entry.get("deprecated")
    python_version = text("python_version", name.rpartition("/")[2])
    if not _PYTHON_VERSION_RE.match(python_version):
        raise ConfigError(
            f"runtimes.{name}.python_version ({where}) must be the interpreter's MAJOR.MINOR "
            f'version, e.g. "3.13"; got {python_version!r}.'
        )
    return Runtime(
        name=name,
        image=image,
        family=family,
        python=python,
        python_version=python_version,
        run_packages=_packages(deps, "run", f"runtimes.{name}", where),
        build_packages=_packages(deps, "build", f"runtimes.{name}", where),
        deprecated=str(deprecated) if deprecated else None,
    )


def _packages(deps: Mapping[str, object], kind: str, path: str, where: str) -> tuple[str, ...]:
    value = deps.get(kind) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{path}.dependencies.{kind} ({where}) must be a list of package names.")
    return tuple(value)
