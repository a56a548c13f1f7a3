"""reStructuredText for Grocker's reference tables, generated from the code itself.

Pure functions, without Sphinx, so that tests/unit/test_examples.py checks them too:

- the configuration keys, from the packaged ``grocker/resources/grocker.yaml`` (values and the
  comment above each key), with the command-line option that sets each key, found by calling
  the real CLI with the library entry point patched;
- the built-in runtimes, from the same file;
- every command and option of ``grocker.cli.main``, read with click's API.

The Sphinx directives that place these tables in the pages are in ``grocker_docs.py``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from unittest import mock

import click
import yaml
from click.testing import CliRunner

DEFAULTS_RESOURCE = "resources/grocker.yaml"
_TOP_LEVEL_KEY_RE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*):")
_SAMPLE = "SAMPLE=1"


class ReferenceError(RuntimeError):
    """The code no longer looks the way this generator expects: update the generator."""


@dataclass(frozen=True)
class ConfigKey:
    """One row of the configuration reference."""

    key: str
    type: str
    default: str
    option: str
    description: str


# Sources


def defaults_path() -> Path:
    """The packaged grocker.yaml, for Sphinx's dependency tracking."""
    return Path(str(resources.files("grocker").joinpath(DEFAULTS_RESOURCE)))


def defaults_text() -> str:
    """The packaged grocker.yaml, comments included."""
    return resources.files("grocker").joinpath(DEFAULTS_RESOURCE).read_text("utf-8")


def defaults() -> dict[str, Any]:
    """The packaged defaults, parsed."""
    values = yaml.safe_load(defaults_text())
    if not isinstance(values, dict):
        raise ReferenceError(f"grocker/{DEFAULTS_RESOURCE} no longer holds a mapping")
    return values


def key_comments(text: str) -> dict[str, str]:
    """The comment block right above each top-level key (a blank line ends a block)."""
    comments: dict[str, str] = {}
    block: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            block = []
        elif stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
        else:
            match = _TOP_LEVEL_KEY_RE.match(line)
            if match:
                comments[match.group("key")] = " ".join(block)
            block = []
    return comments


def build_command() -> click.Command:
    """`grocker build`, as registered on the CLI group."""
    command = _main().commands.get("build")
    if command is None:
        raise ReferenceError("grocker.cli.main has no `build` command any more")
    return command


@functools.lru_cache(maxsize=1)
def option_keys() -> dict[str, str]:
    """Config key -> the `grocker build` option that sets it.

    Found by running the real CLI once per option, with `grocker.api.load_config` patched to
    record the overrides the option produced: the table follows the code, not a copy of it.
    """
    from grocker import api

    command = build_command()
    options = [
        param
        for param in command.params
        if isinstance(param, click.Option) and not param.is_flag and param.name != "config_files"
    ]
    found: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        sample_file = Path(folder) / "sample.txt"
        sample_file.write_text("", "utf-8")
        baseline = _recorded_overrides(api, [])
        for param in options:
            value = str(sample_file) if isinstance(param.type, click.Path) else _SAMPLE
            if isinstance(param.type, click.Choice):
                value = str(param.type.choices[-1])
            overrides = _recorded_overrides(api, [param.opts[-1], value])
            for key in set(overrides) - set(baseline):
                found[key] = _option_names(param)
    return found


class _Recorded(BaseException):
    """Stops the CLI right after it called load_config; a BaseException so that no handler of
    the CLI turns it into an exit code."""

    def __init__(self, overrides: Mapping[str, Any]) -> None:
        super().__init__("recorded")
        self.overrides = dict(overrides)


def _recorded_overrides(api: Any, arguments: list[str]) -> dict[str, Any]:
    def record(config_files: object = (), **kwargs: Any) -> None:
        raise _Recorded(kwargs.get("overrides") or {})

    if not hasattr(api, "load_config"):
        raise ReferenceError("grocker.api.load_config is gone: update docs/_ext/grocker_reference.py")
    try:
        with _preserved_logging(), mock.patch.object(api, "load_config", record):
            result = CliRunner().invoke(_main(), ["build", *arguments, "docs-sample==1.0"])
    except _Recorded as recorded:
        return recorded.overrides
    raise ReferenceError(
        f"`grocker build {' '.join(arguments)}` did not call grocker.api.load_config(overrides=...) "
        f"as docs/_ext/grocker_reference.py expects (exit {result.exit_code}): {result.output.strip()}"
    )


