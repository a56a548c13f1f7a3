"""Configuration: packaged defaults, project files and command-line values, merged and validated.

Layers, lowest first: the packaged `resources/grocker.yaml`, each config file in order, then
the command line. Mappings merge deeply (so a project adds a runtime without losing the
built-in ones); any other value, lists included, is replaced by the higher layer. Everything
is checked here, before any engine call, and handed to the core as frozen dataclasses.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from grocker.config.families import FAMILIES, family_of, source_line_secret
from grocker.config.runtimes import Runtime, is_retired, select_runtime
from grocker.errors import ConfigError, UsageError, cut, shown
from grocker.reference import is_valid_base_name, is_valid_prefix

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
    "runner",
)
KNOWN_KEYS = (*PROJECT_KEYS, "runtimes")
RunnerFlavour = Literal["full", "minimal"]
RUNNER_FLAVOURS: tuple[RunnerFlavour, ...] = ("full", "minimal")
DEPRECATED_KEYS = {"envs": "env"}

# Every pattern below is used with fullmatch: `$` alone lets a trailing newline through.
# A system package name, with apt's `=version`, `:arch`, `/release` or apk's `=version`, `~ver`
# and `@tag`: it is written unquoted into an `apt-get install` / `apk add` line, so no shell
# metacharacter (`<`, `>`, `;`, `$`, quotes, spaces) may appear.
_PACKAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._:~=@/-]*")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# ASCII digits only: `\d` also matches other scripts' digits, which int() accepts.
_PORT_RE = re.compile(r"([0-9]{1,5})(/(tcp|udp|sctp))?")
_ENTRYPOINT_RE = re.compile(r"[^\s\"'\\]+")
# User info in a URL of an apt source line (`https://user:pass@host/...`): one character class
# between the literal `://` and `@`, so the search is linear.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters but the tab
_PYTHON_COMMAND_RE = re.compile(r"[A-Za-z0-9_./+-]+")
_VOLUME_RE = re.compile(r"/[^\x00-\x1f\x7f]*")
_REPOSITORY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")
_RUNTIME_NAME_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*/[a-z0-9]+(?:[._-][a-z0-9]+)*")
_PYTHON_VERSION_RE = re.compile(r"[0-9]+\.[0-9]+")
# A base image reference as FROM takes it: [registry/]path[:tag][@digest], nothing a shell or
# Dockerfile could read as another instruction.
_IMAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*")
RUNTIME_FIELDS = ("image", "family", "python", "python_version", "dependencies", "deprecated", "retired")
# Config and constraint files are small; anything bigger (or /dev/zero) is a mistake.
MAX_FILE_BYTES = 1 << 20
# Nodes a YAML file may expand to through aliases: far above any real configuration, far below
# a "billion laughs" file (451 bytes that expand to hundreds of megabytes).
MAX_YAML_NODES = 100_000
MAX_FLOW_DEPTH = 100


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
    values = _parse_yaml(text, path)
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"Config file {path} must hold a mapping of keys (runtime:, dependencies:, ...), "
            f"not a {_type_name(values)}."
        )
    values = _absolute_constraint(values, path)
    return Layer(str(path), values)


def read_small_file(path: Path, what: str, advice: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; a ConfigError for anything else.

    Checked with stat before opening: opening a FIFO blocks, and /dev/zero never ends.
    """
    try:
        info = path.stat()
    except FileNotFoundError as err:
        if path.is_symlink():
            raise ConfigError(
                f"{what} is a symbolic link to {cut(os.readlink(path))}, which does not exist. Fix or remove the link."
            ) from err
        raise ConfigError(f"{what} does not exist. {advice}") from err
    except OSError as err:
        raise ConfigError(f"{what} cannot be read: {err.strerror}. {advice}") from err
    except ValueError as err:  # a NUL character in the path
        raise ConfigError(f"{what} is not a usable path ({cut(str(err), 80)}). {advice}") from err
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{what} is a directory, not a file. {advice}")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} is not a regular file (a FIFO, a socket or a device). {advice}")
    try:
        with path.open("rb") as stream:
            data = stream.read(limit + 1)
    except OSError as err:
        raise ConfigError(f"{what} cannot be read: {err.strerror}. Fix its permissions. {advice}") from err
    if len(data) > limit:
        raise ConfigError(f"{what} is larger than {limit >> 10} KiB, far more than a configuration needs. {advice}")
    return data


class _DuplicateKeyError(Exception):
    def __init__(self, key: object, first: int, second: int) -> None:
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML says keys are unique;
    PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKeyError(key, seen[key], line)
            seen[key] = line
        return super().construct_mapping(node, deep)


