"""Configuration: packaged defaults, project files and command-line values, merged and validated.

Layers, lowest first: the packaged `resources/grocker.yaml`, each config file in order, then
the command line. Mappings merge deeply (so a project adds a runtime without losing the
built-in ones); any other value, lists included, is replaced by the higher layer. Everything
is checked here, before any engine call, and handed to the core as frozen dataclasses.

The package: files (reading a file defensively), checks (each key's check), runtimes and
families (the runtime entries and their package managers), pipconf (pip's settings for the
compile container), release (the RELEASE argument).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from grocker.config.checks import CLI_SOURCE, PACKAGE_PROBLEM, PACKAGE_RE, RunnerFlavour, check_layer, fail, type_name
from grocker.config.families import FAMILIES, family_of
from grocker.config.files import parse_yaml, read_small_file
from grocker.config.runtimes import Runtime, is_retired, select_runtime
from grocker.errors import ConfigError, UsageError, cut, shown

__all__ = [
    "CLI_SOURCE",
    "DEFAULTS_SOURCE",
    "Layer",
    "ProjectConfig",
    "Repository",
    "RunnerFlavour",
    "describe",
    "load_defaults",
    "load_file",
    "parse_env_options",
    "project_files",
    "resolve",
]

DEFAULTS_SOURCE = "defaults"
PROJECT_FILE = ".grocker.yml"


@dataclass(frozen=True)
class Repository:
    """An extra package repository of the root image."""

    id: str
    uri: str
    key: str


@dataclass(frozen=True)
class ProjectConfig:
    """The merged, validated configuration of one build."""

    runtime: Runtime
    pip_constraint: Path | None = None
    volumes: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    repositories: tuple[Repository, ...] = ()
    run_packages: tuple[str, ...] = ()
    build_packages: tuple[str, ...] = ()
    image_prefix: str | None = None
    image_base_name: str | None = None
    entrypoint_name: str = "grocker-runner"
    sbom: Path | None = None
    runner: RunnerFlavour = "full"
    """`full`: the runner is FROM the root image; `minimal`: FROM the minimal base (no shell)."""
    # Where each top-level value came from, for `-v` and error messages; not part of equality.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)
    warnings: tuple[str, ...] = field(default=(), compare=False, hash=False, repr=False)

    @property
    def all_run_packages(self) -> tuple[str, ...]:
        """System packages of the root image: the runtime's, then the project's."""
        return _unique(self.runtime.run_packages + self.run_packages)

    @property
    def all_build_packages(self) -> tuple[str, ...]:
        """System packages added by the compiler image: the runtime's, then the project's."""
        return _unique(self.runtime.build_packages + self.build_packages)


@dataclass(frozen=True)
class Layer:
    """One configuration source: its name (a path, 'defaults', 'command line') and values."""

    source: str
    values: Mapping[str, Any]


def load_defaults() -> Layer:
    """Read the packaged defaults, the lowest layer."""
    text = resources.files("grocker").joinpath("resources/grocker.yaml").read_text("utf-8")
    return Layer(DEFAULTS_SOURCE, yaml.safe_load(text))


def project_files(config_files: Sequence[Path], cwd: Path) -> list[Path]:
    """The files to read: the `-c` files in order, else `./.grocker.yml` when present.

    A `.grocker.yml` that is there but is not a file (a directory, a broken symlink) is read
    anyway, so that load_file says what is wrong with it instead of silently ignoring it.
    """
    if config_files:
        return list(config_files)
    default = cwd / PROJECT_FILE
    return [default] if os.path.lexists(default) else []


def load_file(path: Path) -> Layer:
    """Read one project file into a layer, checking its syntax and its keys."""
    data = read_small_file(path, f"Config file {cut(str(path))}", "Check the path given to -c/--config.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"Config file {path} is not UTF-8 text (byte {err.start}). Save it as UTF-8.") from err
    values = parse_yaml(text, path)
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"Config file {path} must hold a mapping of keys (runtime:, dependencies:, ...), not a {type_name(values)}."
        )
    values = _absolute_constraint(values, path)
    return Layer(str(path), values)


def resolve(layers: Sequence[Layer]) -> ProjectConfig:
    """Check each layer, merge them in order and build the frozen configuration."""
    warnings: list[str] = []
    checked = [Layer(layer.source, check_layer(layer.source, layer.values, warnings)) for layer in layers]
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in checked:
        merged = _deep_merge(merged, layer.values)
        for key, value in layer.values.items():
            if isinstance(value, Mapping) and key in sources:
                sources[key] = f"{sources[key]} + {layer.source}"
            else:
                sources[key] = layer.source
    return _build(merged, sources, warnings)


def _build(merged: Mapping[str, Any], sources: Mapping[str, str], warnings: list[str]) -> ProjectConfig:
    runtime_source = sources.get("runtime", DEFAULTS_SOURCE)
    runtimes_source = sources.get("runtimes", DEFAULTS_SOURCE)
    table = merged.get("runtimes") or {}
    try:
        runtime = select_runtime(merged["runtime"], table, runtime_source, runtimes_source)
    except ConfigError as err:
        entry = table.get(merged["runtime"])
        if runtime_source == CLI_SOURCE and (entry is None or is_retired(entry)):
            raise UsageError(err.message) from err
        raise
    if runtime.deprecated:
        warnings.append(f"Runtime {runtime.name} is deprecated: {runtime.deprecated}")
    for package in runtime.run_packages + runtime.build_packages:
        if not PACKAGE_RE.fullmatch(package):
            raise ConfigError(
                f"runtimes.{runtime.name} ({runtimes_source}) has {shown(package)}, {PACKAGE_PROBLEM}. "
                "Fix it in that file."
            )
    constraint = merged.get("pip_constraint")
    constraint_path = Path(constraint) if constraint else None
    if constraint_path is not None:
        _check_constraint_file(constraint_path, sources.get("pip_constraint", DEFAULTS_SOURCE))
    deps = merged.get("dependencies") or {}
    repositories = tuple(
        Repository(repo_id, repo["uri"].strip(), repo["key"].strip() + "\n")
        for repo_id, repo in sorted((merged.get("repositories") or {}).items())
    )
    repositories_source = sources.get("repositories", DEFAULTS_SOURCE)
    # Keys and lines differ by family: checked once the runtime is known.
    family = family_of(runtime.family)
    for repo in repositories:
        if not re.fullmatch(family.uri_pattern, repo.uri):
            fail(
                repositories_source,
                f"repositories.{repo.id}.uri",
                f"must be {family.uri_help} on the {family.name} runtime {runtime.name}; got {shown(repo.uri)}",
            )
        if family.key_marker not in repo.key:
            fail(
                repositories_source,
                f"repositories.{repo.id}.key",
                f"must contain `{family.key_marker}` on the {family.name} runtime {runtime.name}: "
                f"give {family.key_help}",
            )
    runner: RunnerFlavour = "minimal" if merged.get("runner") == "minimal" else "full"
    if runner == "minimal" and not family.minimal_runner:
        supported = ", ".join(
            name
            for name, entry in sorted(table.items())
            if isinstance(entry, Mapping) and not is_retired(entry) and _family_has_minimal(entry.get("family"))
        )
        raise ConfigError(
            f"runner: minimal ({sources.get('runner', DEFAULTS_SOURCE)}) is not available on the "
            f"{family.name} runtime {runtime.name}: its minimal base is made from Debian's package "
            f"database. Use a runtime that supports it ({supported}), or keep `runner: full`."
        )
    return ProjectConfig(
        runtime=runtime,
        pip_constraint=constraint_path,
        volumes=_unique(tuple(merged.get("volumes") or ())),
        ports=_unique(tuple(str(port) for port in merged.get("ports") or ())),
        env=tuple((name, _env_text(value)) for name, value in (merged.get("env") or {}).items()),
        repositories=repositories,
        run_packages=tuple(deps.get("run") or ()),
        build_packages=tuple(deps.get("build") or ()),
        image_prefix=(merged.get("docker_image_prefix") or None),
        image_base_name=(merged.get("image_base_name") or None),
        entrypoint_name=merged.get("entrypoint_name") or "grocker-runner",
        sbom=Path(merged["sbom"]) if merged.get("sbom") else None,
        runner=runner,
        sources=dict(sources),
        warnings=tuple(warnings),
    )


def _family_has_minimal(name: object) -> bool:
    family = FAMILIES.get(name) if isinstance(name, str) else None
    return family is not None and family.minimal_runner


def _check_constraint_file(path: Path, source: str) -> None:
    try:
        missing = not path.exists() and not path.is_symlink()
    except (OSError, ValueError) as err:  # a name too long, a NUL character
        problem = err.strerror if isinstance(err, OSError) and err.strerror else cut(str(err), 80)
        fail(source, "pip_constraint", f"names {shown(str(path))}, which cannot be used ({problem})")
    if missing:
        fail(
            source,
            "pip_constraint",
            f"names {cut(str(path))}, which does not exist (relative paths are resolved "
            "against the directory of the config file that names them)",
        )
    try:
        read_small_file(path, f"{cut(str(path))}", "Give the path of a pip constraints file.")
    except ConfigError as err:
        fail(source, "pip_constraint", f"is not usable: {err.message.rstrip('.')}")


def parse_env_options(values: Sequence[str]) -> dict[str, str]:
    """Turn repeated `--env KEY=VALUE` options into a mapping (the value may contain `=`)."""
    env: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(
                f"--env {shown(item)} has no `=`: give it as --env NAME=VALUE (an empty value is --env NAME=)."
            )
        env[name] = value
    return env


def describe(config: ProjectConfig) -> list[tuple[str, str, str]]:
    """Rows of (key, value, source) for printing the resolved configuration."""
    rows = [
        ("runtime", f"{config.runtime.name} ({config.runtime.image})", "runtime"),
        ("pip_constraint", str(config.pip_constraint or ""), "pip_constraint"),
        ("volumes", ", ".join(config.volumes), "volumes"),
        ("ports", ", ".join(config.ports), "ports"),
        ("env", ", ".join(f"{k}={v}" for k, v in config.env), "env"),
        ("repositories", ", ".join(r.id for r in config.repositories), "repositories"),
        ("dependencies.run", ", ".join(config.all_run_packages), "dependencies"),
        ("dependencies.build", ", ".join(config.all_build_packages), "dependencies"),
        ("docker_image_prefix", config.image_prefix or "", "docker_image_prefix"),
        ("image_base_name", config.image_base_name or "", "image_base_name"),
        ("entrypoint_name", config.entrypoint_name, "entrypoint_name"),
        ("sbom", str(config.sbom or ""), "sbom"),
        ("runner", config.runner, "runner"),
    ]
    return [(key, value, config.sources.get(source, DEFAULTS_SOURCE)) for key, value, source in rows]


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _absolute_constraint(values: dict[str, Any], config_path: Path) -> dict[str, Any]:
    """Make a file's paths (`pip_constraint`, `sbom`) absolute, refusing any outside the file's directory.

    The constraint file is sent into the compile container, and the SBOM is written: a shared
    `.grocker.yml` must neither send `~/.netrc` there nor overwrite a file elsewhere (`../../.netrc`,
    an absolute path, or a symlink pointing out). A path given on the command line is the user's
    own choice and is not limited.
    """
    source = str(config_path)
    for key, option in (("pip_constraint", "--pip-constraint"), ("sbom", "--sbom")):
        value = values.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        try:
            base = config_path.parent.resolve()
            resolved = (base / Path(value).expanduser()).resolve()
        except (OSError, RuntimeError, ValueError) as err:
            # RuntimeError: a symlink loop (before Python 3.13); ValueError: a NUL character.
            problem = err.strerror if isinstance(err, OSError) and err.strerror else cut(str(err), 80)
            fail(source, key, f"names {shown(value)}, which cannot be resolved ({problem})")
        if not resolved.is_relative_to(base):
            fail(
                source,
                key,
                f"names {shown(value)}, which is outside the directory of this file ({cut(str(base))}); "
                f"a config file may only name a file beside it or below it. Move the file there, "
                f"or give it on the command line with {option}",
            )
        values = dict(values, **{key: str(resolved)})
    return values


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unique(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
