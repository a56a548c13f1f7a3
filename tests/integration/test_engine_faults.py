"""Engine faults: a build whose engine connection is cut, or whose engine stops answering.

Grocker reaches the session's engine through a TCP proxy on 127.0.0.1 (tests/integration/
fault_proxy.py) that the test cuts, or stalls, when it sees the build reach a given moment
through its own client: the mutex of the root image's build, the compile container, the wheel
server, a step of the runner's build. Each build ends with exit 4 naming the engine, never "a
bug in Grocker"; once the engine is back, the next Grocker command on it removes what the lost
build left running, and never what a live concurrent build uses.

All builds here use one runtime of this module's own (told apart by the `grocker.runtime`
label), so that the internal images built by the first cuts serve the later ones.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from grocker.engine.connection import connect
from grocker.engine.endpoint import from_environment
from tests.integration.fault_proxy import FaultProxy, fault_proxy
from tests.integration.helpers import Background, Grocker, Run, package_fixture, poll_until
from tests.integration.test_failures import TRIXIE, Project, Projects

RUNTIME_LABEL = "grocker.runtime"
ROLE_LABEL = "grocker.image.role"
LEASE_LABEL = "grocker.lease"
# Private ports of this module's proxies.
PORTS = range(24510, 24600)
TIMEOUT = 10
"""GROCKER_ENGINE_TIMEOUT of the build whose engine stops answering: longer than any silence of
a build whose images are cached, short enough for CI."""

# The moments of the cuts, each shown by a running container the test sees through its own
# client (see _moment_reached).
MOMENTS = ("image build", "compile", "wheel server", "runner build")


@pytest.fixture(scope="module")
def faults_projects(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Projects]:
    made = Projects(docker_client, tmp_path_factory.mktemp("fault-projects"))
    yield made
    if os.environ.get("GROCKER_TEST_KEEP") != "1":
        # A mutex or a build step the engine is removing may go meanwhile.
        for project in made.made:
            for container in _objects(docker_client, project.runtime):
                with contextlib.suppress(docker.errors.NotFound):
                    docker_client.api.remove_container(container["Id"], force=True)
        made.cleanup()


@pytest.fixture(scope="module")
def faults_project(faults_projects: Projects) -> Project:
    return faults_projects.make("faults")


@pytest.fixture(scope="module")
def app(dist_dir: Path) -> Path:
    return package_fixture("pure-app", dist_dir, kind="wheel", version="7.3.0")


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    """A proxy in front of the session's engine (its unix socket), on a free port of this module's range."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        pytest.fail(f"the engine-fault tests need the session's engine on a unix socket, not {host}")
    for port in PORTS:
        with contextlib.suppress(OSError), fault_proxy(port, host.removeprefix("unix://")) as made:
            yield made
            return
    pytest.fail(f"no free port in {PORTS} for the fault proxy")


def _objects(client: docker.DockerClient, runtime: str, role: str = "", running: bool = False) -> list[dict[str, Any]]:
    labels = [f"{RUNTIME_LABEL}={runtime}", *([f"{ROLE_LABEL}={role}"] if role else [])]
    return list(client.api.containers(all=not running, filters={"label": labels}))


def _of_lease(client: docker.DockerClient, lease: str) -> list[str]:
    """The containers and networks that carry the lease `lease`."""
    label = {"label": f"{LEASE_LABEL}={lease}"}
    containers = [c["Names"][0].lstrip("/") for c in client.api.containers(all=True, filters=label)]
    return containers + [n["Name"] for n in client.api.networks(filters=label)]


def _wait_for_role(
    client: docker.DockerClient, runtime: str, role: str, build: Background, not_lease: str = ""
) -> dict[str, Any]:
    """The first running container of `role` (not of lease `not_lease`) the build starts."""

    def seen() -> dict[str, Any] | None:
        for found in _objects(client, runtime, role, running=True):
            if found["Labels"].get(LEASE_LABEL, "") != not_lease or not not_lease:
                return found
        return None

    return poll_until(
        seen,
        300,
        f"a running {role} container of {runtime}",
        interval=0.1,
        stop_if=lambda: build.process.poll() is not None,
        explain=lambda: build.wait(1).output if build.process.poll() is not None else "",
    )