@contextlib.contextmanager
def _preserved_logging() -> Iterator[None]:
    """The CLI sets up Grocker's logger on a stream CliRunner closes: put it back as it was."""
    from grocker import log

    logger = logging.getLogger(log.LOGGER_NAME)
    saved = (list(logger.handlers), logger.propagate, logger.level)
    try:
        yield
    finally:
        logger.handlers[:] = saved[0]
        logger.propagate = saved[1]
        logger.setLevel(saved[2])


def _main() -> click.Group:
    from grocker import cli

    if not isinstance(cli.main, click.Group):
        raise ReferenceError("grocker.cli.main is no longer a click group")
    return cli.main


# The configuration table


def config_rows() -> list[ConfigKey]:
    """Every top-level key of grocker.yaml, in file order."""
    values = defaults()
    comments = key_comments(defaults_text())
    flags = option_keys()
    rows = []
    for key, value in values.items():
        if key == "runtimes":
            default = "the built-in runtimes (see :doc:`runtimes`)"
            kind = "mapping: runtime name -> fields"
        else:
            default = _show_default(value)
            kind = _type_name(value)
        rows.append(ConfigKey(key, kind, default, flags.get(key, ""), comments.get(key, "")))
    return rows


def config_table(rows: Iterable[ConfigKey] | None = None) -> list[str]:
    """The configuration reference as a list-table."""
    rows = config_rows() if rows is None else rows
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 18 14 14 16 38",
        "",
        "   * - Key",
        "     - Type",
        "     - Default",
        "     - Option",
        "     - Description",
    ]
    for row in rows:
        lines += [
            f"   * - .. _config-{row.key}:",
            "",
            f"       ``{row.key}``",
            f"     - {_text(row.type)}",
            f"     - {row.default}",
            f"     - {f'``{row.option}``' if row.option else '(none)'}",
            f"     - {_text(row.description)}",
        ]
    return lines


def defaults_block() -> list[str]:
    """The packaged defaults of every project key, comments included, as a YAML code block.

    The file's paragraphs (separated by blank lines) are kept when they set a key other than
    `runtimes`, whose table has a page of its own.
    """
    kept = []
    for paragraph in re.split(r"\n\s*\n", defaults_text()):
        keys = [match.group("key") for match in map(_TOP_LEVEL_KEY_RE.match, paragraph.splitlines()) if match]
        if keys and "runtimes" not in keys:
            kept.append(paragraph.strip("\n"))
    lines = [".. code-block:: yaml", "", "    # .grocker.yml (defaults)"]
    for paragraph in kept:
        lines += [f"    {line}".rstrip() for line in paragraph.splitlines()]
    return [*lines, ""]


# The runtimes table


def runtime_table() -> list[str]:
    """The built-in runtimes, with their base image, Python, packages and status."""
    values = defaults()
    default = values.get("runtime")
    table = values.get("runtimes") or {}
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: auto",
        "",
        "   * - Runtime",
        "     - Base image",
        "     - Python",
        "     - Family",
        "     - Packages (run / build)",
        "     - Status",
    ]
    for name, entry in table.items():
        entry = entry or {}
        if entry.get("retired"):
            status = f"retired: use ``{entry['retired']}``"
            image = python = family = packages = "\u2014"
        else:
            status = "default" if name == default else "supported"
            if entry.get("deprecated"):
                status = f"deprecated: {_text(str(entry['deprecated']))}"
            image = f"``{entry.get('image', '')}``"
            python = f"``{entry.get('python', 'python3')}`` ({entry.get('python_version', '')})"
            family = entry.get("family", "debian")
            deps = entry.get("dependencies") or {}
            packages = f"{_packages(deps.get('run'))} / {_packages(deps.get('build'))}"
        lines += [
            f"   * - ``{name}``",
            f"     - {image}",
            f"     - {python}",
            f"     - {family}",
            f"     - {packages}",
            f"     - {status}",
        ]
    return lines


