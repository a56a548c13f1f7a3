"""Unit tests never talk to an engine: creating a docker client is a test failure here.

They never read the machine's pip configuration either, and test the command line through
click's CliRunner with the core entry point (grocker.api.build) replaced by a recorder.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import docker
import pytest
import requests
from click.testing import CliRunner

from grocker import api, cli
from grocker.chain.build import BuildRequest
from grocker.chain.wheel_steps import script_path
from grocker.sbom import referrers


@pytest.fixture(autouse=True)
def _no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a unit test tried to reach a Docker engine; fake it at grocker.engine")

    monkeypatch.setattr(docker.APIClient, "__init__", refuse)
    monkeypatch.setattr(docker.DockerClient, "__init__", refuse)
    monkeypatch.setattr(docker, "from_env", refuse)


@pytest.fixture(autouse=True)
def _no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    # A build with a registry prefix asks the fleet's registry (grocker.chain.fleet): unit tests give a
    # registry of their own (tests/unit/test_fleet.py) or none, never the network's.
    def unreachable(reference: str, docker_config: object) -> object:
        raise requests.ConnectionError(f"unit tests reach no registry ({reference})")

    monkeypatch.setattr(referrers, "open_repository", unreachable)


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


def load_module(path: Path, name: str) -> ModuleType:
    """A program or script imported by its path under `name`, as the container runs it (nothing patched)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_publishing(name: str) -> ModuleType:
    """A module of the publisher's package (resources/wheelhouse/publishing), imported as publish.py does."""
    folder = str(script_path("publish.py").parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("publishing" if name == "__init__" else f"publishing.{name}")


@dataclass
class PublisherKit:
    """The publisher script, imported by its path, and its volumes: temporary folders, given in its requests."""

    module: ModuleType
    wheels: Path
    candidates: Path
    volume: Any
    """The publisher's view of them (publishing.volume.Volume)."""
    error: type[Exception]
    has_elf: Callable[[Path], bool]
    sha256_of: Callable[[Path], str]
    reusable: Callable[[object], bool]
    public_url: Callable[..., str]
    wheel_installer: Callable[[Any], str | None]
    compiled_installer: Callable[[Any, str], str]

    def job(self, request: dict[str, Any]) -> Any:
        """A Publisher of `request`, with the paths of these volumes."""
        paths = {"wheels": str(self.wheels), "candidates": str(self.candidates), "sdists": str(self.wheels.parent)}
        return self.module.Publisher({"paths": paths, **request})


@pytest.fixture
def publisher(tmp_path: Path) -> PublisherKit:
    """The publisher script, its wheel volume a temporary folder, its candidates volume another."""
    module = load_module(script_path("publish.py"), "grocker_publish_origins")
    volumes, names, installers = (load_publishing(name) for name in ("volume", "names", "installers"))
    volume = volumes.Volume(tmp_path, tmp_path / "candidates-volume")
    volume.prepare()
    return PublisherKit(
        module=module,
        wheels=tmp_path,
        candidates=tmp_path / "candidates-volume",
        volume=volume,
        error=load_publishing("__init__").PublishError,
        has_elf=volumes.has_elf,
        sha256_of=volumes.sha256_of,
        reusable=volumes.reusable,
        public_url=names.public_url,
        wheel_installer=installers.wheel_installer,
        compiled_installer=installers.compiled_installer,
    )