def _assert_lost_engine(run: Run, host: str, *fragments: str) -> None:
    """Exit 4, one `error:` paragraph naming the engine, no traceback, no "bug"."""
    assert run.returncode == 4, run.output
    assert "bug in Grocker" not in run.output
    assert "Traceback" not in run.output
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, run.stderr
    assert f"Docker engine at {host} (from DOCKER_HOST)" in errors[0], run.stderr
    for fragment in fragments:
        assert fragment in errors[0], run.stderr


def _direct_env(grocker: Grocker) -> dict[str, str]:
    """The environment of a command that reaches the session's engine directly (the engine is back)."""
    return {**os.environ, **grocker.env}


def _next_command(grocker: Grocker, runtime: str) -> None:
    """Start the next Grocker command on the engine, reached directly, once the lost build's lease has ended.

    The lease ends by itself when the engine sees the lost build's connection close, a moment
    after the build has exited; a command that starts before that still sees a live build.
    """
    client = grocker.client
    leases = {
        str(labels[LEASE_LABEL])
        for found in [*_objects(client, runtime), *client.api.networks(filters={"label": f"{RUNTIME_LABEL}={runtime}"})]
        if LEASE_LABEL in (labels := found.get("Labels") or {})
    }
    poll_until(lambda: not any(_lease_runs(client, lease) for lease in leases), 20, "the lease ended", interval=0.2)
    connect(from_environment(_direct_env(grocker)))


def _left(client: docker.DockerClient, runtime: str) -> list[str]:
    """The containers and networks of the runtime's builds that are still on the engine."""
    containers = [f"{c['Names'][0].lstrip('/')} ({c['State']})" for c in _objects(client, runtime)]
    networks = [n["Name"] for n in client.api.networks(filters={"label": f"{RUNTIME_LABEL}={runtime}"})]
    return containers + networks


def _moment_reached(client: docker.DockerClient, runtime: str, moment: str, build: Background) -> bool:
    """Whether the build is at `moment`: a running container shows it.

    The root image's build: a step of it, a container of the base image without Grocker's
    labels, while the build holds the root image's mutex. The runner's build: a step of it, a
    container of the root image (it carries the root's role), once the compile is over; by then
    the compiler and wheel-server images were built by the earlier cuts, so no other build's
    steps run from the root image.
    """
    if moment == "image build":
        steps = client.api.containers(filters={"ancestor": TRIXIE["image"]})
        return bool(_objects(client, runtime, "lock", running=True)) and any(
            RUNTIME_LABEL not in (step.get("Labels") or {}) for step in steps
        )
    if moment == "runner build":
        compiled = "compile wheels of " in build.stderr_path.read_text()
        return compiled and bool(_objects(client, runtime, "root", running=True))
    return bool(_objects(client, runtime, moment.replace(" ", "-"), running=True))


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_cut_engine_connection_is_an_engine_error_and_the_next_command_removes_what_was_left(
    grocker: Grocker,
    faults_project: Project,
    app: Path,
    proxy: FaultProxy,
    started: list[Background],
    tmp_path: Path,
    moment: str,
) -> None:
    client, runtime = grocker.client, faults_project.runtime
    build = Background(
        ["build", str(app), "-n", grocker.name("cut"), "--no-push"],
        faults_project.path,
        tmp_path,
        {"DOCKER_HOST": proxy.host},
    )
    started.append(build)
    poll_until(
        lambda: _moment_reached(client, runtime, moment, build),
        300,
        f"the build at its {moment}",
        interval=0.1,
        stop_if=lambda: build.process.poll() is not None,
        explain=lambda: build.wait(1).output if build.process.poll() is not None else "",
    )

    proxy.cut()
    run = build.wait(timeout=120)

    _assert_lost_engine(run, proxy.host, "Grocker lost its connection to")
    left = _left(client, runtime)
    if moment == "wheel server":
        assert any(name.startswith("grocker-wheel-server-") for name in left), left  # nginx runs for ever
    # The engine is back, reached directly: the next command's start removes what the lost build left.
    _next_command(grocker, runtime)
    poll_until(lambda: not _left(client, runtime), 20, f"nothing left of the lost build (was: {left})", interval=0.5)