def _packages(names: Any) -> str:
    return ", ".join(f"``{name}``" for name in names) if names else "(none)"


# The CLI reference


def cli_reference(level_chars: str = "-~") -> list[str]:
    """The group's options, then one section per command with its usage and options."""
    main = _main()
    # The group's context settings (its -h/--help) reach its commands through the parent context.
    root = click.Context(main, info_name="grocker", **main.context_settings)
    lines = _command_block(main, root, heading=None, level_chars=level_chars)
    for name in sorted(main.commands):
        command = main.commands[name]
        context = click.Context(command, info_name=name, parent=root, **command.context_settings)
        lines += _command_block(command, context, heading=f"grocker {name}", level_chars=level_chars)
    return lines


def _command_block(command: click.Command, ctx: click.Context, heading: str | None, level_chars: str) -> list[str]:
    lines: list[str] = []
    if heading:
        title = f"``{heading}``"
        lines += [f".. _cli-{heading.replace(' ', '-')}:", "", title, level_chars[0] * len(title), ""]
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    lines += ["::", "", f"    {usage}", ""]
    if command.help:
        lines += [_text(inspect.cleandoc(command.help)), ""]
    arguments = [param for param in command.params if isinstance(param, click.Argument)]
    if arguments:
        names = ", ".join(f"``{param.human_readable_name}``" for param in arguments)
        lines += [f"Arguments: {names}.", ""]
    keys = option_keys() if command.name == "build" else {}
    by_option = {option: key for key, option in keys.items()}
    lines += [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 36 14 50",
        "",
        "   * - Option",
        "     - Default",
        "     - Description",
    ]
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option):
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        described = _sentence(param.help or "")
        if param.multiple and "repeatable" not in described.lower():
            described += " Repeatable."
        key = by_option.get(_option_names(param))
        if key:
            described += f" Sets :ref:`{key} <config-{key}>`."
        lines += [
            f"   * - ``{record[0]}``",
            f"     - {_option_default(param)}",
            f"     - {described.strip() or '(no help)'}",
        ]
    lines.append("")
    return lines


def _option_names(param: click.Option) -> str:
    return ", ".join(param.opts)


def _option_default(param: click.Option) -> str:
    if param.is_flag and param.secondary_opts and _unset(param.default):
        return "(see description)"
    if param.is_flag and param.secondary_opts:
        return f"``{param.opts[-1] if param.default else param.secondary_opts[-1]}``"
    if param.is_flag or param.count or param.multiple or _unset(param.default):
        return "(none)"
    return f"``{param.default}``"


# Text helpers


def _unset(value: Any) -> bool:
    """No default: None, or click's own marker for it (click 8.3 and later)."""
    return value is None or value is getattr(click.core, "UNSET", None)


def _sentence(text: str) -> str:
    """Help text as a sentence: escaped, ending with a full stop."""
    text = text.strip()
    if not text:
        return ""
    if not text.endswith((".", "?", "!")):
        text += "."
    return _text(text)


def _type_name(value: Any) -> str:
    if value is None:
        return "string, optional"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        if not value:
            return "mapping"
        return "mapping of " + ", ".join(f"`{key}` ({_type_name(item)})" for key, item in value.items())
    return type(value).__name__


def _show_default(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, (list, dict)):
        return f"``{yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()}``"
    return f"``{value}``"


def _text(text: str) -> str:
    """Escape reStructuredText markup, turning `code` spans into literals."""
    parts = re.split(r"`([^`]+)`", text)
    out = []
    for index, part in enumerate(parts):
        if index % 2:
            out.append(f"``{part}``")
        else:
            out.append(re.sub(r"([\\*|_`<>\[\]])", r"\\\1", part))
    escaped = "".join(out)
    if escaped[:1] in ("-", "+", "#"):
        escaped = "\\" + escaped
    return escaped
