"""Runtimes: a base image and its interpreter, with the system packages around it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from grocker.errors import ConfigError

Family = Literal["debian", "alpine"]
FAMILIES: tuple[Family, ...] = ("debian", "alpine")


@dataclass(frozen=True)
class Runtime:
    """One entry of the runtimes table, validated."""

    name: str
    image: str
    family: Family
    python: str
    python_version: str
    run_packages: tuple[str, ...]
    build_packages: tuple[str, ...]
    deprecated: str | None = None

    @property
    def slug(self) -> str:
        """The name as it appears in image and volume names (`trixie/3.13` -> `trixie-3.13`)."""
        return self.name.replace("/", "-")


def select_runtime(name: str, table: Mapping[str, object], where: str) -> Runtime:
    """Return the runtime called `name` from the merged `runtimes` table.

    Raises ConfigError for an unknown or retired name, listing what can be used instead.
    """
    known = sorted(key for key, entry in table.items() if not _is_retired(entry))
    entry = table.get(name)
    if entry is None:
        raise ConfigError(
            f"Unknown runtime {name!r} ({where}). Known runtimes: {', '.join(known)}. "
            "Pick one of them, or define your own under `runtimes:` in .grocker.yml."
        )
    if not isinstance(entry, Mapping):
        raise ConfigError(f"runtimes.{name} ({where}) must be a mapping of image, family, python, ...")
    if _is_retired(entry):
        replacement = entry["retired"]
        raise ConfigError(
            f"Runtime {name!r} is retired: its distribution and Python no longer receive "
            f"security updates. Use {replacement!r} instead (`-r {replacement}` or "
            f"`runtime: {replacement}` in .grocker.yml)."
        )
    return _parse_runtime(name, entry, where)


def _is_retired(entry: object) -> bool:
    return isinstance(entry, Mapping) and bool(entry.get("retired"))


def _parse_runtime(name: str, entry: Mapping[str, object], where: str) -> Runtime:
    def text(key: str, default: str | None = None) -> str:
        value = entry.get(key, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(
                f"runtimes.{name}.{key} ({where}) must be a non-empty string, got {value!r}."
            )
        return value

    family = text("family", "debian")
    if family not in FAMILIES:
        raise ConfigError(
            f"runtimes.{name}.family ({where}) must be one of {', '.join(FAMILIES)}, got {family!r}."
        )
    deps = entry.get("dependencies") or {}
    if not isinstance(deps, Mapping):
        raise ConfigError(f"runtimes.{name}.dependencies ({where}) must be a mapping with run and build lists.")
    deprecated = entry.get("deprecated")
    return Runtime(
        name=name,
        image=text("image"),
        family=cast(Family, family),
        python=text("python", "python3"),
        python_version=str(entry.get("python_version") or name.rpartition("/")[2]),
        run_packages=_packages(deps, "run", f"runtimes.{name}", where),
        build_packages=_packages(deps, "build", f"runtimes.{name}", where),
        deprecated=str(deprecated) if deprecated else None,
    )


def _packages(deps: Mapping[str, object], kind: str, path: str, where: str) -> tuple[str, ...]:
    value = deps.get(kind) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{path}.dependencies.{kind} ({where}) must be a list of package names.")
    return tuple(value)
