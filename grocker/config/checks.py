"""The checks of each configuration key, one function per key in a table.

Every layer (the packaged defaults, each file, the command line) is checked here before the
layers merge, so an error names the layer it comes from. Values that reach a shell script or a
Dockerfile are matched whole against a pattern of what they may be.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, NoReturn

from grocker.config.families import source_line_secret
from grocker.errors import ConfigError, UsageError, cut, shown
from grocker.reference import is_valid_base_name, is_valid_prefix

CLI_SOURCE = "command line"

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
PACKAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._:~=@/-]*")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# ASCII digits only: `\d` also matches other scripts' digits, which int() accepts.
_PORT_RE = re.compile(r"([0-9]{1,5})(/(tcp|udp|sctp))?")
_ENTRYPOINT_RE = re.compile(r"[^\s\"'\\]+")
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


def check_layer(source: str, values: Mapping[str, Any], warnings: list[str]) -> dict[str, Any]:
    """The values of one layer, checked, with deprecated keys renamed (and a warning for each)."""
    values = dict(values)
    for old, new in DEPRECATED_KEYS.items():
        if old in values:
            if new in values:
                fail(source, old, f"is the deprecated spelling of `{new}`; keep only `{new}`")
            warnings.append(f"{source}: `{old}` is deprecated, rename it to `{new}`.")
            values[new] = values.pop(old)
    for key in values:
        if key not in KNOWN_KEYS:
            close = difflib.get_close_matches(str(key), KNOWN_KEYS, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else f" Known keys: {', '.join(PROJECT_KEYS)}."
            fail(source, str(key), f"is not a Grocker setting.{hint}")
    for key, value in values.items():
        check_value(source, key, value)
    return values


def check_value(source: str, key: str, value: Any) -> None:
    """Check the value of a known key as one layer (`source`) gives it."""
    CHECKS[key](source, key, value)


def _text(source: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        fail(source, key, f"must be a non-empty string, got {_show(value)}")
    return value


def _optional_text(source: str, key: str, value: Any) -> None:
    """A path (`pip_constraint`, `sbom`): any non-empty string, or empty to unset it."""
    if value is not None:
        _text(source, key, value)


def _check_runtime(source: str, key: str, value: Any) -> None:
    if len(_text(source, key, value)) > 100 or not _RUNTIME_NAME_RE.fullmatch(value):
        fail(
            source,
            key,
            f"must be a runtime name such as trixie/3.13 (`<distribution>/<python version>`), got {shown(value)}",
        )


def _check_entrypoint(source: str, key: str, value: Any) -> None:
    if not _ENTRYPOINT_RE.fullmatch(_text(source, key, value)):
        fail(source, key, f"must be a command name or path without spaces or quotes, got {shown(value)}")


def _check_image_part(source: str, key: str, value: Any) -> str | None:
    """An image prefix or base name: None (unset), or a string of at most 200 characters."""
    if value is None:
        return None
    if len(_text(source, key, value)) > 200:
        fail(source, key, f"is {len(value)} characters long; image names are limited to 255 characters")
    return str(value)


def _check_prefix(source: str, key: str, value: Any) -> None:
    prefix = _check_image_part(source, key, value)
    if prefix is not None and not is_valid_prefix(prefix):
        fail(
            source,
            key,
            f"must be a registry and/or namespace in lower-case, e.g. registry.example.com, "
            f"localhost:5000/team or myaccount; got {shown(prefix)}",
        )


def _check_base_name(source: str, key: str, value: Any) -> None:
    base = _check_image_part(source, key, value)
    if base is not None and not is_valid_base_name(base):
        fail(source, key, f"must contain letters or digits, got {shown(base)}")


def _check_runner(source: str, key: str, value: Any) -> None:
    if value not in RUNNER_FLAVOURS:
        fail(source, key, f"must be one of {', '.join(RUNNER_FLAVOURS)}, got {_show(value)}")


def _check_volumes(source: str, key: str, value: Any) -> None:
    _check_list(source, key, value, str)
    for item in value:
        if not _VOLUME_RE.fullmatch(item):
            fail(source, key, f"entries must be absolute container paths on one line, got {shown(item)}")


def _check_ports(source: str, key: str, value: Any) -> None:
    _check_list(source, key, value, (str, int))
    for item in value:
        match = _PORT_RE.fullmatch(str(item))
        if not match or not 1 <= int(match.group(1)) <= 65535:
            fail(source, key, f"entries must be port numbers 1-65535, optionally /tcp or /udp, got {shown(item)}")


def _check_runtimes(source: str, key: str, value: Any) -> None:
    """Check every entry of a `runtimes:` table as strictly as the top-level keys.

    runtimes.py checks the entry that is chosen; this checks them all, here, so that a typo in
    an entry (`imgae:`) is an error with a suggestion rather than a silently ignored field.
    """
    if not isinstance(value, dict):
        fail(source, "runtimes", f"must be a mapping of runtime name to its fields, got {_show(value)}")
    for name, entry in value.items():
        if not isinstance(name, str) or not _RUNTIME_NAME_RE.fullmatch(name):
            fail(
                source,
                "runtimes",
                "names must be `<distribution>/<python version>` in lower-case letters, digits, '.', '_' "
                f"and '-', e.g. `trixie/3.13` (they become part of image names); got {shown(name)}",
            )
        path = f"runtimes.{name}"
        if entry is None:
            continue  # an empty entry amends nothing
        if not isinstance(entry, dict):
            fail(source, path, f"must be a mapping of {', '.join(RUNTIME_FIELDS)}; got {_show(entry)}")
        for field_name in entry:
            if field_name not in RUNTIME_FIELDS:
                close = difflib.get_close_matches(str(field_name), RUNTIME_FIELDS, n=1)
                hint = f" Did you mean `{close[0]}`?" if close else f" Known fields: {', '.join(RUNTIME_FIELDS)}."
                fail(source, f"{path}.{cut(str(field_name), 40)}", f"is not a runtime field.{hint}")
        for field_name in ("image", "family", "python", "python_version", "deprecated", "retired"):
            item = entry.get(field_name)
            if item is not None and not isinstance(item, str):
                hint = ' (YAML read it as a number: put it in quotes, e.g. "3.10")' if isinstance(item, float) else ""
                fail(source, f"{path}.{field_name}", f"must be a string, got {_show(item)}{hint}")
        python = entry.get("python")
        if isinstance(python, str) and not _PYTHON_COMMAND_RE.fullmatch(python):
            # The interpreter is written unquoted into RUN lines of the runner's Dockerfile.
            fail(source, f"{path}.python", f"must be a command name or absolute path, got {shown(python)}")
        version = entry.get("python_version")
        if isinstance(version, str) and not _PYTHON_VERSION_RE.fullmatch(version):
            fail(source, f"{path}.python_version", f'must be MAJOR.MINOR, e.g. "3.13"; got {shown(version)}')
        image = entry.get("image")
        if isinstance(image, str) and not _IMAGE_RE.fullmatch(image):
            fail(source, f"{path}.image", f"must be an image reference such as debian:trixie; got {shown(image)}")
        deps = entry.get("dependencies")
        if deps is not None:
            _check_dependencies(source, f"{path}.dependencies", deps)


def _check_list(source: str, key: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, list):
        fail(source, key, f"must be a list, got {_show(value)}")
    for item in value:
        if not isinstance(item, kind) or isinstance(item, bool):
            fail(source, key, f"entries must be {_kind_name(kind)}, got {_show(item)}")


def _check_env(source: str, key: str, value: Any) -> None:
    if not isinstance(value, dict):
        fail(source, "env", f"must be a mapping of NAME: value, got {_show(value)}")
    for name, item in value.items():
        if not isinstance(name, str) or not _ENV_NAME_RE.fullmatch(name):
            fail(source, "env", f"names must be letters, digits and _, not starting with a digit; got {shown(name)}")
        if not isinstance(item, (str, int, float)):
            # Lists, mappings, empty values, but also dates, sets and !!binary: quote the value.
            fail(source, f"env.{name}", f"must be a string or a number, got {_show(item)}; put it in quotes")
        if _CONTROL_RE.search(str(item)):
            # A Dockerfile ENV value cannot hold a line break (nor a NUL, nor an escape sequence).
            fail(source, f"env.{name}", "must be a single line of text, without control characters")


def _check_repositories(source: str, key: str, value: Any) -> None:
    if not isinstance(value, dict):
        fail(source, "repositories", f"must be a mapping of id: {{uri, key}}, got {_show(value)}")
    for repo_id, repo in value.items():
        path = f"repositories.{repo_id}"
        if not isinstance(repo_id, str) or not _REPOSITORY_ID_RE.fullmatch(repo_id):
            fail(source, "repositories", f"ids must be letters, digits, '.', '_', '@' and '-', got {shown(repo_id)}")
        if not isinstance(repo, dict):
            fail(source, path, f"must be a mapping with `uri` and `key`, got {_show(repo)}")
        for sub in repo:
            if sub not in ("uri", "key"):
                fail(source, f"{path}.{sub}", "is not a repository field (only `uri` and `key` are)")
        for sub in ("uri", "key"):
            if not isinstance(repo.get(sub), str) or not repo[sub].strip():
                what = (
                    "the source line, e.g. `deb http://host/debian trixie main` (Debian) or "
                    "`https://host/alpine/v3.22/main` (Alpine)"
                    if sub == "uri"
                    else "the repository's public key: an ASCII-armored PGP public key (Debian) or an RSA "
                    "public key in PEM (Alpine)"
                )
                fail(source, f"{path}.{sub}", f"is missing; give {what}")
        if _CONTROL_RE.search(repo["uri"].strip()):
            fail(source, f"{path}.uri", "must be a single line, without control characters")
        problem = source_line_secret(repo["uri"])
        if problem:
            fail(source, f"{path}.uri", problem)


_NEW_DEPENDENCIES = (
    "Since 6.0 it is a mapping of two lists: `dependencies: {run: [libpq5], build: [libpq-dev]}`, "
    "where `run` packages go in the final image and `build` packages only in the compiler"
)


PACKAGE_PROBLEM = (
    "which is not a system package name: letters, digits and + . _ : ~ = @ / - only, written as is into "
    "the install command (pin an Alpine version with `py3-foo=1.2` or `py3-foo~1.2`, not `>=`)"
)


def _check_dependencies(source: str, path: str, value: Any) -> None:
    """`dependencies`, or a runtime's (`path` is then `runtimes.<name>.dependencies`)."""
    if isinstance(value, list):
        fail(
            source,
            path,
            f"uses the syntax of Grocker before 6.0 (a single list). {_NEW_DEPENDENCIES}",
        )
    if not isinstance(value, dict):
        fail(source, path, f"must be a mapping with `run` and `build` lists, got {_show(value)}")
    for kind, packages in value.items():
        if kind not in ("run", "build"):
            close = difflib.get_close_matches(str(kind), ("run", "build"), n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            fail(source, f"{path}.{kind}", f"is not a dependency kind (use `run` or `build`).{hint}")
        if packages is None:
            continue
        if isinstance(packages, list) and any(isinstance(package, dict) for package in packages):
            fail(
                source,
                f"{path}.{kind}",
                f"uses the pre-6.0 `run-package: build-package` syntax. {_NEW_DEPENDENCIES}",
            )
        _check_list(source, f"{path}.{kind}", packages, str)
        for package in packages:
            if not PACKAGE_RE.fullmatch(package):
                fail(source, f"{path}.{kind}", f"has {shown(package)}, {PACKAGE_PROBLEM}")


def fail(source: str, key: str, problem: str) -> NoReturn:
    """Raise the error of a bad value: a usage error on the command line, else a configuration error."""
    sentence = problem if problem.endswith((".", "?")) else f"{problem}."
    if source == CLI_SOURCE:
        raise UsageError(f"Invalid command-line value: `{key}` {sentence} Correct the option.")
    raise ConfigError(f"{source}: `{key}` {sentence} Fix it in that file.")


def type_name(value: Any) -> str:
    """What YAML made of a value, in the words of an error message."""
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
    return f"{type_name(value)} {shown(value)}"


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "strings", int: "numbers"}.get(k, k.__name__) for k in kinds)


Check = Callable[[str, str, Any], None]
"""A key's check: (the layer's name, the key or its path, the value); raises on a bad value."""

# Every key a layer may give, and its check (a test holds this table to KNOWN_KEYS).
CHECKS: Mapping[str, Check] = {
    "runtime": _check_runtime,
    "pip_constraint": _optional_text,
    "volumes": _check_volumes,
    "ports": _check_ports,
    "env": _check_env,
    "repositories": _check_repositories,
    "dependencies": _check_dependencies,
    "docker_image_prefix": _check_prefix,
    "image_base_name": _check_base_name,
    "entrypoint_name": _check_entrypoint,
    "sbom": _optional_text,
    "runner": _check_runner,
    "runtimes": _check_runtimes,
}
