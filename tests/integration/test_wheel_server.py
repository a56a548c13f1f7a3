"""The wheel server of a build serves the files of its wheel lock, nothing else, to its network only.

A compile fills the wheel volume (wheels, locks, hashes and origins, maybe other projects'
wheels); then the chain's own wheel server step runs against the real engine, as the runner
build runs it, while probe containers ask it for every file of the volume.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from grocker import api, layout
from grocker.chain import wheel_server
from grocker.chain.build import BuildResult
from grocker.chain.session import Session
from grocker.engine import endpoint
from grocker.engine.connection import connect
from grocker.engine.docker import DockerEngine
from grocker.labels import CHECK
from grocker.naming import internal_labels, internal_names
from grocker.wheels import WheelLock
from tests.integration.helpers import Grocker

# Lists the volume's files, then asks the server for each (and for the root): "STATUS PATH".
_PROBE = """
import os, sys, urllib.error, urllib.parse, urllib.request
host, volume = sys.argv[1], sys.argv[2]
paths = ["/", "/.grocker/"]
for folder, _dirs, files in os.walk(volume):
    paths += ["/" + os.path.relpath(os.path.join(folder, name), volume) for name in files]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for path in paths:
    try:
        status = opener.open("http://" + host + urllib.parse.quote(path), timeout=10).status
    except urllib.error.HTTPError as err:
        status = err.code
    print(status, path, flush=True)
"""
# From outside the build's network: "REACHED" or "UNREACHABLE".
_OUTSIDE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 80), timeout=5).close()
    print("REACHED")
except OSError:
    print("UNREACHABLE")
"""


def _run(engine: DockerEngine, session: Session, script: str, args: Sequence[str], **options: object) -> list[str]:
    """Run a Python script in a container of the build's root image; its output lines."""
    config = session.config
    with engine.container(
        session.names.root,
        role="probe",
        labels=internal_labels(config, CHECK),
        entrypoint=[config.runtime.python, "-c", script],
        command=list(args),
        **options,  # type: ignore[arg-type]
    ) as probe:
        status, lines = probe.run(lambda line: None)
    assert status == 0, lines
    return [line for line in lines if line]


def _answers(engine: DockerEngine, session: Session, served: wheel_server.Served) -> dict[str, int]:
    """What the server answers, from its network, for every file of the volume: path -> status."""
    lines = _run(
        engine,
        session,
        _PROBE,
        [served.container.ip_address(), layout.SERVE_MOUNT],
        network=served.network,
        volumes={session.names.volume: (layout.SERVE_MOUNT, "ro")},
    )
    return {path: int(status) for status, path in (line.split(" ", 1) for line in lines)}


def _served(lock: WheelLock) -> set[str]:
    # The runner's steps run pypa/installer, compiled: the pip wheel is not served.
    return {f"/{wheel.file}" for wheel in (lock.application, *lock.dependencies, lock.runner_installer)}


def test_wheel_server_serves_only_the_lock_to_the_build_network(
    grocker: Grocker, pure_wheel: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    compiled = grocker.run("build", str(pure_wheel), "-n", grocker.name("served"), "--no-build-image", "--no-push")
    assert compiled.returncode == 0, compiled.output
    config = api.load_config(cwd=tmp_path)
    build = api.prepare_build(
        str(pure_wheel), config, image_name="served:1", build_dependencies=False, push=False, cwd=tmp_path
    )
    # Grocker's own engine object, on the engine of the tests (DOCKER_HOST); connected after the
    # compile, whose minutes would leave its first connection idle until the engine drops it.
    engine = connect(endpoint.from_environment(os.environ))
    request.addfinalizer(engine.api.close)
    session = Session(
        engine, build, internal_names(config, build.pip), BuildResult(build.release.text, build.image_name, "test")
    )

    # The lock of the release, read from the volume, as a run with --no-build-dependencies does.
    with wheel_server.serve(session, None) as served:
        answers = _answers(engine, session, served)
        outside = _run(engine, session, _OUTSIDE, [served.container.ip_address()])
    lock = served.lock
    assert lock.application.file.startswith("grocker_fixture_pure-1.0.0-")
    # The publisher recorded that the pure fixture and pip hold no ELF file: no gate for them.
    assert (lock.application.elf, lock.installer.elf) == (False, False)
    assert {path for path, status in answers.items() if status == 200} == _served(lock)
    others = {path: status for path, status in answers.items() if path not in _served(lock)}
    # The volume's metadata (this lock among them) is there, and not served.
    assert any(path.startswith("/.grocker/locks/") for path in others)
    assert set(others.values()) == {404}, others
    # A container that is not on the build's network cannot even connect.
    assert outside == ["UNREACHABLE"]

    # Another project's lock: the wheels of this one that it does not name are not served.
    assert lock.wheel_installer is not None
    other = WheelLock(lock.application, (), lock.installer, wheel_installer=lock.wheel_installer)
    with wheel_server.serve(session, other) as served:
        answers = _answers(engine, session, served)
    six = next(f"/{wheel.file}" for wheel in lock.dependencies if wheel.file.startswith("six-"))
    assert answers[six] == 404
    assert {path for path, status in answers.items() if status == 200} == _served(other)
