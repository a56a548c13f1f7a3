"""Configuration: packaged defaults, project files and command-line values, merged and validated.

Layers, lowest first: the packaged `resources/grocker.yaml`, each config file in order, then
the command line. Mappings merge deeply (so a project adds a runtime without losing the
built-in ones); any other value, lists included, is replaced by the higher layer. Everything
is checked here, before any engine call, and handed to the core as frozen dataclasses.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from grocker.errors import ConfigError, UsageError
from grocker.naming import is_valid_base_name, is_valid_prefix
from grocker.runtimes import Runtime, is_retired, select_runtime

CLI_SOURCE = "command line"
DEFAULTS_SOURCE = "defaults"
PROJECT_FILE = ".grocker.yml"

# Keys a project may set, with the type the packaged defaults give them.
PROJECT_KEYS = (
    "runtime",
    "pip_constraint",
    "volumes",
    "ports",
    "env",
    "repositories",
    "dependencies",
    "docker_image_prefix",
    "image_base_name",
    "entrypoint_name",
    "sbom",
)
KNOWN_KEYS = (*PROJECT_KEYS, "runtimes")
DEPRECATED_KEYS = {"envs": "env"}

_PACKAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._:~=<>@-]*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PORT_RE = re.compile(r"^(\d{1,5})(/(tcp|udp|sctp))?$")
_ENTRYPOINT_RE = re.compile(r"^[^\s\"'\\]+$")


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
    """The files to read: the `-c` files in order, else `./.grocker.yml` when present."""
    if config_files:
        return list(config_files)
    default = cwd / PROJECT_FILE
    return [default] if default.is_file() else []


def load_file(path: Path) -> Layer:
    """Read one project file into a layer, checking its syntax and its keys."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"Config file {path} does not exist. Check the path given to -c/--config.") from err
    except OSError as err:
        raise ConfigError(f"Config file {path} cannot be read: {err.strerror}.") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"Config file {path} is not UTF-8 text (byte {err.start}). Save it as UTF-8.") from err
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        # The parser notices a fault where it stops, often lines after the cause (an unclosed `[`).
        context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
        if context and start and mark and start.line != mark.line:
            problem += f" ({context} started at line {start.line + 1}, column {start.column + 1})"
        raise ConfigError(f"Config file {where} is not valid YAML: {problem}. Fix the syntax at that place.") from err
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"Config file {path} must hold a mapping of keys (runtime:, dependencies:, ...), "
            f"not a {_type_name(values)}."
        )
    values = _absolute_constraint(values, path.parent)
    return Layer(str(path), values)


def resolve(layers: Sequence[Layer]) -> ProjectConfig:
    """Check each layer, merge them in order and build the frozen configuration."""
    warnings: list[str] = []
    checked = [_check_layer(layer, warnings) for layer in layers]
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


