"""Index credentials never leak: not in an image, its history or metadata, nor in what Grocker
prints or writes, after a build that succeeds and after one that fails.

The application comes from a private index of ours that requires HTTP basic auth with a random
token: a small Python server in a container on the engine's default bridge, where the compile
container reaches it. Each version of the application is new to the shared wheel volume, so
every successful build really resolves against the private index.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import yaml

from grocker.api import load_config
from grocker.config.pipconf import PipSettings
from grocker.naming import InternalNames, internal_names
from tests.integration.helpers import Grocker, package_fixture
from tests.integration.private_index import USER, PrivateIndex, serve
from tests.integration.test_bad_input import EngineWatch, Outcome, engine_socket, run_cli

PACKAGE = "grocker-fixture-pure"

# Three new versions of the pure fixture app, unknown to any other index.
_SERIAL = uuid.uuid4().int % 10**6
VERSIONS = tuple(f"3.{_SERIAL}.{patch}" for patch in range(3))


def _default_names(tmp_path_factory: pytest.TempPathFactory) -> InternalNames:
    return internal_names(load_config(cwd=tmp_path_factory.mktemp("no-config")), PipSettings())


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> InternalNames:
    """Internal names of the default configuration, which every build here uses."""
    return _default_names(tmp_path_factory)


@pytest.fixture(scope="module")
def private_index(
    grocker: Grocker, dist_dir: Path, names: InternalNames, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrivateIndex]:
    """Serve three new versions of the pure fixture app behind basic auth, from Grocker's root image."""
    wheels = [package_fixture("pure-app", dist_dir, kind="wheel", version=version) for version in VERSIONS]
    with serve(grocker, dist_dir, names, {PACKAGE: wheels}, "private-index") as index:
        yield index


@dataclass
class Build:
    """One build against the private index."""

    verbosity: int
    release: str
    image: str
    outcome: Outcome
    result_file: Path
    containers: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.outcome.returncode == 0


@pytest.fixture(scope="module")
def builds(grocker: Grocker, private_index: PrivateIndex, tmp_path_factory: pytest.TempPathFactory) -> list[Build]:
    """Three builds that succeed and three that fail, at default verbosity, -v and -vv."""
    work = tmp_path_factory.mktemp("secrets")
    pip_conf = work / "private-pip.conf"
    pip_conf.write_text(
        "[global]\n"
        "index-url = https://pypi.org/simple\n"
        f"extra-index-url = {private_index.url}\n"
        f"trusted-host = {private_index.address}\n"
        "cert = /etc/ssl/certs/ca-certificates.crt\n"
    )
    watch = EngineWatch(tmp_path_factory.mktemp("secrets-watch"), engine_socket())
    missing = f"3.{VERSIONS[0].split('.')[1]}.9"
    plan = [(v, f"{PACKAGE}=={version}") for v, version in enumerate(VERSIONS)]
    plan += [(v, f"{PACKAGE}=={missing}") for v in range(3)]
    done = []
    for index, (verbosity, release) in enumerate(plan):
        image = grocker.name("secret")
        result_file = work / f"result-{index}.yml"
        flags = ["-" + "v" * verbosity] if verbosity else []
        args = [*flags, "build", release, "-n", image, "--no-push", "--pip-conf", str(pip_conf)]
        watch.clear()
        outcome = run_cli([*args, "--result-file", str(result_file)], work, env={"DOCKER_HOST": watch.host})
        done.append(Build(verbosity, release, image, outcome, result_file, watch.created_containers()))
    watch.close()
    return done


def test_builds_from_the_private_index(grocker: Grocker, builds: list[Build], names: InternalNames) -> None:
    for build in builds[:3]:
        assert build.succeeded, build.outcome.output
        version = build.release.split("==")[1]
        assert grocker.docker_run(build.image).strip() == f"pureapp {version} on python 3.13"
        result = yaml.safe_load(build.result_file.read_text())
        assert (result["root_image"], result["compiler_image"]) == (names.root, names.compiler)


def test_a_version_the_index_lacks_fails_the_build(grocker: Grocker, builds: list[Build]) -> None:
    for build in builds[3:]:
        assert build.outcome.returncode == 5, build.outcome.output
        assert f"Compiling the wheels of {build.release} failed" in build.outcome.stderr
        assert "No matching distribution found" in build.outcome.stderr
        assert not build.result_file.exists()
        with pytest.raises(docker.errors.ImageNotFound):
            grocker.client.images.get(build.image)


def test_token_not_in_output_nor_result_file(builds: list[Build], private_index: PrivateIndex) -> None:
    for build in builds:
        texts = {"stdout and stderr": build.outcome.output}
        if build.result_file.exists():
            texts["result file"] = build.result_file.read_text()
        for what, text in texts.items():
            for needle in private_index.needles:
                assert needle.decode() not in text, f"{what} of {build.release} at -v×{build.verbosity}"


def test_token_not_in_any_image(
    grocker: Grocker, builds: list[Build], private_index: PrivateIndex, names: InternalNames
) -> None:
    images = [names.root, names.compiler, names.wheel_server, *(b.image for b in builds if b.succeeded)]
    assert len(images) == 6
    for image in images:
        metadata = json.dumps(grocker.client.api.inspect_image(image))
        history = subprocess.run(
            ["docker", "history", "--no-trunc", image], capture_output=True, text=True, check=True
        ).stdout
        for needle in private_index.needles:
            assert needle.decode() not in metadata, f"docker inspect {image}"
            assert needle.decode() not in history, f"docker history {image}"
    # Every byte of every layer, all images in one archive (shared layers once).
    found = _grep_saved_images(images, private_index.needles)
    assert found == set(), f"the token is in a layer of {images}"