def _parse_yaml(text: str, path: Path) -> Any:
    loader: _Loader | None = None
    try:
        _check_flow_depth(text, path)
        loader = _Loader(text)  # reads the stream: refuses control characters (a NUL byte)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, path)
        return loader.construct_document(node)
    except _DuplicateKeyError as err:
        raise ConfigError(
            f"Config file {path} gives the key {shown(err.key)} twice in one mapping (lines {err.first} "
            f"and {err.second}); YAML keys must be unique. Keep one of them."
        ) from err
    except RecursionError as err:
        raise ConfigError(
            f"Config file {path} nests its values too deeply for a configuration. Check that it is the right file."
        ) from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        # The parser notices a fault where it stops, often lines after the cause (an unclosed `[`).
        context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
        if context and start and mark and start.line != mark.line:
            problem += f" ({context} started at line {start.line + 1}, column {start.column + 1})"
        raise ConfigError(f"Config file {where} is not valid YAML: {problem}. Fix the syntax at that place.") from err
    finally:
        if loader is not None:
            loader.dispose()


def _check_flow_depth(text: str, path: Path) -> None:
    """Refuse `[[[[...` or `{a: {a: ...` nested deeper than MAX_FLOW_DEPTH, before PyYAML reads it.

    PyYAML's scanner takes time quadratic in the depth of flow collections (5000 levels take
    seconds) before its recursion fails. Brackets inside quoted strings count too: no real
    configuration opens a hundred of them without closing them.
    """
    if text.count("[") + text.count("{") <= MAX_FLOW_DEPTH:
        return
    depth = 0
    for char in text:
        if char in "[{":
            depth += 1
            if depth > MAX_FLOW_DEPTH:
                raise ConfigError(
                    f"Config file {path} nests its values too deeply for a configuration (more than "
                    f"{MAX_FLOW_DEPTH} levels of [ or {{). Check that it is the right file."
                )
        elif char in "]}" and depth:
            depth -= 1