def _check_layer(layer: Layer, warnings: list[str]) -> Layer:
    values = dict(layer.values)
    for old, new in DEPRECATED_KEYS.items():
        if old in values:
            if new in values:
                _fail(layer.source, old, f"is the deprecated spelling of `{new}`; keep only `{new}`")
            warnings.append(f"{layer.source}: `{old}` is deprecated, rename it to `{new}`.")
            values[new] = values.pop(old)
    for key in values:
        if key not in KNOWN_KEYS:
            close = difflib.get_close_matches(str(key), KNOWN_KEYS, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else f" Known keys: {', '.join(PROJECT_KEYS)}."
            _fail(layer.source, str(key), f"is not a Grocker setting.{hint}")
    for key, value in values.items():
        _check_value(layer.source, key, value)
    return Layer(layer.source, values)


def _check_value(source: str, key: str, value: Any) -> None:
    if value is None and key in ("pip_constraint", "docker_image_prefix", "image_base_name", "sbom"):
        return
    if key in ("runtime", "entrypoint_name", "pip_constraint", "docker_image_prefix", "image_base_name", "sbom"):
        if not isinstance(value, str) or not value.strip():
            _fail(source, key, f"must be a non-empty string, got {_show(value)}")
        if key == "entrypoint_name" and not _ENTRYPOINT_RE.match(value):
            _fail(source, key, f"must be a command name or path without spaces or quotes, got {value!r}")
        if key == "docker_image_prefix" and not is_valid_prefix(value):
            _fail(
                source,
                key,
                f"must be a registry and/or namespace in lower-case, e.g. registry.example.com, "
                f"localhost:5000/team or myaccount; got {value!r}",
            )
        if key == "image_base_name" and not is_valid_base_name(value):
            _fail(source, key, f"must contain letters or digits, got {value!r}")
    elif key == "volumes":
        _check_list(source, key, value, str)
        for item in value:
            if not item.startswith("/"):
                _fail(source, key, f"entries must be absolute container paths, got {item!r}")
    elif key == "ports":
        _check_list(source, key, value, (str, int))
        for item in value:
            _check_port(source, key, item)
    elif key == "env":
        _check_env(source, value)
    elif key == "repositories":
        _check_repositories(source, value)
    elif key == "dependencies":
        _check_dependencies(source, value)
    elif key == "runtimes" and not isinstance(value, dict):
        _fail(source, key, f"must be a mapping of runtime name to its fields, got {_show(value)}")


def _check_list(source: str, key: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, list):
        _fail(source, key, f"must be a list, got {_show(value)}")
    for item in value:
        if not isinstance(item, kind) or isinstance(item, bool):
            _fail(source, key, f"entries must be {_kind_name(kind)}, got {_show(item)}")


def _check_port(source: str, key: str, port: str | int) -> None:
    match = _PORT_RE.match(str(port))
    if not match or not 1 <= int(match.group(1)) <= 65535:
        _fail(source, key, f"entries must be port numbers 1-65535, optionally /tcp or /udp, got {port!r}")


def _check_env(source: str, value: Any) -> None:
    if not isinstance(value, dict):
        _fail(source, "env", f"must be a mapping of NAME: value, got {_show(value)}")
    for name, item in value.items():
        if not isinstance(name, str) or not _ENV_NAME_RE.match(name):
            _fail(source, "env", f"names must be letters, digits and _, not starting with a digit; got {name!r}")
        if isinstance(item, (dict, list)) or item is None:
            _fail(source, f"env.{name}", f"must be a string or a number, got {_show(item)}")
        if "\n" in str(item) or "\r" in str(item):
            # A Dockerfile ENV value cannot hold a line break.
            _fail(source, f"env.{name}", "must be a single line")


def _check_repositories(source: str, value: Any) -> None:
    if not isinstance(value, dict):
        _fail(source, "repositories", f"must be a mapping of id: {{uri, key}}, got {_show(value)}")
    for repo_id, repo in value.items():
        path = f"repositories.{repo_id}"
        if not isinstance(repo_id, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", repo_id):
            _fail(source, "repositories", f"ids must be letters, digits, '.', '_' and '-', got {repo_id!r}")
        if not isinstance(repo, dict):
            _fail(source, path, f"must be a mapping with `uri` and `key`, got {_show(repo)}")
        for sub in repo:
            if sub not in ("uri", "key"):
                _fail(source, f"{path}.{sub}", "is not a repository field (only `uri` and `key` are)")
        for sub in ("uri", "key"):
            if not isinstance(repo.get(sub), str) or not repo[sub].strip():
                what = (
                    "the source line, e.g. `deb http://host/debian trixie main`"
                    if sub == "uri"
                    else ("the repository's ASCII-armored PGP public key")
                )
                _fail(source, f"{path}.{sub}", f"is missing; give {what}")
        if "\n" in repo["uri"].strip():
            _fail(source, f"{path}.uri", "must be a single line")
        if "-----BEGIN PGP PUBLIC KEY BLOCK-----" not in repo["key"]:
            _fail(
                source,
                f"{path}.key",
                "is not an ASCII-armored PGP public key (it must contain "
                "`-----BEGIN PGP PUBLIC KEY BLOCK-----`); export it with `gpg --armor --export`",
            )


_NEW_DEPENDENCIES = (
    "Since 6.0 it is a mapping of two lists: `dependencies: {run: [libpq5], build: [libpq-dev]}`, "
    "where `run` packages go in the final image and `build` packages only in the compiler"
)


def _check_dependencies(source: str, value: Any) -> None:
    if isinstance(value, list):
        _fail(
            source,
            "dependencies",
            f"uses the syntax of Grocker before 6.0 (a single list). {_NEW_DEPENDENCIES}",
        )
    if not isinstance(value, dict):
        _fail(source, "dependencies", f"must be a mapping with `run` and `build` lists, got {_show(value)}")
    for kind, packages in value.items():
        if kind not in ("run", "build"):
            close = difflib.get_close_matches(str(kind), ("run", "build"), n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            _fail(source, f"dependencies.{kind}", f"is not a dependency kind (use `run` or `build`).{hint}")
        if packages is None:
            continue
        if isinstance(packages, list) and any(isinstance(package, dict) for package in packages):
            _fail(
                source,
                f"dependencies.{kind}",
                f"uses the pre-6.0 `run-package: build-package` syntax. {_NEW_DEPENDENCIES}",
            )
        _check_list(source, f"dependencies.{kind}", packages, str)
        for package in packages:
            if not _PACKAGE_RE.match(package):
                _fail(source, f"dependencies.{kind}", f"has {package!r}, which is not a system package name")


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
        if not _PACKAGE_RE.match(package):
            raise ConfigError(
                f"runtimes.{runtime.name} ({runtimes_source}) has {package!r}, which is not a system "
                "package name. Fix it in that file."
            )
    constraint = merged.get("pip_constraint")
    constraint_path = Path(constraint) if constraint else None
    if constraint_path is not None and not constraint_path.is_file():
        _fail(
            sources.get("pip_constraint", DEFAULTS_SOURCE),
            "pip_constraint",
            f"names {constraint_path}, which does not exist (relative paths are resolved "
            "against the directory of the config file that names them)",
        )
    deps = merged.get("dependencies") or {}
    repositories = tuple(
        Repository(repo_id, repo["uri"].strip(), repo["key"].strip() + "\n")
        for repo_id, repo in sorted((merged.get("repositories") or {}).items())
    )
    repositories_source = sources.get("repositories", DEFAULTS_SOURCE)
    if runtime.family == "alpine" and repositories:
        # apk finds a repository's key by the file name its index was signed with, which a
        # `{uri, key}` entry does not give: refuse here rather than fail in the engine.
        _fail(
            repositories_source,
            f"repositories.{repositories[0].id}",
            f"cannot be used with the Alpine runtime {runtime.name}: `repositories` work on Debian "
            "runtimes only. Use a Debian runtime, or define a runtime whose base image already "
            "trusts the repository",
        )
    for repo in repositories:
        if not re.match(r"^deb(-src)?\s", repo.uri):
            _fail(
                repositories_source,
                f"repositories.{repo.id}.uri",
                f"must be an apt source line starting with `deb `, e.g. "
                f"`deb http://host/debian trixie main`; got {repo.uri!r}",
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
        sources=dict(sources),
        warnings=tuple(warnings),
    )


def parse_env_options(values: Sequence[str]) -> dict[str, str]:
    """Turn repeated `--env KEY=VALUE` options into a mapping (the value may contain `=`)."""
    env: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--env {item!r} has no `=`: give it as --env NAME=VALUE (an empty value is --env NAME=).")
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


def _absolute_constraint(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths in a file (`pip_constraint`, `sbom`) are relative to that file's folder."""
    for key in ("pip_constraint", "sbom"):
        path = values.get(key)
        if isinstance(path, str) and path.strip():
            values = dict(values, **{key: str((base / Path(path).expanduser()).resolve())})
    return values


def _fail(source: str, key: str, problem: str) -> Any:
    sentence = problem if problem.endswith((".", "?")) else f"{problem}."
    if source == CLI_SOURCE:
        raise UsageError(f"Invalid command-line value: `{key}` {sentence} Correct the option.")
    raise ConfigError(f"{source}: `{key}` {sentence} Fix it in that file.")


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unique(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _type_name(value: Any) -> str:
    return {
        list: "list",
        dict: "mapping",
        str: "string",
        int: "number",
        float: "number",
        bool: "boolean",
        type(None): "empty value",
    }.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    if value is None:
        return "an empty value"
    return f"{_type_name(value)} {value!r}"


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "strings", int: "numbers"}.get(k, k.__name__) for k in kinds)
