"""Integration tests: real images on a real engine.

When CI is set and no engine answers, the suite fails instead of skipping. Every image a test
names is removed at the end of the session, unless GROCKER_TEST_KEEP=1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import yaml

from tests.integration.engines import PrivateEngine, start_engine
from tests.integration.helpers import Background, Grocker, package_fixture, poll_until

REGISTRY = "localhost:5000"
BASE_IMAGES = ("debian:trixie", "debian:bookworm")
# The engine matrix that scripts/start-engines.sh starts; docker-20.10 is the session's own engine.
ENGINE_HOSTS = {
    "docker-20.10": None,
    "docker-26": "tcp://127.0.0.1:23751",
    "docker-26-containerd": "tcp://127.0.0.1:23752",
    "podman-5": "tcp://127.0.0.1:23753",
}


def selected_engines() -> list[str]:
    """The engines the core scenarios run on: GROCKER_TEST_ENGINES, comma-separated (default docker-20.10)."""
    names = [name.strip() for name in os.environ.get("GROCKER_TEST_ENGINES", "docker-20.10").split(",") if name.strip()]
    unknown = sorted(set(names) - set(ENGINE_HOSTS))
    if unknown:
        raise pytest.UsageError(f"GROCKER_TEST_ENGINES names unknown engines {unknown}; known: {sorted(ENGINE_HOSTS)}")
    return names


@dataclass
class MatrixEngine:
    """One engine of the matrix: its name, a docker-py client, and the CLI pointed at it."""

    name: str
    client: docker.DockerClient
    grocker: Grocker

    @property
    def is_podman(self) -> bool:
        return self.name.startswith("podman")

    @property
    def is_containerd(self) -> bool:
        return self.name.endswith("-containerd")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        if "engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.matrix)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of the engine under test; fail in CI, skip elsewhere, when none answers."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception as err:
        # Never a skip, in CI or not: a skipped integration suite would read as a passing one.
        pytest.fail(f"no Docker engine answers ({err}); scripts/setup-machine.sh starts one")
    missing = [name for name in BASE_IMAGES if not _has_image(client, name)]
    if missing:
        pytest.fail(f"base images {missing} are missing: run scripts/import-debian-image.sh SUITE")
    yield client
    client.close()


def _has_image(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


@pytest.fixture(scope="session")
def grocker(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grocker]:
    """The CLI under test, run from an empty folder (no .grocker.yml)."""
    runner = Grocker(docker_client, tmp_path_factory.mktemp("grocker-cwd"))
    with _removing_what_the_tests_add(docker_client, runner):
        yield runner


@contextlib.contextmanager
def _removing_what_the_tests_add(client: docker.DockerClient, runner: Grocker) -> Iterator[None]:
    """Remove, at the end, the images the tests named and the Grocker objects they added."""
    # What Grocker already had here belongs to the machine's user: only what the tests add goes.
    images_before = {image.id for image in client.images.list(filters={"label": "grocker.version"})}
    volumes_before = {volume.name for volume in client.volumes.list(filters={"label": "grocker.version"})}
    yield
    if os.environ.get("GROCKER_TEST_KEEP") == "1":
        return
    for name in runner.images:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(name, force=True)
    # Runners first, then compiler and wheel server, then root: children before parents.
    order = {"runner": 0, "compiler": 1, "wheel-server": 1, "minimal-base": 1, "root": 2}
    added = [
        image for image in client.images.list(filters={"label": "grocker.version"}) if image.id not in images_before
    ]
    for image in sorted(added, key=lambda image: order.get(image.labels.get("grocker.image.role", ""), 0)):
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image.id, force=True)
    for volume in client.volumes.list(filters={"label": "grocker.version"}):
        if volume.name not in volumes_before:
            with contextlib.suppress(docker.errors.APIError):
                volume.remove()


@pytest.fixture(scope="session", params=selected_engines())
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[MatrixEngine]:
    """An engine of the matrix (GROCKER_TEST_ENGINES); one that is listed and does not answer fails."""
    name = str(request.param)
    host = ENGINE_HOSTS[name]
    if host is None:
        yield MatrixEngine(name, docker_client, request.getfixturevalue("grocker"))
        return
    client = docker.DockerClient(base_url=host, timeout=600)
    client.api.trust_env = False  # as grocker.engine: no proxy, no REQUESTS_CA_BUNDLE, for an engine
    try:
        client.ping()
    except (docker.errors.DockerException, OSError) as err:
        log = subprocess.run(
            ["docker", "logs", "--tail", "30", f"grocker-engine-{name}"], capture_output=True, text=True, check=False
        )
        pytest.fail(
            f"engine {name} does not answer at {host} ({err}); scripts/start-engines.sh starts it. "
            f"Its log:\n{log.stdout}{log.stderr}"
        )
    missing = [base for base in BASE_IMAGES if not _has_image(client, base)]
    if missing:
        pytest.fail(f"engine {name} lacks the base images {missing}: run scripts/start-engines.sh {name}")
    runner = Grocker(client, tmp_path_factory.mktemp(f"grocker-cwd-{name}"), env={"DOCKER_HOST": host})
    with _removing_what_the_tests_add(client, runner):
        yield MatrixEngine(name, client, runner)
    client.close()


@pytest.fixture(scope="session")
def tls_engine(docker_client: docker.DockerClient) -> Iterator[PrivateEngine]:
    """A second engine on loopback TCP with TLS, holding debian:trixie; one for the session."""
    engine = start_engine(tls=True)
    try:
        engine.load("debian:trixie")
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def registry(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry on loopback: the one .ci/run started, or one started here."""
    if _registry_answers():
        yield REGISTRY
        return
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("no registry on localhost:5000 and no docker-registry binary (apt-get install docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    config = root / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
                "http": {"addr": "127.0.0.1:5000"},
                "log": {"level": "warn"},
            }
        )
    )
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        poll_until(
            _registry_answers,
            20,
            "the registry answering on 127.0.0.1:5000",
            stop_if=lambda: process.poll() is not None,
        )
    except BaseException:
        process.kill()
        raise
    yield REGISTRY
    process.terminate()
    process.wait(timeout=10)


def _registry_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5000), timeout=1):
            pass
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where fixture applications are packaged."""
    return tmp_path_factory.mktemp("dist")


@pytest.fixture(scope="session")
def pure_wheel(dist_dir: Path) -> Path:
    """A wheel of tests/fixtures/pure-app 1.0.0 (pure Python, depends on six and attrs)."""
    return package_fixture("pure-app", dist_dir, kind="wheel", version="1.0.0")


@pytest.fixture
def started() -> Iterator[list[Background]]:
    """The background builds a test starts; any still running at its end is killed."""
    builds: list[Background] = []
    yield builds
    for build in builds:
        if build.process.poll() is None:
            build.process.kill()
            build.process.wait()
