"""Nothing lost or leaked: failed, interrupted and concurrent builds on a real engine.

Every test here builds with a runtime of its own (a copy of trixie/3.13 under a name unique to
the session), so that its containers, images and wheel volume are told apart, by the
`grocker.runtime` label, from those of other builds running on the same engine. Containers
made from those images inherit the label, the daemon's build-step containers included.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import yaml

from tests.integration.conftest import MatrixEngine
from tests.integration.helpers import Background, Grocker, Run, output_of, package_fixture, poll_until

RUNTIME_LABEL = "grocker.runtime"
TRIXIE = {
    "image": "debian:trixie",
    "family": "debian",
    "python": "python3",
    "python_version": "3.13",
    "dependencies": {"run": ["python3"], "build": ["build-essential", "python3-dev", "python3-venv"]},
}
# A runtime whose root image has no Python: the compile works, the runner build cannot.
NO_PYTHON = {
    **TRIXIE,
    "dependencies": {"run": [], "build": ["python3", "python3-venv", "python3-dev", "build-essential"]},
}
# Checks, in a container of a root image with the wheel volume on /wheels, that every wheel (and
# the compiled installers) is a whole zip file and that every lock names files that exist with
# the recorded hash.
VOLUME_AUDIT = textwrap.dedent(
    """
    import glob, hashlib, json, zipfile
    bad, wheels = [], sorted(glob.glob("/wheels/*.whl") + glob.glob("/wheels/*.zip"))
    for path in wheels:
        try:
            with zipfile.ZipFile(path) as archive:
                if archive.testzip() is not None:
                    bad.append(path)
        except zipfile.BadZipFile:
            bad.append(path)
    for lock_path in glob.glob("/wheels/.grocker/locks/*.json"):
        lock = json.load(open(lock_path))
        compiled = [lock[key] for key in ("installer_compiled", "wheel_installer") if lock.get(key)]
        for entry in [lock["application"], lock["installer"], *compiled, *lock["dependencies"]]:
            try:
                digest = hashlib.sha256(open("/wheels/" + entry["file"], "rb").read()).hexdigest()
            except FileNotFoundError:
                digest = "missing"
            if digest != entry["sha256"]:
                bad.append(lock_path + ": " + entry["file"])
    staging = glob.glob("/wheels/.staging-*") + glob.glob("/wheels/.grocker/tmp/*")
    print(json.dumps({"wheels": len(wheels), "bad": bad, "staging": staging}))
    """
)


@dataclass(frozen=True)
class Project:
    """A folder whose .grocker.yml selects a runtime made for this test session."""

    path: Path
    runtime: str

    def root_image(self, client: docker.DockerClient) -> str | None:
        """The ID of this runtime's root image, or None when it is not built yet."""
        images = client.api.images(filters={"label": [f"{RUNTIME_LABEL}={self.runtime}", "grocker.image.role=root"]})
        return images[0]["Id"] if images else None

    def volume(self, client: docker.DockerClient) -> str:
        """The name of this runtime's wheel volume."""
        (volume,) = client.volumes.list(
            filters={"label": [f"{RUNTIME_LABEL}={self.runtime}", "grocker.image.role=wheel"]}
        )
        return str(volume.name)


class Projects:
    """Makes projects with fresh runtimes; removes their images and volumes at the end."""

    def __init__(self, client: docker.DockerClient, folder: Path) -> None:
        self.client = client
        self.folder = folder
        self.made: list[Project] = []

    def make(self, family: str = "trixie-ft", definition: dict[str, object] = TRIXIE) -> Project:
        """A project whose runtime `<family>-<random>/3.13` no image or volume uses yet."""
        runtime = f"{family}-{uuid.uuid4().hex[:8]}/3.13"
        path = self.folder / runtime.replace("/", "-")
        path.mkdir()
        config = {"runtime": runtime, "runtimes": {runtime: definition}}
        (path / ".grocker.yml").write_text(yaml.safe_dump(config))
        project = Project(path, runtime)
        self.made.append(project)
        return project

    def cleanup(self) -> None:
        """Remove what the projects' builds left: images (children first) and volumes."""
        for project in self.made:
            label = {"label": f"{RUNTIME_LABEL}={project.runtime}"}
            for container in self.client.api.containers(all=True, filters=label):
                self.client.api.remove_container(container["Id"], force=True)
            images = self.client.api.images(filters=label)
            for image in sorted(images, key=lambda image: image["Created"], reverse=True):
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.api.remove_image(image["Id"], force=True)
            for volume in self.client.volumes.list(filters=label):
                volume.remove(force=True)


