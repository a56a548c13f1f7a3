"""How Grocker reads what engines answer: the differences between Docker's stores and Podman."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest
import requests

from grocker.engine import DockerEngine, name_in_use, push_digest, unpacked_size, uses_containerd_store
from grocker.errors import EngineError

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "chunk",
    [
        # Docker with overlay2, and Podman: an aux chunk.
        {"progressDetail": {}, "aux": {"Tag": "1", "Digest": DIGEST, "Size": 1404}},
        # Docker 26+ with the containerd image store: the final status line only.
        {"status": f"1: digest: {DIGEST} size: 1404"},
        {"status": f"latest: digest: {DIGEST} size: 529\n"},
    ],
    ids=["aux", "containerd-status", "status-newline"],
)
def test_push_digest_is_read_from_aux_or_the_final_status(chunk: dict[str, Any]) -> None:
    assert push_digest(chunk) == DIGEST


@pytest.mark.parametrize(
    "chunk",
    [
        {"status": "Pushed", "id": "1a2b3c"},
        {"status": "The push refers to repository [localhost:5000/app]"},
        {"status": "1: digest: sha256:abc size: 1404"},
        {"status": f"x digest: {DIGEST} size: 1404; rm -rf /"},
        {"aux": {"Tag": "1"}},
    ],
)
def test_push_digest_ignores_other_lines(chunk: dict[str, Any]) -> None:
    assert push_digest(chunk) is None


class _RefusingApi:
    """The low-level API of an engine that refuses every build request, as Podman did for extrahosts."""

    def __init__(self) -> None:
        self.build_kwargs: dict[str, Any] = {}

    def build(self, **kwargs: Any) -> Any:
        self.build_kwargs = kwargs
        response = requests.Response()
        response.status_code = 400
        raise docker.errors.APIError(
            "400 Client Error", response=response, explanation="failed to parse query parameter 'extrahosts'"
        )


def _engine(podman: bool) -> tuple[DockerEngine, _RefusingApi]:
    api = _RefusingApi()
    return DockerEngine(SimpleNamespace(api=api), "the Docker engine at tcp://127.0.0.1:23753", podman=podman), api  # type: ignore[arg-type]


def test_an_engine_refusing_a_build_is_an_engine_error() -> None:
    engine, _api = _engine(podman=True)
    with pytest.raises(EngineError) as failure:
        engine.build({"Dockerfile": b"FROM scratch\n"}, labels={}, what="runner image", on_line=print)
    assert failure.value.exit_code == 4
    message = str(failure.value)
    assert "The Docker engine at tcp://127.0.0.1:23753 refused to build the runner image" in message
    assert "failed to parse query parameter 'extrahosts'" in message
    assert "engine's log" in message
    assert "bug" not in message


@pytest.mark.parametrize(
    ("podman", "expected"),
    [
        (False, {"grocker-wheels": "10.88.0.7"}),
        (True, json.dumps(["grocker-wheels:10.88.0.7"])),
    ],
    ids=["docker", "podman"],
)
def test_extra_hosts_are_sent_in_the_form_the_engine_parses(podman: bool, expected: object) -> None:
    engine, api = _engine(podman)
    with pytest.raises(EngineError):
        engine.build(
            {"Dockerfile": b"FROM scratch\n"},
            labels={},
            what="runner image",
            on_line=print,
            extra_hosts={"grocker-wheels": "10.88.0.7"},
            network="grocker-net-1",
        )
    assert api.build_kwargs["extra_hosts"] == expected
    assert api.build_kwargs["network_mode"] == "grocker-net-1"


def test_unpacked_size_sums_the_layers_of_the_history() -> None:
    # The containerd store's history of a runner: its steps' snapshots, then the base's.
    steps = [{"Size": 110592}, {"Size": 0}, {"Size": 38445056}, {"Size": None}, {"Size": 167247872}]
    assert unpacked_size(steps) == 205803520


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ([["driver-type", "io.containerd.snapshotter.v1"]], True),
        ([["Backing Filesystem", "extfs"], ["Supports d_type", "true"]], False),
        (None, False),
    ],
    ids=["containerd", "overlay2", "none"],
)
def test_the_containerd_store_is_recognised_by_its_driver_type(status: object, expected: bool) -> None:
    assert uses_containerd_store({"Driver": "overlayfs", "DriverStatus": status}) is expected


def test_a_container_name_in_use_is_recognised_on_docker_and_podman() -> None:
    assert name_in_use(409, 'Conflict. The container name "/grocker-lock-1" is already in use')
    podman = (
        'container create: creating container storage: the container name "grocker-lock-1" is already in use '
        "by 13b5028d. You have to remove that container to be able to reuse that name: that name is already in use"
    )
    assert name_in_use(500, podman)
    assert not name_in_use(500, "no space left on device")
    assert not name_in_use(404, "No such image: debian:trixie")
