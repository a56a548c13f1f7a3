"""Index credentials never leak: not in an image, its history or metadata, nor in what Grocker
prints or writes, after a build that succeeds and after one that fails.

The application comes from a private index of ours that requires HTTP basic auth with a random
token: a small Python server in a container on the engine's default bridge, where the compile
container reaches it. Each version of the application is new to the shared wheel volume, so
every successful build really resolves against the private index.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import secrets
import socket
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import yaml

from grocker.api import load_config
from grocker.naming import InternalNames, internal_names
from tests.integration.helpers import Grocker, package_fixture, poll_until
from tests.integration.test_bad_input import EngineWatch, Outcome, engine_socket, run_cli

USER = "ci-reader"
PORT = 8080
PACKAGE = "grocker-fixture-pure"

SERVER = """\
import functools, http.server

EXPECTED = open("/srv/auth").read().strip()


class Handler(http.server.SimpleHTTPRequestHandler):
    def allowed(self):
        if self.headers.get("Authorization") == EXPECTED:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="private"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_GET(self):
        if self.allowed():
            super().do_GET()

    def do_HEAD(self):
        if self.allowed():
            super().do_HEAD()


handler = functools.partial(Handler, directory="/srv/index")
http.server.ThreadingHTTPServer(("", PORT), handler).serve_forever()
""".replace("PORT", str(PORT))

# Asks the server from inside its container: prints the HTTP status with and without the token.
PROBE = """\
import sys, urllib.error, urllib.request
def status(headers):
    request = urllib.request.Request("http://127.0.0.1:PORT/simple/", headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=5).status
    except urllib.error.HTTPError as err:
        return err.code
print(status({}), status({"Authorization": open("/srv/auth").read().strip()}))
""".replace("PORT", str(PORT))


@dataclass
class PrivateIndex:
    """The running private index and what it serves."""

    address: str
    token: str
    versions: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"http://{USER}:{self.token}@{self.address}:{PORT}/simple/"

    @property
    def needles(self) -> tuple[bytes, ...]:
        """The token as written, and inside the Authorization header pip sends."""
        header = base64.b64encode(f"{USER}:{self.token}".encode())
        return self.token.encode(), header


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _index_files(wheels: list[Path]) -> dict[str, bytes]:
    """A PEP 503 simple index holding the wheels."""
    links = "".join(
        f'<a href="../../packages/{w.name}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">{w.name}</a>\n'
        for w in wheels
    )
    files = {f"srv/index/packages/{w.name}": w.read_bytes() for w in wheels}
    files["srv/index/simple/index.html"] = f'<html><body><a href="{PACKAGE}/">{PACKAGE}</a></body></html>\n'.encode()
    files[f"srv/index/simple/{PACKAGE}/index.html"] = f"<html><body>\n{links}</body></html>\n".encode()
    return files


def _default_names(tmp_path_factory: pytest.TempPathFactory) -> InternalNames:
    return internal_names(load_config(cwd=tmp_path_factory.mktemp("no-config")))


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> InternalNames:
    """Internal names of the default configuration, which every build here uses."""
    return _default_names(tmp_path_factory)


@pytest.fixture(scope="module")
def private_index(
    grocker: Grocker, dist_dir: Path, names: InternalNames, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrivateIndex]:
    """Serve three new versions of the pure fixture app behind basic auth, from Grocker's root image."""
    client = grocker.client
    try:
        client.images.get(names.root)
    except docker.errors.ImageNotFound:
        # The server runs in the default root image (it has python3): build it once.
        bootstrap = package_fixture("pure-app", dist_dir, kind="wheel", version="1.0.0")
        grocker.build(str(bootstrap), "-n", grocker.name("bootstrap"), "--no-push", "--no-build-image")
    serial = uuid.uuid4().int % 10**6
    versions = tuple(f"3.{serial}.{patch}" for patch in range(3))
    wheels = [package_fixture("pure-app", dist_dir, kind="wheel", version=version) for version in versions]
    token = secrets.token_hex(20)
    files = _index_files(wheels)
    files["srv/server.py"] = SERVER.encode()
    files["srv/probe.py"] = PROBE.encode()
    files["srv/auth"] = ("Basic " + base64.b64encode(f"{USER}:{token}".encode()).decode()).encode()
    # Not named grocker-*: it is the test's server, not a container Grocker runs.
    created = client.api.create_container(
        names.root, command=["python3", "/srv/server.py"], name=f"private-index-{uuid.uuid4().hex[:8]}", user="root"
    )
    try:
        client.api.put_archive(created["Id"], "/", _tar(files))
        client.api.start(created["Id"])

        def answers() -> bool:
            probe = client.api.exec_create(created["Id"], ["python3", "/srv/probe.py"])
            return bool(client.api.exec_start(probe["Id"]).decode().strip() == "401 200")

        poll_until(answers, 30, "the private index answering 401 without and 200 with its token")
        address = client.api.inspect_container(created["Id"])["NetworkSettings"]["IPAddress"]
        assert address, "the private index has no address on the default bridge"
        yield PrivateIndex(address, token, versions)
    finally:
        client.api.remove_container(created["Id"], force=True)


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
    missing = f"3.{private_index.versions[0].split('.')[1]}.9"
    plan = [(v, f"{PACKAGE}=={version}") for v, version in enumerate(private_index.versions)]
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
    masked = f"http://{USER}:****@{private_index.address}:{PORT}/simple/"
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
