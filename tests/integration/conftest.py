"""Integration tests: real images on a real engine.

When CI is set and no engine answers, the suite fails instead of skipping. Every image a test
names is removed at the end of the session, unless GROCKER_TEST_KEEP=1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import yaml

REGISTRY = "localhost:5000"
BASE_IMAGES = ("debian:trixie", "debian:bookworm")
REPO_ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of the engine under test; fail in CI, skip elsewhere, when none answers."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception as err:  # noqa: BLE001 - any failure means "no engine"
        message = f"no Docker engine answers ({err}); .ci/run starts one"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
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


@dataclass
class Run:
    """A finished `grocker` invocation."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Grocker:
    """Runs the real CLI in a subprocess and remembers the images it names."""

    def __init__(self, client: docker.DockerClient, workdir: Path) -> None:
        self.client = client
        self.workdir = workdir
        self.images: list[str] = []

    def name(self, repository: str = "app", tag: str = "1") -> str:
        """A unique image name, removed at the end of the session."""
        name = f"grocker-test-{repository}-{uuid.uuid4().hex[:8]}:{tag}"
        self.images.append(name)
        return name

    def run(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 900) -> Run:
        """Run `python -m grocker ARGS`; never raises on a non-zero exit."""
        full_env = dict(os.environ)
        full_env.update(env or {})
        completed = subprocess.run(
            [sys.executable, "-m", "grocker", *args],
            cwd=cwd or self.workdir,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Run(completed.returncode, completed.stdout, completed.stderr)

    def build(self, *args: str, **kwargs: object) -> Run:
        """`grocker build ARGS`, asserting success, and remembering the image it prints."""
        result = self.run("build", *args, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, result.output
        image = result.stdout.strip().splitlines()[-1]
        self.images.append(image)
        return result

    def docker_run(self, image: str, *args: str, entrypoint: str | None = None) -> str:
        """Run the image and return what it printed (stdout and stderr)."""
        output = self.client.containers.run(image, list(args), entrypoint=entrypoint, remove=True, stderr=True)
        return output.decode("utf-8")


@pytest.fixture(scope="session")
def grocker(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grocker]:
    """The CLI under test, run from an empty folder (no .grocker.yml)."""
    runner = Grocker(docker_client, tmp_path_factory.mktemp("grocker-cwd"))
    yield runner
    if os.environ.get("GROCKER_TEST_KEEP") == "1":
        return
    for name in runner.images:
        try:
            docker_client.images.remove(name, force=True)
        except docker.errors.APIError:
            pass


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
            {"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
             "http": {"addr": "127.0.0.1:5000"}, "log": {"level": "warn"}}
        )
    )
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not _registry_answers():
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the registry did not start on 127.0.0.1:5000")
        time.sleep(0.2)
    yield REGISTRY
    process.terminate()
    process.wait(timeout=10)


def _registry_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5000), timeout=1):
            pass
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=3):  # noqa: S310 - loopback
            return True
    except OSError:
        return False


def manifest_digest(reference: str) -> str:
    """The registry's digest of a pushed image's manifest (localhost:5000/repo:tag)."""
    registry, _, rest = reference.partition("/")
    repository, _, tag = rest.rpartition(":")
    request = urllib.request.Request(  # noqa: S310 - loopback registry
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                 "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return str(response.headers["Docker-Content-Digest"])


@pytest.fixture(scope="session")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where fixture applications are packaged."""
    return tmp_path_factory.mktemp("dist")


def package_fixture(name: str, dist: Path, kind: str = "sdist", version: str = "1.0.0") -> Path:
    """Build an sdist or wheel of tests/fixtures/NAME (pure-app takes its version from env)."""
    source = REPO_ROOT / "tests" / "fixtures" / name
    with tempfile.TemporaryDirectory() as work:
        copy = Path(work) / name
        shutil.copytree(source, copy)
        out = dist / f"{name}-{version}-{kind}"
        out.mkdir(exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "build", f"--{kind}", "--no-isolation", "--outdir", str(out), str(copy)],
            check=True,
            capture_output=True,
            env={**os.environ, "FIXTURE_VERSION": version},
        )
    (built,) = out.iterdir()
    return built