def _check_expansion(root: yaml.Node, path: Path) -> None:
    """Refuse aliases that refer to themselves or expand to more than MAX_YAML_NODES nodes.

    Iterative and memoised per node, so a file of a few hundred bytes with nested aliases
    (which would expand to gigabytes) is measured in time linear in its size.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        children = _yaml_children(node)
        if finished:
            on_path.discard(id(node))
            sizes[id(node)] = min(1 + sum(sizes[id(child)] for child in children), MAX_YAML_NODES + 1)
            continue
        if id(node) in sizes:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise ConfigError(
                    f"Config file {path} has an alias inside the value it refers to (line "
                    f"{child.start_mark.line + 1}), which would never end. Remove that alias."
                )
            if id(child) not in sizes:
                stack.append((child, False))
    if sizes[id(root)] > MAX_YAML_NODES:
        raise ConfigError(
            f"Config file {path} expands through its YAML aliases (*name) to more than {MAX_YAML_NODES} "
            "values, far more than a configuration holds. Write the values out instead of nesting aliases."
        )


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


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
        if key == "runtime" and (len(value) > 100 or not _RUNTIME_NAME_RE.fullmatch(value)):
            _fail(
                source,
                key,
                f"must be a runtime name such as trixie/3.13 (`<distribution>/<python version>`), got {shown(value)}",
            )
        if key in ("docker_image_prefix", "image_base_name") and len(value) > 200:
            _fail(source, key, f"is {len(value)} characters long; image names are limited to 255 characters")
        if key == "entrypoint_name" and not _ENTRYPOINT_RE.fullmatch(value):
            _fail(source, key, f"must be a command name or path without spaces or quotes, got {shown(value)}")
        if key == "docker_image_prefix" and not is_valid_prefix(value):
            _fail(
                source,
                key,
                f"must be a registry and/or namespace in lower-case, e.g. registry.example.com, "
                f"localhost:5000/team or myaccount; got {shown(value)}",
            )
        if key == "image_base_name" and not is_valid_base_name(value):
            _fail(source, key, f"must contain letters or digits, got {shown(value)}")
    elif key == "runner":
        if value not in RUNNER_FLAVOURS:
            _fail(source, key, f"must be one of {', '.join(RUNNER_FLAVOURS)}, got {_show(value)}")
    elif key == "volumes":
        _check_list(source, key, value, str)
        for item in value:
            if not _VOLUME_RE.fullmatch(item):
                _fail(source, key, f"entries must be absolute container paths on one line, got {shown(item)}")
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
    elif key == "runtimes":
        _check_runtimes(source, value)


def _check_runtimes(source: str, value: Any) -> None:
    """Check every entry of a `runtimes:` table as strictly as the top-level keys.

    runtimes.py checks the entry that is chosen; this checks them all, here, so that a typo in
    an entry (`imgae:`) is an error with a suggestion rather than a silently ignored field.
    """
    if not isinstance(value, dict):
        _fail(source, "runtimes", f"must be a mapping of runtime name to its fields, got {_show(value)}")
    for name, entry in value.items():
        if not isinstance(name, str) or not _RUNTIME_NAME_RE.fullmatch(name):
            _fail(
                source,
                "runtimes",
                "names must be `<distribution>/<python version>` in lower-case letters, digits, '.', '_' "
                f"and '-', e.g. `trixie/3.13` (they become part of image names); got {shown(name)}",
            )
        path = f"runtimes.{name}"
        if entry is None:
            continue  # an empty entry amends nothing
        if not isinstance(entry, dict):
            _fail(source, path, f"must be a mapping of {', '.join(RUNTIME_FIELDS)}; got {_show(entry)}")
        for field_name in entry:
            if field_name not in RUNTIME_FIELDS:
                close = difflib.get_close_matches(str(field_name), RUNTIME_FIELDS, n=1)
                hint = f" Did you mean `{close[0]}`?" if close else f" Known fields: {', '.join(RUNTIME_FIELDS)}."
                _fail(source, f"{path}.{cut(str(field_name), 40)}", f"is not a runtime field.{hint}")
        for field_name in ("image", "family", "python", "python_version", "deprecated", "retired"):
            item = entry.get(field_name)
            if item is not None and not isinstance(item, str):
                hint = ' (YAML read it as a number: put it in quotes, e.g. "3.10")' if isinstance(item, float) else ""
                _fail(source, f"{path}.{field_name}", f"must be a string, got {_show(item)}{hint}")
        python = entry.get("python")
        if isinstance(python, str) and not _PYTHON_COMMAND_RE.fullmatch(python):
            # The interpreter is written unquoted into RUN lines of the runner's Dockerfile.
            _fail(source, f"{path}.python", f"must be a command name or absolute path, got {shown(python)}")
        version = entry.get("python_version")
        if isinstance(version, str) and not _PYTHON_VERSION_RE.fullmatch(version):
            _fail(source, f"{path}.python_version", f'must be MAJOR.MINOR, e.g. "3.13"; got {shown(version)}')
        image = entry.get("image")
        if isinstance(image, str) and not _IMAGE_RE.fullmatch(image):
            _fail(source, f"{path}.image", f"must be an image reference such as debian:trixie; got {shown(image)}")
        deps = entry.get("dependencies")
        if deps is not None:
            _check_dependencies(source, deps, f"{path}.dependencies")


def _check_list(source: str, key: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, list):
        _fail(source, key, f"must be a list, got {_show(value)}")
    for item in value:
        if not isinstance(item, kind) or isinstance(item, bool):
            _fail(source, key, f"entries must be {_kind_name(kind)}, got {_show(item)}")


def _check_port(source: str, key: str, port: str | int) -> None:
    match = _PORT_RE.fullmatch(str(port))
    if not match or not 1 <= int(match.group(1)) <= 65535:
        _fail(source, key, f"entries must be port numbers 1-65535, optionally /tcp or /udp, got {shown(port)}")


def _check_env(source: str, value: Any) -> None:
    if not isinstance(value, dict):
        _fail(source, "env", f"must be a mapping of NAME: value, got {_show(value)}")
    for name, item in value.items():
        if not isinstance(name, str) or not _ENV_NAME_RE.fullmatch(name):
            _fail(source, "env", f"names must be letters, digits and _, not starting with a digit; got {shown(name)}")
        if not isinstance(item, (str, int, float)):
            # Lists, mappings, empty values, but also dates, sets and !!binary: quote the value.
            _fail(source, f"env.{name}", f"must be a string or a number, got {_show(item)}; put it in quotes")
        if _CONTROL_RE.search(str(item)):
            # A Dockerfile ENV value cannot hold a line break (nor a NUL, nor an escape sequence).
            _fail(source, f"env.{name}", "must be a single line of text, without control characters")


def _check_repositories(source: str, value: Any) -> None:
    if not isinstance(value, dict):
        _fail(source, "repositories", f"must be a mapping of id: {{uri, key}}, got {_show(value)}")
    for repo_id, repo in value.items():
        path = f"repositories.{repo_id}"
        if not isinstance(repo_id, str) or not _REPOSITORY_ID_RE.fullmatch(repo_id):
            _fail(source, "repositories", f"ids must be letters, digits, '.', '_', '@' and '-', got {shown(repo_id)}")
        if not isinstance(repo, dict):
            _fail(source, path, f"must be a mapping with `uri` and `key`, got {_show(repo)}")
        for sub in repo:
            if sub not in ("uri", "key"):
                _fail(source, f"{path}.{sub}", "is not a repository field (only `uri` and `key` are)")
        for sub in ("uri", "key"):
            if not isinstance(repo.get(sub), str) or not repo[sub].strip():
                what = (
                    "the source line, e.g. `deb http://host/debian trixie main` (Debian) or "
                    "`https://host/alpine/v3.22/main` (Alpine)"
                    if sub == "uri"
                    else "the repository's public key: an ASCII-armored PGP public key (Debian) or an RSA "
                    "public key in PEM (Alpine)"
                )
                _fail(source, f"{path}.{sub}", f"is missing; give {what}")
        if _CONTROL_RE.search(repo["uri"].strip()):
            _fail(source, f"{path}.uri", "must be a single line, without control characters")
        problem = source_line_secret(repo["uri"])
        if problem:
            _fail(source, f"{path}.uri", problem)


_NEW_DEPENDENCIES = (
    "Since 6.0 it is a mapping of two lists: `dependencies: {run: [libpq5], build: [libpq-dev]}`, "
    "where `run` packages go in the final image and `build` packages only in the compiler"
)


_PACKAGE_PROBLEM = (
    "which is not a system package name: letters, digits and + . _ : ~ = @ / - only, written as is into "
    "the install command (pin an Alpine version with `py3-foo=1.2` or `py3-foo~1.2`, not `>=`)"
)


def _check_dependencies(source: str, value: Any, path: str = "dependencies") -> None:
    if isinstance(value, list):
        _fail(
            source,
            path,
            f"uses the syntax of Grocker before 6.0 (a single list). {_NEW_DEPENDENCIES}",
        )
    if not isinstance(value, dict):
        _fail(source, path, f"must be a mapping with `run` and `build` lists, got {_show(value)}")
    for kind, packages in value.items():
        if kind not in ("run", "build"):
            close = difflib.get_close_matches(str(kind), ("run", "build"), n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            _fail(source, f"{path}.{kind}", f"is not a dependency kind (use `run` or `build`).{hint}")
        if packages is None:
            continue
        if isinstance(packages, list) and any(isinstance(package, dict) for package in packages):
            _fail(
                source,
                f"{path}.{kind}",
                f"uses the pre-6.0 `run-package: build-package` syntax. {_NEW_DEPENDENCIES}",
            )
        _check_list(source, f"{path}.{kind}", packages, str)
        for package in packages:
            if not _PACKAGE_RE.fullmatch(package):
                _fail(source, f"{path}.{kind}", f"has {shown(package)}, {_PACKAGE_PROBLEM}")


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
        if not _PACKAGE_RE.fullmatch(package):
            raise ConfigError(
                f"runtimes.{runtime.name} ({runtimes_source}) has {shown(package)}, {_PACKAGE_PROBLEM}. "
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
            _fail(
                repositories_source,
                f"repositories.{repo.id}.uri",
                f"must be {family.uri_help} on the {family.name} runtime {runtime.name}; got {shown(repo.uri)}",
            )
        if family.key_marker not in repo.key:
            _fail(
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
        _fail(source, "pip_constraint", f"names {shown(str(path))}, which cannot be used ({problem})")
    if missing:
        _fail(
            source,
            "pip_constraint",
            f"names {cut(str(path))}, which does not exist (relative paths are resolved "
            "against the directory of the config file that names them)",
        )
    try:
        read_small_file(path, f"{cut(str(path))}", "Give the path of a pip constraints file.")
    except ConfigError as err:
        _fail(source, "pip_constraint", f"is not usable: {err.message.rstrip('.')}")


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
            _fail(source, key, f"names {shown(value)}, which cannot be resolved ({problem})")
        if not resolved.is_relative_to(base):
            _fail(
                source,
                key,
                f"names {shown(value)}, which is outside the directory of this file ({cut(str(base))}); "
                f"a config file may only name a file beside it or below it. Move the file there, "
                f"or give it on the command line with {option}",
            )
        values = dict(values, **{key: str(resolved)})
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
    return f"{_type_name(value)} {shown(value)}"


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "strings", int: "numbers"}.get(k, k.__name__) for k in kinds)