def test_an_engine_that_stops_answering_fails_after_the_client_timeout(
    grocker: Grocker, faults_project: Project, app: Path, proxy: FaultProxy, started: list[Background], tmp_path: Path
) -> None:
    client, runtime = grocker.client, faults_project.runtime
    # After the cuts, the next build succeeds; and with the internal images built, no step of
    # the build below is silent for the short timeout before the engine stops answering.
    grocker.build(str(app), "-n", grocker.name("after-cuts"), "--no-push", cwd=faults_project.path)
    build = Background(
        ["build", str(app), "-n", grocker.name("stall"), "--no-push", "--refresh"],
        faults_project.path,
        tmp_path,
        {"DOCKER_HOST": proxy.host, "GROCKER_ENGINE_TIMEOUT": str(TIMEOUT)},
    )
    started.append(build)
    seen = _wait_for_role(client, runtime, "compile", build)

    proxy.stall()
    stalled = time.monotonic()
    run = build.wait(timeout=120)
    waited = time.monotonic() - stalled

    _assert_lost_engine(run, proxy.host, f"did not answer within {TIMEOUT} s", "GROCKER_ENGINE_TIMEOUT")
    assert waited < TIMEOUT * 4, waited  # the timeout, and the removals that time out too, not 600 s
    _next_command(grocker, runtime)
    assert _of_lease(client, seen["Labels"][LEASE_LABEL]) == []
    poll_until(lambda: not _left(client, runtime), 20, "nothing left of the stalled build", interval=0.5)


def test_the_next_command_never_touches_a_live_concurrent_build(
    grocker: Grocker,
    faults_project: Project,
    app: Path,
    dist_dir: Path,
    proxy: FaultProxy,
    started: list[Background],
    tmp_path: Path,
) -> None:
    client, runtime = grocker.client, faults_project.runtime
    # The live build: its compile takes a minute (the slow fixture), on the engine reached directly.
    slow = package_fixture("slow-app", dist_dir)
    live = Background(
        ["build", str(slow), "-n", grocker.name("live"), "--no-push"], faults_project.path, tmp_path / "live", {}
    )
    started.append(live)
    live_lease = str(_wait_for_role(client, runtime, "compile", live)["Labels"][LEASE_LABEL])
    lost = Background(
        ["build", str(app), "-n", grocker.name("lost"), "--no-push"],
        faults_project.path,
        tmp_path / "lost",
        {"DOCKER_HOST": proxy.host},
    )
    started.append(lost)
    lost_lease = str(_wait_for_role(client, runtime, "wheel-server", lost, not_lease=live_lease)["Labels"][LEASE_LABEL])

    proxy.cut()
    _assert_lost_engine(lost.wait(timeout=120), proxy.host)
    poll_until(lambda: not _lease_runs(client, lost_lease), 20, "the lost build's lease ended", interval=0.2)
    live_objects = _of_lease(client, live_lease)
    connect(from_environment(_direct_env(grocker)))

    assert _of_lease(client, lost_lease) == []
    assert _of_lease(client, live_lease) == live_objects  # the live build's, all there
    assert live.process.poll() is None
    # Killed, the live build is lost too: its lease ends with the process, and the next command
    # removes what it left.
    live.process.kill()
    live.process.wait()
    poll_until(
        lambda: not _lease_runs(client, live_lease), 20, "the killed build's lease ended by itself", interval=0.3
    )
    connect(from_environment(_direct_env(grocker)))
    assert _of_lease(client, live_lease) == []


def _lease_runs(client: docker.DockerClient, lease: str) -> bool:
    found = client.api.containers(filters={"label": [f"{LEASE_LABEL}={lease}", f"{ROLE_LABEL}=lease"]})
    return bool(found)