def _grep_saved_images(images: list[str], needles: tuple[bytes, ...]) -> set[bytes]:
    overlap = max(len(needle) for needle in needles) - 1
    found: set[bytes] = set()
    total = 0
    with subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE) as saving:
        assert saving.stdout is not None
        previous = b""
        while chunk := saving.stdout.read(1 << 20):
            total += len(chunk)
            window = previous + chunk
            found.update(needle for needle in needles if needle in window)
            previous = window[-overlap:]
    assert saving.returncode == 0
    assert total > 100_000_000, "docker save produced too little to hold these images"
    return found


def test_credentials_are_masked_at_v(builds: list[Build], private_index: PrivateIndex) -> None:
    # Only the token is a secret (issue 11.5): the user name stays, as pip itself shows it.
    masked = f"http://{USER}:****@{private_index.location}"
    for build in builds:
        if build.verbosity == 0:
            continue
        stderr = build.outcome.stderr
        # Grocker's own account of the pip settings, and pip's "Looking in indexes" line.
        assert f"  pip extra-index-url = {masked}" in stderr, stderr
        assert re.search(rf"Looking in indexes: https://pypi\.org/simple, {re.escape(masked)}", stderr), stderr


def test_default_verbosity_prints_no_environment(builds: list[Build]) -> None:
    for build in builds:
        if build.verbosity != 0:
            continue
        dump = [
            line
            for line in build.outcome.output.splitlines()
            if re.match(r"^\W*(PIP_[A-Z_]+|PATH|HOME|HOSTNAME|GROCKER_[A-Z_]+)=", line)
        ]
        assert dump == [], build.outcome.output
        assert "pip settings from" not in build.outcome.output
        assert "  pip index-url = " not in build.outcome.output
        # pip's own lines show only in the tail of a failed compile, and masked there too.
        indexes = [line for line in build.outcome.output.splitlines() if "Looking in indexes" in line]
        if build.succeeded:
            assert indexes == [], build.outcome.output
        else:
            assert indexes, build.outcome.output
            assert all(f"http://{USER}:****@" in line for line in indexes), indexes


def test_no_container_is_left(grocker: Grocker, builds: list[Build]) -> None:
    for build in builds:
        assert any(name.startswith("grocker-compile-") for name in build.containers), build.containers
        for name in build.containers:
            left = grocker.client.containers.list(all=True, filters={"name": f"^/{re.escape(name)}$"})
            assert left == [], f"{name} (it held the pip settings) was left behind by {build.release}"


@pytest.mark.parametrize("verbosity", [0, 2])
def test_token_not_quoted_by_a_pip_conf_error(tmp_path: Path, verbosity: int) -> None:
    token = secrets.token_hex(20)
    pip_conf = tmp_path / "pip.conf"
    # No [global] header: the parser's own message would quote the line, token included.
    pip_conf.write_text(f"extra-index-url = https://{USER}:{token}@pypi.example.invalid/simple/\n")
    flags = ["-vv"] if verbosity else []
    # A closed port: were the engine reached, the exit code would be 4, not 3.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]

    outcome = run_cli(
        [*flags, "build", "--pip-conf", str(pip_conf), "-n", "grocker-test-badpip:1", "ipython==8.18.1"],
        tmp_path,
        env={"DOCKER_HOST": f"tcp://127.0.0.1:{closed}"},
    )

    assert outcome.returncode == 3, outcome.output
    assert f"pip configuration {pip_conf} cannot be parsed: line 1 comes before any section header" in outcome.stderr
    assert "[global]" in outcome.stderr
    assert token not in outcome.output
    assert ("Traceback" in outcome.stderr) == (verbosity == 2)


@pytest.mark.parametrize("verbosity", ["-v", "-vv"])
def test_a_token_given_as_user_is_hidden_in_relayed_output(
    grocker: Grocker, private_index: PrivateIndex, tmp_path: Path, verbosity: str
) -> None:
    """Issue 20: `https://TOKEN:@host` (Gemfury's form): pip prints the user name, so the token, in clear."""
    pip_conf = tmp_path / "token-as-user.conf"
    pip_conf.write_text(
        "[global]\n"
        "index-url = https://pypi.org/simple\n"
        f"extra-index-url = http://{private_index.token}:@{private_index.location}\n"
        f"trusted-host = {private_index.address}\n"
        "cert = /etc/ssl/certs/ca-certificates.crt\n"
    )
    # A version no index has: the compile fails, and its output's tail is relayed.
    release = f"{PACKAGE}==3.{VERSIONS[0].split('.')[1]}.8"
    image = grocker.name("token-as-user")

    outcome = run_cli([verbosity, "build", release, "-n", image, "--no-push", "--pip-conf", str(pip_conf)], tmp_path)

    assert outcome.returncode == 5, outcome.output
    assert "Looking in indexes" in outcome.stderr
    assert f"http://****:****@{private_index.location}" in outcome.stderr
    assert private_index.token not in outcome.output
