"""Unit tests never talk to an engine: creating a docker client is a test failure here."""

from __future__ import annotations

import docker
import pytest


@pytest.fixture(autouse=True)
def _no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a unit test tried to reach a Docker engine; fake it at grocker.engine")

    monkeypatch.setattr(docker.APIClient, "__init__", refuse)
    monkeypatch.setattr(docker.DockerClient, "__init__", refuse)
    monkeypatch.setattr(docker, "from_env", refuse)