@pytest.fixture(scope="module")
def projects(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Projects]:
    made = Projects(docker_client, tmp_path_factory.mktemp("projects"))
    yield made
    if os.environ.get("GROCKER_TEST_KEEP") != "1":
        made.cleanup()


@pytest.fixture(scope="module")
def project(projects: Projects) -> Project:
    """The project most tests build in; the concurrency test, first in this file, warms it."""
    return projects.make()


@pytest.fixture(scope="module")
def engine_projects(engine: MatrixEngine, request: pytest.FixtureRequest) -> Iterator[Projects]:
    """Projects on an engine of the matrix; on the default engine, the module's own."""
    if engine.grocker.env.get("DOCKER_HOST") is None:
        yield request.getfixturevalue("projects")
        return
    made = Projects(engine.client, engine.grocker.workdir / f"projects-{uuid.uuid4().hex[:8]}")
    made.folder.mkdir()
    yield made
    if os.environ.get("GROCKER_TEST_KEEP") != "1":
        made.cleanup()


@pytest.fixture(scope="module")
def engine_project(engine_projects: Projects, engine: MatrixEngine, request: pytest.FixtureRequest) -> Project:
    """The project the core scenarios of this file build in, on the engine under test."""
    if engine.grocker.env.get("DOCKER_HOST") is None:
        return request.getfixturevalue("project")  # type: ignore[no-any-return]
    return engine_projects.make()


@pytest.fixture(scope="module")
def pure_wheel(dist_dir: Path) -> Path:
    return package_fixture("pure-app", dist_dir, kind="wheel", version="7.0.0")


def _containers(client: docker.DockerClient, runtime: str, running: bool = False) -> list[dict[str, str]]:
    found = client.api.containers(all=not running, filters={"label": f"{RUNTIME_LABEL}={runtime}"})
    return [{"name": c["Names"][0].lstrip("/"), "state": c["State"]} for c in found]


def _assert_no_containers(client: docker.DockerClient, runtime: str, within: float = 10.0) -> None:
    """No container of the runtime is left, once the engine had `within` seconds to remove its own."""
    poll_until(lambda: not _containers(client, runtime), within, f"no container of {runtime} left", interval=0.5)


def _image_id(client: docker.DockerClient, name: str) -> str | None:
    try:
        return str(client.api.inspect_image(name)["Id"])
    except docker.errors.ImageNotFound:
        return None


