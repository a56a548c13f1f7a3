"""Configuration files read defensively: small regular files only, YAML without its traps.

A configuration file comes from a repository, so it may be hostile or simply wrong: a FIFO, a
device, a huge file, a key given twice, aliases that expand to gigabytes ("billion laughs"),
brackets nested thousands deep. Each is refused here with a ConfigError naming the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from grocker.errors import ConfigError, cut, shown

# Config and constraint files are small; anything bigger (or /dev/zero) is a mistake.
MAX_FILE_BYTES = 1 << 20
# Nodes a YAML file may expand to through aliases: far above any real configuration, far below
# a "billion laughs" file (451 bytes that expand to hundreds of megabytes).
MAX_YAML_NODES = 100_000
MAX_FLOW_DEPTH = 100


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


def parse_yaml(text: str, path: Path) -> Any:
    """The document of `text` (the file `path`), refusing duplicate keys, deep nesting and alias bombs."""
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
