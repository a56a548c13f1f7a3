"""Unit tests never talk to an engine: creating a docker client is a test failure here.

They never read the machine's pip configuration either, and test the command line through
click's CliRunner with the core entry point (grocker.api.build) replaced by a recorder.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace

import docker
import pytest
import requests
from click.testing import CliRunner

from grocker import api, cli, referrers
from grocker.build import BuildRequest
from grocker.chain import background
from grocker.chain.wheelhouse import script_path


@pytest.fixture(autouse=True)
def _no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a unit test tried to reach a Docker engine; fake it at grocker.engine")

    monkeypatch.setattr(docker.APIClient, "__init__", refuse)
    monkeypatch.setattr(docker.DockerClient, "__init__", refuse)
    monkeypatch.setattr(docker, "from_env", refuse)


@pytest.fixture(autouse=True)
def _no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    # A build with a registry prefix asks the fleet's registry (grocker.fleet): unit tests give a
    # registry of their own (tests/unit/test_fleet.py) or none, never the network's.
    def unreachable(reference: str, docker_config: object) -> object:
        raise requests.ConnectionError(f"unit tests reach no registry ({reference})")

    monkeypatch.setattr(referrers, "open_repository", unreachable)


@pytest.fixture(autouse=True)
def _wheel_server_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake engine records one sequence of calls: the wheel server starts inline, so that the
    # order the tests assert is the same on every run (test_chain.py runs it in the background too).
    monkeypatch.setattr(background, "BACKGROUND", False)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the machine's pip configuration, home folder or colour settings."""
    home = tmp_path_factory.mktemp("home")
    for name in list(os.environ):
        if name.startswith(("PIP_", "XDG_", "DOCKER_")) or name in ("VIRTUAL_ENV", "NO_COLOR"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


@dataclass
class CliRun:
    """What one `grocker` invocation did: exit code, output streams, requests given to the core."""

    exit_code: int
    stdout: str
    stderr: str
    requests: list[BuildRequest]

    @property
    def request(self) -> BuildRequest:
        """The one BuildRequest that reached grocker.api.build."""
        assert len(self.requests) == 1, f"expected one build, got {len(self.requests)}: {self.stderr}"
        return self.requests[0]


@pytest.fixture
def grocker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., CliRun]:
    """Run the CLI in `tmp_path` with grocker.api.build replaced by a recorder."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> CliRun:
        requests: list[BuildRequest] = []

        def fake_build(request: BuildRequest, env: object = None) -> SimpleNamespace:
            requests.append(request)
            return SimpleNamespace(image=request.image_name)

        with monkeypatch.context() as patch:
            patch.setattr(api, "build", fake_build)
            result = CliRunner().invoke(cli.main, list(args), catch_exceptions=False)
        return CliRun(result.exit_code, result.stdout, result.stderr, requests)

    return run


@pytest.fixture
def publisher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The publisher script, its wheel volume a temporary folder, its candidates volume another."""
    spec = importlib.util.spec_from_file_location("grocker_publish_origins", script_path("publish.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    state = tmp_path / ".grocker"
    for name, path in {
        "WHEELS": tmp_path,
        "STATE": state,
        "LOCKS": state / "locks",
        "RECORDS": state / "sha256",
        "ORIGINS": state / "origins",
        "ELF_FLAGS": state / "elf",
        "TEMPORARY": state / "tmp",
        "QUARANTINE": state / "quarantine",
        "CANDIDATES": tmp_path / "candidates-volume",
    }.items():
        monkeypatch.setattr(module, name, path)
        if name != "WHEELS":
            path.mkdir(parents=True, exist_ok=True)
    return module