def _assert_failed(run: Run, code: int, *fragments: str) -> None:
    """The exit code, then one paragraph (one `error:` line) and only a log tail below it."""
    assert run.returncode == code, run.output
    assert "Traceback" not in run.output
    lines = run.stderr.splitlines()
    errors = [index for index, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1, run.stderr
    assert all(line.startswith("  | ") for line in lines[errors[0] + 1 :]), run.stderr
    for fragment in fragments:
        assert fragment in run.stderr, run.stderr


def _audit_volume(client: docker.DockerClient, project: Project) -> dict[str, object]:
    root = project.root_image(client)
    assert root is not None
    output = output_of(
        client,
        root,
        ["python3", "-c", VOLUME_AUDIT],
        volumes={project.volume(client): {"bind": "/wheels", "mode": "ro"}},
    )
    audit: dict[str, object] = json.loads(output)
    return audit


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(what: str, condition: Callable[[], bool], process: Background, timeout: float = 300) -> None:
    """Poll `condition()` until true; fail if the build ends first or time runs out."""
    try:
        poll_until(
            condition,
            timeout,
            what,
            stop_if=lambda: process.process.poll() is not None,
            explain=lambda: (
                f"the build's output: {process.wait(1).output}" if process.process.poll() is not None else ""
            ),
        )
    except BaseException:
        process.process.kill()
        raise


# Concurrency: first in the file, so that it finds the project's internal images missing.


def test_concurrent_builds_share_images_and_volume(
    engine: MatrixEngine,
    engine_projects: Projects,
    engine_project: Project,
    dist_dir: Path,
    tmp_path: Path,
    started: list[Background],
) -> None:
    grocker, project = engine.grocker, engine_project
    if project.root_image(grocker.client) is not None:
        project = engine_projects.make()  # run after another test of this file: start from a fresh runtime
    first = package_fixture("pure-app", dist_dir, kind="wheel", version="7.1.0")
    second = package_fixture("pure-app", dist_dir, kind="wheel", version="7.2.0")
    names = [grocker.name("concurrent", "7.1.0"), grocker.name("concurrent", "7.2.0"), grocker.name("ipython")]
    releases = [[str(first)], [str(second)], ["ipython==8.18.1", "-e", "ipython"]]

    started += [
        Background(["build", *release, "-n", name, "--no-push"], project.path, tmp_path / str(index), grocker.env)
        for index, (release, name) in enumerate(zip(releases, names, strict=True))
    ]
    runs = [build.wait(timeout=840) for build in started]

    for run in runs:
        assert run.returncode == 0, run.output
    # One build made each internal image; the others waited for it, then used it.
    for role in ("root", "compiler", "wheel-server"):
        assert sum(f"build {role} image " in run.stderr for run in runs) == 1, [run.stderr for run in runs]
    assert grocker.docker_run(names[0]).strip() == "pureapp 7.1.0 on python 3.13"
    assert grocker.docker_run(names[1]).strip() == "pureapp 7.2.0 on python 3.13"
    assert grocker.docker_run(names[2], "--version").strip() == "8.18.1"
    audit = _audit_volume(grocker.client, project)
    assert audit["bad"] == []
    assert audit["staging"] == []
    # One image per internal role: no build replaced an image another one had already used.
    internal = grocker.client.api.images(filters={"label": f"{RUNTIME_LABEL}={project.runtime}"})
    roles = [
        grocker.client.api.inspect_image(image["Id"])["Config"]["Labels"]["grocker.image.role"] for image in internal
    ]
    assert sorted(role for role in roles if role != "runner") == ["compiler", "root", "wheel-server"]
    _assert_no_containers(grocker.client, project.runtime)


# Failures


def test_compile_failure_keeps_the_previous_image(
    grocker: Grocker, project: Project, pure_wheel: Path, dist_dir: Path
) -> None:
    name = grocker.name("compile-failure")
    grocker.build(str(pure_wheel), "-n", name, "--no-push", cwd=project.path)
    previous = _image_id(grocker.client, name)
    cext = package_fixture("cext-app", dist_dir)

    run = grocker.run("build", str(cext), "-n", name, "--no-push", cwd=project.path)

    _assert_failed(run, 5, "Compiling the wheels of grocker-fixture-cext==1.0.0 failed", "yaml.h", "dependencies.build")
    assert _image_id(grocker.client, name) == previous
    _assert_no_containers(grocker.client, project.runtime)
    grocker.build(str(pure_wheel), "-n", grocker.name("after-compile-failure"), "--no-push", cwd=project.path)
    assert _audit_volume(grocker.client, project)["bad"] == []


def test_runner_failure_keeps_the_previous_image(
    grocker: Grocker, projects: Projects, project: Project, pure_wheel: Path
) -> None:
    name = grocker.name("runner-failure")
    grocker.build(str(pure_wheel), "-n", name, "--no-push", cwd=project.path)
    previous = _image_id(grocker.client, name)
    no_python = projects.make("nopy", NO_PYTHON)

    run = grocker.run("build", str(pure_wheel), "-n", name, "--no-push", cwd=no_python.path)

    # The ABI gate runs the root image's python first: it is the one to say so, before any runner.
    _assert_failed(run, 5, "could not run in the root image", "it has no python3")
    assert "compile wheels of grocker-fixture-pure==7.0.0: " in run.stderr
    assert _image_id(grocker.client, name) == previous
    _assert_no_containers(grocker.client, no_python.runtime)
    # The volume of the failed build still serves its compile step: its wheel lock is reused.
    again = grocker.run("build", str(pure_wheel), "-n", name, "--no-build-image", cwd=no_python.path)
    assert again.returncode == 0, again.output
    assert " wheels of the lock of " in again.stderr
    _assert_no_containers(grocker.client, no_python.runtime)


@pytest.fixture(scope="module")
def read_only_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry on its own loopback port that refuses every push."""
    binary = "/usr/bin/docker-registry"
    if not Path(binary).exists():
        pytest.fail("no docker-registry binary (apt-get install docker-registry)")
    root = tmp_path_factory.mktemp("read-only-registry")
    port = _free_port()
    config = {
        "version": 0.1,
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "maintenance": {"readonly": {"enabled": True}},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
        "log": {"level": "warn"},
    }
    (root / "config.yml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [binary, "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def answers() -> bool:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
            return True
        return False

    try:
        poll_until(answers, 20, f"the read-only registry answering on 127.0.0.1:{port}")
    except BaseException:
        process.kill()
        raise
    yield f"localhost:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.mark.parametrize("target", ["read-only", "nothing-listens"])
def test_push_failure(
    grocker: Grocker, project: Project, pure_wheel: Path, tmp_path: Path, target: str, request: pytest.FixtureRequest
) -> None:
    registry = request.getfixturevalue("read_only_registry") if target == "read-only" else f"localhost:{_free_port()}"
    name = f"{registry}/{grocker.name('push-failure')}"
    grocker.images.append(name)
    result_file = tmp_path / "result.yml"

    run = grocker.run("build", str(pure_wheel), "-n", name, "--result-file", str(result_file), cwd=project.path)

    _assert_failed(run, 6, f"push of {name}")
    assert not result_file.exists() or "hash" not in yaml.safe_load(result_file.read_text())
    assert name not in run.stdout
    _assert_no_containers(grocker.client, project.runtime)
    grocker.build(str(pure_wheel), "-n", grocker.name("after-push-failure"), "--no-push", cwd=project.path)


# Interruptions


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupt_during_compile(
    engine: MatrixEngine,
    engine_project: Project,
    pure_wheel: Path,
    dist_dir: Path,
    tmp_path: Path,
    started: list[Background],
    signum: int,
    code: int,
) -> None:
    grocker, project = engine.grocker, engine_project
    slow = package_fixture("slow-app", dist_dir)
    name = grocker.name("interrupted-compile")
    build = Background(["build", str(slow), "-n", name, "--no-push"], project.path, tmp_path, grocker.env)
    started.append(build)

    def compiling() -> bool:
        running = _containers(grocker.client, project.runtime, running=True)
        return any(c["name"].startswith("grocker-compile-") for c in running)

    # A fresh engine first builds the root and compiler images: minutes on a busy machine.
    _wait_for("running compile container", compiling, build, timeout=900)
    time.sleep(1)  # let pip start in it: the signal must hit a compile at work, not one being set up
    build.process.send_signal(signum)
    run = build.wait(timeout=30)

    _assert_failed(run, code, f"Interrupted by {signal.Signals(signum).name}")
    _assert_no_containers(grocker.client, project.runtime)
    assert _image_id(grocker.client, name) is None
    # The compile that was killed resolved with the volume read-only: it left nothing there.
    audit = _audit_volume(grocker.client, project)
    assert audit["bad"] == []
    assert audit["staging"] == []
    grocker.build(str(pure_wheel), "-n", grocker.name("after-interrupted-compile"), "--no-push", cwd=project.path)
    audit = _audit_volume(grocker.client, project)
    assert audit["bad"] == []
    assert audit["staging"] == []


@pytest.mark.parametrize(
    ("signum", "code", "times"),
    [(signal.SIGINT, 130, 2), (signal.SIGTERM, 143, 1)],
    ids=["SIGINT-twice", "SIGTERM"],
)
def test_interrupt_during_runner_build(
    grocker: Grocker,
    project: Project,
    pure_wheel: Path,
    tmp_path: Path,
    started: list[Background],
    signum: int,
    code: int,
    times: int,
) -> None:
    name = grocker.name("interrupted-runner")
    args = ["build", "ipython==8.18.1", "-e", "ipython", "-n", name, "--no-push", "--env", f"BUST={uuid.uuid4()}"]
    build = Background(args, project.path, tmp_path)
    started.append(build)

    def installing() -> bool:
        running = _containers(grocker.client, project.runtime, running=True)
        serving = any(c["name"].startswith("grocker-wheel-server-") for c in running)
        # The daemon's container for a RUN step of the runner build carries the root image's labels.
        return serving and any(not c["name"].startswith("grocker-") for c in running)

    _wait_for("runner build step", installing, build)
    for _ in range(times):  # a second Ctrl-C, while Grocker removes its containers, is ignored
        build.process.send_signal(signum)
        time.sleep(0.1)
    run = build.wait(timeout=30)

    _assert_failed(run, code, f"Interrupted by {signal.Signals(signum).name}")
    _assert_no_containers(grocker.client, project.runtime)
    assert _image_id(grocker.client, name) is None
    grocker.build(str(pure_wheel), "-n", grocker.name("after-interrupted-runner"), "--no-push", cwd=project.path)
