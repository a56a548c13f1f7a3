"""A fleet compiles each sdist once: three engines with no shared disk, one registry between them.

The engines are the session's and two private dockerds (own data roots, own bridges); the only
thing they share is a registry process of this module's own, on a port of its own (never the
machine's localhost:5000, which the module stops and tampers with). The application is an sdist
on an index served from the host whose build writes a random value into its wheel: an image that
holds the first engine's value got its wheel from the registry, not from a compile.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import yaml

from tests.integration.engines import PrivateEngine, start_engine
from tests.integration.helpers import Grocker, package_fixture, poll_until

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
REGISTRY_PORT = 24650
INDEX_PORT = 24651
APP = "grocker-fixture-fleet==1.0.0"
WHEELS_TYPE = "application/vnd.grocker.wheels.v1"


@dataclass
class Fleet:
    """The module's registry, index and engines (the session's first), and the first build."""

    prefix: str
    registry_root: Path
    registry: subprocess.Popen[bytes]
    registry_config: Path
    pip_conf: Path
    engines: list[tuple[docker.DockerClient, dict[str, str]]]
    private: list[PrivateEngine]
    folder: Path

    def build(self, grocker: Grocker, engine: int, name: str, *args: str) -> tuple[str, dict[str, object]]:
        result_file = self.folder / f"result-{uuid.uuid4().hex[:6]}.yml"
        built = grocker.run(
            "build",
            APP,
            "--pip-conf",
            str(self.pip_conf),
            "--image-prefix",
            self.prefix,
            "-n",
            f"{self.prefix}/{name}",
            "--result-file",
            str(result_file),
            *args,
            env=self.engines[engine][1],
        )
        assert built.returncode == 0, built.output
        return built.stderr, yaml.safe_load(result_file.read_text())

    def value(self, engine: int, name: str) -> str:
        client = self.engines[engine][0]
        container = client.containers.run(f"{self.prefix}/{name}", detach=True)
        try:
            container.wait()
            return str(container.logs().decode().strip())
        finally:
            container.remove()

    def layers(self, engine: int, name: str) -> list[str]:
        return list(self.engines[engine][0].api.inspect_image(f"{self.prefix}/{name}")["RootFS"]["Layers"])


def _host_gateway(client: docker.DockerClient) -> str:
    """The host's address on the session engine's bridge: containers of every engine reach it."""
    gateway = client.networks.get("bridge").attrs["IPAM"]["Config"][0].get("Gateway")
    return str(gateway or "172.17.0.1")


def _start_registry(root: Path) -> tuple[subprocess.Popen[bytes], Path]:
    root.mkdir(parents=True)
    config = root / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
                "http": {"addr": f"127.0.0.1:{REGISTRY_PORT}"},
                "log": {"level": "warn"},
            }
        )
    )
    binary = shutil.which("docker-registry")
    assert binary is not None, "apt-get install docker-registry"
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{REGISTRY_PORT}/v2/", timeout=3):
                return True
        except OSError:
            return False

    poll_until(answers, 20, "the module's registry answering", stop_if=lambda: process.poll() is not None)
    return process, config


def _serve_index(folder: Path, sdist: Path) -> http.server.ThreadingHTTPServer:
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    project = folder / "simple" / "grocker-fixture-fleet"
    project.mkdir(parents=True)
    shutil.copy(sdist, folder / sdist.name)
    (project / "index.html").write_text(f'<a href="../../{sdist.name}#sha256={digest}">{sdist.name}</a>\n')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", INDEX_PORT), handler)  # noqa: S104 (containers reach it)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def fleet(
    grocker: Grocker, docker_client: docker.DockerClient, dist_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("fleet")
    sdist = package_fixture("fleet-app", dist_dir)
    index = _serve_index(folder / "index", sdist)
    gateway = _host_gateway(docker_client)
    pip_conf = folder / "pip.conf"
    pip_conf.write_text(
        "[global]\nindex-url = https://pypi.org/simple/\n"
        f"extra-index-url = http://{gateway}:{INDEX_PORT}/simple/\ntrusted-host = {gateway}\n"
        "cert = /etc/ssl/certs/ca-certificates.crt\n"
    )
    registry, config = _start_registry(folder / "registry")
    private: list[PrivateEngine] = []
    prefix = f"127.0.0.1:{REGISTRY_PORT}/fleet-{uuid.uuid4().hex[:8]}"
    try:
        for _ in range(2):
            private.append(start_engine(bridge_name="grfleet", net="10.246"))
        engines = [(docker_client, {}), *((engine.client(), engine.env) for engine in private)]
        yield Fleet(prefix, folder / "registry", registry, config, pip_conf, engines, private, folder)
    finally:
        for engine in private:
            engine.stop()
        if registry.poll() is None:
            registry.terminate()
            registry.wait(timeout=10)
        index.shutdown()
        for image in docker_client.images.list():
            for tag in image.tags:
                if tag.startswith(f"{prefix}/"):
                    with contextlib.suppress(docker.errors.APIError):
                        docker_client.images.remove(tag)


def _manifest(prefix: str, repository: str, tag: str) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://{prefix.split('/')[0]}/v2/{prefix.split('/', 1)[1]}/{repository}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return dict(json.loads(response.read()))


def _tags(prefix: str, repository: str) -> list[str]:
    url = f"http://{prefix.split('/')[0]}/v2/{prefix.split('/', 1)[1]}/{repository}/tags/list"
    with urllib.request.urlopen(url, timeout=10) as response:
        return list(json.loads(response.read())["tags"])


def test_three_engines_compile_once_and_build_the_same_layers(fleet: Fleet, grocker: Grocker) -> None:
    first, result = fleet.build(grocker, 0, "app:first", "--push")
    assert "1 compiled" in first, first
    assert result["wheels"]["compiled"] == 1
    repository = "grocker-trixie-3.13-wheels"
    tags = _tags(fleet.prefix, repository)
    assert sorted(tag.split("-")[0] for tag in tags) == ["lock", "sdist"], tags
    manifest = _manifest(fleet.prefix, repository, next(tag for tag in tags if tag.startswith("sdist-")))
    assert manifest["artifactType"] == WHEELS_TYPE
    value = fleet.value(0, "app:first")
    assert value.startswith("fleet value ")
    assert "unset" not in value

    # A fresh engine's build of the release under the name the registry holds: pulled, not built.
    client = fleet.engines[2][0]
    since = int(time.time())  # the private engine runs on this machine: the same clock
    stderr, pulled = fleet.build(grocker, 2, "app:first", "--push")
    host = fleet.prefix.split("/")[0]
    assert f"app:first is up to date in {host} (built from the same inputs by Grocker" in stderr, stderr
    assert pulled["pulled_from"] == host
    assert pulled["hash"] == result["hash"], "the image the first engine pushed"
    repository = f"{fleet.prefix}/app"
    assert f"{repository}@{result['hash']}" in client.images.get(f"{fleet.prefix}/app:first").attrs["RepoDigests"]
    created = client.events(since=since, until=int(time.time()) + 1, filters={"type": "container"}, decode=True)
    assert [event["Actor"]["Attributes"].get("name") for event in created] == [], (
        "no container: no compile, no publisher"
    )
    assert "push" not in stderr, "nothing pushed"
    assert fleet.value(2, "app:first") == value

    # Under another name, each fresh engine builds from the fleet's wheels: the same layers.
    for engine in (1, 2):
        stderr, result = fleet.build(grocker, engine, f"app:engine{engine}", "--no-push")
        assert "pull compiler image" in stderr, "the engine has no disk of the first: it pulls"
        assert result["wheels"]["registry"] == 1, stderr
        assert result["wheels"]["compiled"] == 0
        assert "build wheel of" not in stderr, "nothing compiled"
        assert fleet.value(engine, f"app:engine{engine}") == value
        assert fleet.layers(engine, f"app:engine{engine}") == fleet.layers(0, "app:first")


def test_a_tampered_blob_is_refused_and_compiled_again(fleet: Fleet, grocker: Grocker) -> None:
    client = fleet.engines[1][0]
    blobs = fleet.registry_root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
    repository = "grocker-trixie-3.13-wheels"
    manifest = _manifest(fleet.prefix, repository, _tags(fleet.prefix, repository)[0])
    layers: list[dict[str, str]] = manifest["layers"]  # type: ignore[assignment]
    wheel = next(layer for layer in layers if layer["mediaType"].endswith("wheel.v1+zip"))
    hexdigest = wheel["digest"].split(":")[1]
    data = blobs / hexdigest[:2] / hexdigest / "data"
    original = data.read_bytes()
    data.write_bytes(original[:-10] + b"0123456789")
    try:
        _remove_wheel_volumes(client)
        stderr, result = fleet.build(grocker, 1, "app:tampered", "--no-push")
    finally:
        data.write_bytes(original)
    assert "is not the file its digest names: refused" in stderr, stderr
    assert result["wheels"]["compiled"] == 1
    assert fleet.value(1, "app:tampered").startswith("fleet value ")


def test_a_registry_stopped_mid_build_gives_a_warning_and_a_correct_image(fleet: Fleet, grocker: Grocker) -> None:
    """The registry answers at the start (the compiler image is there), and stops once the compile starts."""
    client = fleet.engines[2][0]
    _remove_wheel_volumes(client)
    repository = "grocker-trixie-3.13-wheels"
    for tag in _tags(fleet.prefix, repository):
        if tag.startswith("lock-"):  # the build must resolve, fetch the sdist, then ask for its wheel
            _delete_manifest(fleet.prefix, repository, tag)
    result_file = fleet.folder / "stopped.yml"
    command = [sys.executable, "-m", "grocker", "-v", "build", APP, "--pip-conf", str(fleet.pip_conf)]
    command += ["--image-prefix", fleet.prefix, "-n", f"{fleet.prefix}/app:stopped", "--no-push"]
    command += ["--result-file", str(result_file)]
    lines = []
    with subprocess.Popen(
        command, env={**os.environ, **fleet.engines[2][1]}, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    ) as build:
        assert build.stderr is not None
        for line in build.stderr:
            lines.append(line)
            if "compile wheels of" in line and fleet.registry.poll() is None:
                fleet.registry.terminate()
                fleet.registry.wait(timeout=10)
    stderr = "".join(lines)
    assert build.returncode == 0, stderr
    assert fleet.registry.poll() is not None, "the registry was stopped during the build"
    warnings = [line for line in lines if "fleet cache" in line]
    assert len(warnings) == 1, stderr
    assert "the registry cannot be reached" in warnings[0]
    assert yaml.safe_load(result_file.read_text())["wheels"]["compiled"] == 1
    assert fleet.value(2, "app:stopped").startswith("fleet value ")


def _delete_manifest(prefix: str, repository: str, tag: str) -> None:
    host, path = prefix.split("/", 1)
    head = urllib.request.Request(
        f"http://{host}/v2/{path}/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(head, timeout=10) as response:  # noqa: S310
        digest = response.headers["Docker-Content-Digest"]
    delete = urllib.request.Request(f"http://{host}/v2/{path}/{repository}/manifests/{digest}", method="DELETE")
    with urllib.request.urlopen(delete, timeout=10):  # noqa: S310
        pass


def _remove_wheel_volumes(client: docker.DockerClient) -> None:
    """A private engine's wheel volumes: its next build starts from an empty volume."""
    for volume in client.volumes.list(filters={"label": "grocker.image.role=wheel"}):
        volume.remove(force=True)
