"""How Grocker reads what engines answer: the differences between Docker's stores and Podman."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest
import requests

from grocker.engine.cleanup import age
from grocker.engine.connection import uses_containerd_store
from grocker.engine.containers import name_in_use
from grocker.engine.docker import DockerEngine, push_digest, unpacked_size
from grocker.engine.protocol import rfc3339_epoch
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


def _engine(podman: bool, containerd_store: bool = False) -> tuple[DockerEngine, _RefusingApi]:
    api = _RefusingApi()
    where = "the Docker engine at tcp://127.0.0.1:23753"
    engine = DockerEngine(SimpleNamespace(api=api), where, podman=podman, containerd_store=containerd_store)  # type: ignore[arg-type]
    return engine, api


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


def _api_error(status: int, explanation: str, kind: type[docker.errors.APIError] = docker.errors.APIError) -> Exception:
    response = requests.Response()
    response.status_code = status
    return kind(f"{status} error", response=response, explanation=explanation)


class _PurgeApi:
    """The low-level API answers purge reads: an image's names, a network and its members."""

    def __init__(self, members: dict[str, Any] | None = None, refusal: Exception | None = None) -> None:
        self.members = members or {}
        self.refusal = refusal
        self.removed: list[str] = []

    def inspect_image(self, image_id: str) -> dict[str, Any]:
        return {"RepoTags": ["app:1", "registry.example/app:1"], "RepoDigests": ["registry.example/app@" + DIGEST]}

    def remove_image(self, reference: str, force: bool, noprune: bool) -> None:
        assert not force
        if "@" in reference:  # gone with its repository's last tag
            raise _api_error(404, "No such image", docker.errors.NotFound)
        self.removed.append(reference)

    def inspect_network(self, name: str) -> dict[str, Any]:
        if name == "gone":
            raise _api_error(404, "network gone not found", docker.errors.NotFound)
        return {"Name": name, "Containers": self.members}

    def remove_network(self, name: str) -> None:
        if self.refusal is not None:
            raise self.refusal
        self.removed.append(name)


def _purge_engine(api: _PurgeApi) -> DockerEngine:
    return DockerEngine(SimpleNamespace(api=api), "the Docker engine at tcp://127.0.0.1:23752")  # type: ignore[arg-type]


def test_untag_removes_every_name_never_the_image_by_id() -> None:
    api = _PurgeApi()
    assert _purge_engine(api).untag_image("sha256:" + "1" * 64) is None
    assert api.removed == ["app:1", "registry.example/app:1"]


def test_a_network_with_members_is_kept_without_asking_to_remove_it() -> None:
    api = _PurgeApi(members={"c" * 64: {"Name": "grocker-wheel-server-1a2b"}})
    reason = _purge_engine(api).try_remove_network("grocker-net-1")
    assert reason == "network is in use by container grocker-wheel-server-1a2b"
    assert api.removed == []


@pytest.mark.parametrize(
    "refusal",
    [
        _api_error(403, "error while removing network: network grocker-net-1 id 1a2b has active endpoints"),
        _api_error(500, '"grocker-net-1" has associated containers with it. Use -f: network is being used'),
    ],
    ids=["docker", "podman"],
)
def test_a_network_the_engine_says_is_in_use_is_kept(refusal: Exception) -> None:
    reason = _purge_engine(_PurgeApi(refusal=refusal)).try_remove_network("grocker-net-1")
    assert reason is not None
    assert reason.startswith("network is in use: ")


def test_a_network_gone_meanwhile_is_removed_and_other_refusals_are_engine_errors() -> None:
    assert _purge_engine(_PurgeApi()).try_remove_network("gone") is None
    with pytest.raises(EngineError) as failure:
        _purge_engine(_PurgeApi(refusal=_api_error(500, "disk on fire"))).try_remove_network("grocker-net-1")
    assert failure.value.exit_code == 4
    assert "failed to remove a network (grocker-net-1): disk on fire" in str(failure.value)


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        (1799999910, 90.0),  # containers: epoch seconds
        ("2027-01-15T07:59:00.123456789Z", 60.0),  # networks: RFC 3339, nanoseconds dropped
        ("2027-01-15T08:59:30+01:00", 30.0),
        ("2027-01-15T08:00:05Z", 0.0),  # a clock a little ahead is no negative age
        ("not a time", None),
        (None, None),
        (0, None),
    ],
)
def test_ages_are_counted_on_the_engine_s_clock(created: object, expected: float | None) -> None:
    now = rfc3339_epoch("2027-01-15T08:00:00Z")
    assert now == 1800000000.0
    assert age(now, created) == expected
    assert age(None, created) is None


@pytest.mark.parametrize(
    ("podman", "containerd_store", "expected"),
    [(False, False, ["sha256:" + "1" * 64]), (True, False, None), (False, True, None)],
    ids=["docker", "podman", "docker-containerd-store"],
)
def test_cache_sources_go_to_docker_with_overlay2_only(podman: bool, containerd_store: bool, expected: object) -> None:
    # Buildah would read them as repositories to pull from; Docker 26's classic builder on the
    # containerd store fails to restore a cached step from them.
    engine, api = _engine(podman, containerd_store)
    with pytest.raises(EngineError):
        engine.build(
            {"Dockerfile": b"FROM scratch\n"},
            labels={},
            what="runner image",
            on_line=print,
            cache_from=["sha256:" + "1" * 64],
        )
    assert api.build_kwargs["cache_from"] == expected


def test_no_cache_sources_is_no_parameter() -> None:
    engine, api = _engine(podman=False)
    with pytest.raises(EngineError):
        engine.build({"Dockerfile": b"FROM scratch\n"}, labels={}, what="runner image", on_line=print)
    assert api.build_kwargs["cache_from"] is None


class _ListingApi:
    """The low-level API's image listing: the images of every label filter given, as the engine answers."""

    def __init__(self) -> None:
        self.filters: dict[str, Any] = {}

    def images(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        self.filters = filters
        return [
            {"Id": "sha256:" + "1" * 64, "Created": 100, "Labels": {"grocker.app.name": "app"}},
            {"Id": "sha256:" + "2" * 64, "Created": 300, "Labels": None},  # Podman's answer for none
            {"Id": "sha256:" + "1" * 64, "Created": 100, "Labels": {"grocker.app.name": "app"}},  # once per tag
        ]


def test_labelled_images_are_the_newest_first_once_each_with_their_labels() -> None:
    api = _ListingApi()
    engine = DockerEngine(SimpleNamespace(api=api), "the Docker engine", podman=False)  # type: ignore[arg-type]

    found = engine.labelled_images({"grocker.image.role": "runner", "grocker.app.name": "app"})

    assert [image.id for image in found] == ["sha256:" + "2" * 64, "sha256:" + "1" * 64]
    assert [dict(image.labels) for image in found] == [{}, {"grocker.app.name": "app"}]
    assert api.filters == {"label": ["grocker.app.name=app", "grocker.image.role=runner"]}
