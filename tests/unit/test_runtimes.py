"""The runtimes table: built-in entries, project entries, retired and unknown names."""

from __future__ import annotations

import pytest

from grocker import config
from grocker.config.runtimes import select_runtime
from grocker.errors import ConfigError

BUILT_IN = config.load_defaults().values["runtimes"]


@pytest.mark.parametrize(
    ("name", "image", "family", "python", "python_version"),
    [
        ("trixie/3.13", "debian:trixie", "debian", "python3", "3.13"),
        ("bookworm/3.11", "debian:bookworm", "debian", "python3", "3.11"),
        ("trixie/3.12", "python:3.12-slim-trixie", "debian", "/usr/local/bin/python3", "3.12"),
        ("trixie/3.14", "python:3.14-slim-trixie", "debian", "/usr/local/bin/python3", "3.14"),
        ("alpine/3.12", "alpine:3.22", "alpine", "python3", "3.12"),
    ],
)
def test_built_in_runtimes(name: str, image: str, family: str, python: str, python_version: str) -> None:
    runtime = select_runtime(name, BUILT_IN, "test")

    assert (runtime.image, runtime.family, runtime.python, runtime.python_version) == (
        image,
        family,
        python,
        python_version,
    )
    assert runtime.slug == name.replace("/", "-")
    assert runtime.deprecated is None
    # The root image gets no compiler: build packages are the compiler's alone.
    assert not set(runtime.run_packages) & {"build-essential", "build-base", "gcc", "python3-dev"}


@pytest.mark.parametrize(
    ("name", "replacement"),
    [
        ("jessie/2.7", "trixie/3.13"),
        ("jessie/3.4", "trixie/3.13"),
        ("stretch/3.5", "trixie/3.13"),
        ("stretch/3.6", "trixie/3.13"),
        ("alpine/3.6", "alpine/3.12"),
    ],
)
def test_retired_runtimes_name_their_replacement(name: str, replacement: str) -> None:
    with pytest.raises(ConfigError) as caught:
        select_runtime(name, BUILT_IN, "grocker.yml")

    assert f"Runtime {name!r} (grocker.yml) is retired" in caught.value.message
    assert f"Use {replacement!r} instead" in caught.value.message
    assert f"-r {replacement}" in caught.value.message


def test_unknown_runtime_lists_the_known_ones_but_not_the_retired() -> None:
    with pytest.raises(ConfigError) as caught:
        select_runtime("sid/3.15", BUILT_IN, "command line")

    message = caught.value.message
    assert "Unknown runtime 'sid/3.15' (command line)" in message
    assert "Known runtimes: alpine/3.12, bookworm/3.11, trixie/3.12, trixie/3.13, trixie/3.14." in message
    assert "jessie" not in message


@pytest.mark.parametrize(
    ("name", "entry", "problem"),
    [
        ("Mine/3.13", {"image": "debian:trixie"}, "must be `<distribution>/<python version>`"),
        ("mine 3.13", {"image": "debian:trixie"}, "must be `<distribution>/<python version>`"),
        ("mine/3.13", {}, "runtimes.mine/3.13.image (defs.yml) must be a non-empty string"),
        ("mine/3.13", {"image": "x", "family": "redhat"}, "family (defs.yml) must be one of debian, alpine"),
        ("mine/3.10", {"image": "x", "python_version": 3.10}, "got 3.1, which YAML read as a number: put it in"),
        ("mine/latest", {"image": "x"}, "python_version (defs.yml) must be the interpreter's MAJOR.MINOR"),
        ("mine/3.13", {"image": "x", "dependencies": {"run": "python3"}}, "dependencies.run (defs.yml) must be a list"),
        ("mine/3.13", "debian:trixie", "runtimes.mine/3.13 (defs.yml) must be a mapping"),
    ],
)
def test_invalid_definitions_are_refused(name: str, entry: object, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        select_runtime(name, {name: entry}, "grocker.yml", "defs.yml")

    assert problem in caught.value.message


def test_project_runtime_defaults() -> None:
    runtime = select_runtime("mine/3.13", {"mine/3.13": {"image": "registry.example.com/debian:trixie"}}, "test")

    assert runtime.family == "debian"
    assert runtime.python == "python3"
    assert runtime.python_version == "3.13"
    assert (runtime.run_packages, runtime.build_packages) == ((), ())
