"""Reproducible runner layers: the same root image and wheel lock give the same layers on any engine.

One release is built cold on two engines, the session's and a private dockerd with its own data
root that gets the root image from the registry only; both tests of the module share these builds.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from tests.integration.engines import PrivateEngine, start_engine
from tests.integration.helpers import Grocker

# Where the loopback registry keeps its blobs: the one scripts/setup-machine.sh (and .ci/run)
# starts, else the one the `registry` fixture started under pytest's base folder.
_MACHINE_REGISTRY_CONFIG = Path("/tmp/grocker-registry/config.yml")
# docker-py leaves the unix sockets of the private engines' attach streams to the garbage
# collector; they are closed with their engine, so the warning says nothing about Grocker.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
_MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


@dataclass
class TwoBuilds:
    """The same release built on two engines: `first` on `clients[0]`'s, `second` on `clients[1]`'s."""

    first: str
    second: str
    root_image: str
    clients: tuple[docker.DockerClient, docker.DockerClient]
    second_env: dict[str, str]


def _docker_of(client: docker.DockerClient) -> tuple[str, str]:
    info = client.info()
    return str(info.get("ServerVersion")), str(info.get("Driver"))


@pytest.fixture(scope="module")
def two_builds(
    grocker: Grocker,
    docker_client: docker.DockerClient,
    registry: str,
    pure_wheel: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TwoBuilds]:
    """Build the pure fixture (a local wheel, six and attrs from the index) on two engines.

    The first engine builds and pushes its internal images and its runner; the second, a private
    dockerd with its own data root, starts empty (no base image), pulls the internal images from
    the registry, resolves its own lock and builds its runner without pushing it. An `env` value
    of its own makes both runner builds cold (no cached step) while the first engine may reuse
    its cached root. The engine's archive writer decides the layers' tar headers, which differ
    between Docker versions (see docs/reproducible.rst): the first engine is the session's when
    it is the same Docker as the private one (as in CI), else another private dockerd.
    """
    prefix = f"{registry}/grocker-repro-{uuid.uuid4().hex[:8]}"
    folder = tmp_path_factory.mktemp("repro")
    first, second = f"{prefix}/pure:one", f"{prefix}/pure:two"
    cold = f"GROCKER_TEST_RUN={uuid.uuid4().hex}"
    private: list[PrivateEngine] = []
    try:
        private.append(start_engine())
        clients = [docker_client, private[0].client()]
        envs: list[dict[str, str]] = [{}, private[0].env]
        if _docker_of(docker_client) != _docker_of(clients[1]):
            private.append(start_engine())
            private[1].load("debian:trixie")
            clients[0], envs[0] = private[1].client(), private[1].env
        for env, name, push in ((envs[0], first, "--push"), (envs[1], second, "--no-push")):
            built = grocker.run(
                "build",
                str(pure_wheel),
                "--image-prefix",
                prefix,
                "-n",
                name,
                push,
                "--env",
                cold,
                "--result-file",
                str(folder / "result.yml"),
                env=env,
            )
            assert built.returncode == 0, built.output
            assert "cached layer" not in built.stderr, "the runner build must be cold"  # "1 cached layer" too
        assert "pull root image" in built.stderr, "the second engine must get the root image from the registry"
        root_image = yaml.safe_load((folder / "result.yml").read_text())["root_image"]
        yield TwoBuilds(first, second, root_image, (clients[0], clients[1]), private[0].env)
    finally:
        for engine in private:
            engine.stop()
        # The session's cleanup keeps the images it had before, and a cached root has the ID of
        # one of them: its names under this test's prefix go here.
        for image in docker_client.images.list():
            for tag in image.tags:
                if tag.startswith(f"{prefix}/"):
                    with contextlib.suppress(docker.errors.APIError):
                        docker_client.images.remove(tag)


def test_runner_layers_are_identical_on_two_engines(two_builds: TwoBuilds) -> None:
    first = two_builds.clients[0].api.inspect_image(two_builds.first)
    second = two_builds.clients[1].api.inspect_image(two_builds.second)
    root = two_builds.clients[1].api.inspect_image(two_builds.root_image)
    root_layers = len(root["RootFS"]["Layers"])

    layers = first["RootFS"]["Layers"], second["RootFS"]["Layers"]

    assert len(layers[0]) == root_layers + 2, "one dependency layer and one application layer"
    assert layers[0] == layers[1]
    # The configurations differ (the engines' clocks, builder fields): see docs/reproducible.rst.
    assert first["Id"] != second["Id"]
    differences = sorted(
        key
        for key in set(first) | set(second)
        if key not in {"Id", "RepoTags", "RepoDigests"} and first.get(key) != second.get(key)
    )
    print(f"\nrunner layers {layers[0][-2:]}; configuration fields that differ: {differences}")


def test_second_push_adds_only_the_configuration(
    two_builds: TwoBuilds, registry: str, grocker: Grocker, pure_wheel: Path
) -> None:
    blobs = _blob_folder(registry)
    before = _blobs(blobs)

    pushed = grocker.run(
        "build",
        str(pure_wheel),
        "-n",
        two_builds.second,
        "--no-build-dependencies",
        "--no-build-image",
        "--push",
        env=two_builds.second_env,
    )

    assert pushed.returncode == 0, pushed.output
    added = _blobs(blobs) - before
    repository = two_builds.second.removeprefix(f"{registry}/").rsplit(":", 1)[0]
    one = _manifest(registry, repository, "one")
    two = _manifest(registry, repository, "two")
    two_digest = _manifest_digest(registry, repository, "two")
    # The same compressed layers, hence no new layer blob; only the configuration and the
    # manifest that names it are new (other blobs may come from other builds on this registry).
    assert [layer["digest"] for layer in two["layers"]] == [layer["digest"] for layer in one["layers"]]
    assert added & _referenced(two, two_digest) == {two["config"]["digest"], two_digest}
    sizes = {digest: (blobs / digest[7:9] / digest[7:] / "data").stat().st_size for digest in added}
    print(f"\nsecond push added {len(added)} blobs, {sum(sizes.values())} bytes: {sizes}")


def _referenced(manifest: dict[str, Any], digest: str) -> set[str]:
    return {digest, manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])}


def _blob_folder(registry: str) -> Path:
    if _MACHINE_REGISTRY_CONFIG.is_file():
        root = yaml.safe_load(_MACHINE_REGISTRY_CONFIG.read_text())["storage"]["filesystem"]["rootdirectory"]
        return Path(root) / "docker/registry/v2/blobs/sha256"
    configs = sorted(
        Path("/tmp").glob("pytest-of-*/pytest-*/registry*/config.yml"), key=lambda path: path.stat().st_mtime
    )
    assert configs, f"no storage folder found for the registry {registry}"
    return configs[-1].parent / "data/docker/registry/v2/blobs/sha256"


def _blobs(folder: Path) -> set[str]:
    return {f"sha256:{path.name}" for path in folder.glob("*/*") if (path / "data").is_file()}


def _manifest_request(registry: str, repository: str, tag: str, method: str = "GET") -> urllib.request.Request:
    return urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        headers={"Accept": ", ".join(_MANIFEST_TYPES)},
        method=method,
    )


def _manifest(registry: str, repository: str, tag: str) -> dict[str, Any]:
    with urllib.request.urlopen(_manifest_request(registry, repository, tag), timeout=30) as answer:  # noqa: S310 - the loopback registry, over http
        return dict(json.loads(answer.read()))


def _manifest_digest(registry: str, repository: str, tag: str) -> str:
    with urllib.request.urlopen(_manifest_request(registry, repository, tag, "HEAD"), timeout=30) as answer:  # noqa: S310 - the loopback registry, over http
        return str(answer.headers["Docker-Content-Digest"])
