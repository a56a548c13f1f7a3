"""Bad input through the real CLI: the right exit code, one paragraph naming the fault, and
nothing left behind on the engine.

Other builds may share the engine while these tests run, so "nothing left behind" is not
judged by listing the engine's containers before and after: each run talks to the engine
through a relay (`EngineWatch`) that records the requests it sends, which tells exactly
what this run created. A mistake that the CLI's validation catches must not reach the
engine at all.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.integration.helpers import REPO_ROOT, Grocker

DEFAULT_SOCKET = "/var/run/docker.sock"
# Phase lines ("build root image X: failed after 3.1s") may precede an engine-side failure.
_PHASE_RE = re.compile(r"^\S.*: (failed after )?[\d.]+s( \(.*\))?$")


class EngineWatch:
    """A relay in front of the engine's socket that records every request sent through it."""

    def __init__(self, directory: Path, target: str) -> None:
        self.path = directory / "engine.sock"
        self._target = target
        self._lock = threading.Lock()
        self._streams: list[bytearray] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.path))
        self._server.listen(32)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        """The DOCKER_HOST value that goes through the relay."""
        return f"unix://{self.path}"

    def clear(self) -> None:
        """Forget the requests recorded so far."""
        with self._lock:
            self._streams = []

    def requests(self) -> list[str]:
        """`METHOD /path?query` of each request sent since the last clear()."""
        with self._lock:
            streams = [bytes(stream) for stream in self._streams]
        pattern = re.compile(rb"(GET|POST|PUT|DELETE|HEAD) (/\S*) HTTP/1\.[01]\r\n")
        return [f"{m.group(1).decode()} {m.group(2).decode()}" for s in streams for m in pattern.finditer(s)]

    def created_containers(self) -> list[str]:
        """Names of the containers created through the relay."""
        names = []
        for request in self.requests():
            method, _, target = request.partition(" ")
            url = urllib.parse.urlsplit(target)
            if method == "POST" and url.path.endswith("/containers/create"):
                names += urllib.parse.parse_qs(url.query).get("name", ["<unnamed>"])
        return names

    def close(self) -> None:
        """Stop accepting connections."""
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self._target)
        except OSError:
            client.close()
            return
        record = bytearray()
        with self._lock:
            self._streams.append(record)
        back = threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True)
        back.start()
        self._pump(client, upstream, record)
        back.join()
        client.close()
        upstream.close()

    def _pump(self, source: socket.socket, sink: socket.socket, record: bytearray | None) -> None:
        try:
            while data := source.recv(65536):
                if record is not None:
                    with self._lock:
                        record += data
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def engine_socket() -> str:
    """The unix socket path of the engine under test (the relay supports unix sockets only)."""
    host = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    if not host.startswith("unix://"):
        pytest.fail(f"the engine relay needs a unix socket, DOCKER_HOST is {host}: run this file on the local engine")
    return host[len("unix://") :]


@pytest.fixture(scope="module")
def watch(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineWatch]:
    """A relay to the engine under test, for the whole module."""
    relay = EngineWatch(tmp_path_factory.mktemp("watch"), engine_socket())
    yield relay
    relay.close()


@dataclass
class Outcome:
    """A finished CLI run."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    args: Sequence[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
    timeout: float = 600,
) -> Outcome:
    """`python -m grocker ARGS` in a subprocess, without the machine's pip settings."""
    full_env = {name: value for name, value in os.environ.items() if not name.startswith(("PIP_", "DOCKER_"))}
    full_env.update(PIP_CONFIG_FILE=os.devnull, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(REPO_ROOT))
    full_env.update(env or {})
    start = time.monotonic()
    completed = subprocess.run(
        [*prefix, sys.executable, "-m", "grocker", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Outcome(completed.returncode, completed.stdout, completed.stderr, time.monotonic() - start)


def error_message(outcome: Outcome) -> str:
    """The one `error:` paragraph of a failed run, after checking every other stderr line."""
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.stdout == "", outcome.output
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, outcome.stderr
    for line in outcome.stderr.splitlines():
        assert line.startswith(("error: ", "warning: ", "  | ")) or _PHASE_RE.match(line), (
            f"stray line {line!r} in:\n{outcome.stderr}"
        )
    return errors[0][len("error: ") :]


def assert_nothing_left(client: docker.DockerClient, watch: EngineWatch, image_name: str | None) -> None:
    """No container this run created is still there, and the image name points at nothing."""
    for name in watch.created_containers():
        left = client.containers.list(all=True, filters={"name": f"^/{re.escape(name)}$"})
        assert left == [], f"container {name} was left behind"
    if image_name is not None:
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(image_name)


@pytest.fixture
def cli(watch: EngineWatch, tmp_path: Path) -> Callable[..., Outcome]:
    """Run the CLI in `tmp_path` through the relay; return a function giving its Outcome."""

    def run(*args: str) -> Outcome:
        watch.clear()
        return run_cli(args, tmp_path, env={"DOCKER_HOST": watch.host})

    return run


# (id, config file text or None, arguments before RELEASE, RELEASE, exit code, words the message names)
VALIDATION_CASES = [
    (
        "yaml-syntax",
        "runtime: trixie/3.13\nports: [8080\nenv: {}\n",
        [],
        "grocker-fixture-pure==1.0.0",
        3,
        ["grocker.yml, line 3", "not valid YAML", "started at line 2"],
    ),
    (
        "config-is-a-list",
        "- runtime: trixie/3.13\n",
        [],
        "grocker-fixture-pure==1.0.0",
        3,
        ["grocker.yml", "mapping", "not a list"],
    ),
    (
        "unknown-key",
        "runtme: trixie/3.13\n",
        [],
        "grocker-fixture-pure==1.0.0",
        3,
        ["`runtme`", "Did you mean `runtime`?"],
    ),
    (
        "unknown-nested-key",
        "dependencies:\n  runn: [libpq5]\n",
        [],
        "grocker-fixture-pure==1.0.0",
        3,
        ["dependencies.runn", "Did you mean `run`?"],
    ),
    ("wrong-type", "ports: 8080\n", [], "grocker-fixture-pure==1.0.0", 3, ["`ports`", "must be a list", "8080"]),
    (
        "unknown-runtime-in-config",
        "runtime: trixie/2.7\n",
        [],
        "grocker-fixture-pure==1.0.0",
        3,
        ["Unknown runtime 'trixie/2.7'", "grocker.yml", "trixie/3.13", "bookworm/3.11"],
    ),
    (
        "unknown-runtime-option",
        None,
        ["-r", "trixie/2.7"],
        "grocker-fixture-pure==1.0.0",
        2,
        ["Unknown runtime 'trixie/2.7'", "trixie/3.13", "bookworm/3.11"],
    ),
    (
        "retired-runtime",
        None,
        ["-r", "jessie/2.7"],
        "grocker-fixture-pure==1.0.0",
        2,
        ["'jessie/2.7'", "retired", "trixie/3.13"],
    ),
    (
        "retired-runtime-in-config",
        "runtime: stretch/3.6\n",
        [],
        "grocker-fixture-pure==1.0.0",
        3,
        ["'stretch/3.6'", "retired", "grocker.yml"],
    ),
    ("invalid-requirement", None, [], "ipython=8.18.1", 2, ["'ipython=8.18.1'", "not a valid requirement", "=="]),
    ("unpinned-without-n", None, [], "ipython", 2, ["'ipython'", "no exact version", "-n"]),
    ("range-without-n", None, [], "ipython>=8", 2, ["'ipython>=8'", "no exact version", "-n/--image-name"]),
    (
        "url-requirement",
        None,
        [],
        "app @ https://example.invalid/app-1.0.tar.gz",
        2,
        ["URL requirement", "wheel or sdist"],
    ),
    ("bare-url", None, [], "https://example.invalid/app-1.0.tar.gz", 2, ["URL requirement"]),
    ("marker", None, [], 'ipython==8.18.1; python_version >= "3.8"', 2, ["environment marker", "; ..."]),
    ("missing-path", None, [], "./dist/app-1.0.tar.gz", 2, ["looks like a path", "does not exist"]),
    (
        "other-platform-wheel",
        None,
        [],
        "foo-1.0-cp313-cp313-win_amd64.whl",
        2,
        ["foo-1.0-cp313-cp313-win_amd64.whl", "win_amd64", "does not install", "Linux"],
    ),
    ("invalid-image-name", None, ["-n", "My App:1.0"], "ipython==8.18.1", 2, ["'My App:1.0'", "Docker reference"]),
    ("env-without-equals", None, ["--env", "DEBUG"], "ipython==8.18.1", 2, ["--env 'DEBUG'", "`=`", "NAME=VALUE"]),
    ("port-not-a-port", None, ["--port", "http"], "ipython==8.18.1", 2, ["`ports`", "'http'", "1-65535"]),
    ("port-out-of-range", None, ["--port", "70000"], "ipython==8.18.1", 2, ["`ports`", "'70000'", "1-65535"]),
    (
        "missing-constraints-in-config",
        "pip_constraint: constraints/missing.txt\n",
        [],
        "ipython==8.18.1",
        3,
        ["`pip_constraint`", "missing.txt", "does not exist"],
    ),
    (
        "repository-key-not-pgp",
        "repositories:\n  corp:\n    uri: deb http://apt.example.invalid/debian trixie main\n    key: ssh-rsa AAAA\n",
        [],
        "ipython==8.18.1",
        3,
        ["repositories.corp.key", "PGP public key", "gpg --armor --export"],
    ),
    (
        "repository-without-uri",
        "repositories:\n  corp:\n    key: x\n",
        [],
        "ipython==8.18.1",
        3,
        ["repositories.corp.uri", "missing"],
    ),
    (
        "dependencies-pre-6",
        "dependencies: [libpq5]\n",
        [],
        "ipython==8.18.1",
        3,
        ["`dependencies`", "before 6.0", "run:", "build:"],
    ),
    ("missing-config-file", None, ["-c", "nowhere.yml"], "ipython==8.18.1", 3, ["nowhere.yml", "does not exist"]),
    # Hardening (issues 11 and 13): refused before the engine is touched.
    (
        "repository-credentials",
        "repositories:\n  corp:\n    uri: deb https://deploy:S3cretPassw0rd@apt.example.invalid/debian trixie main\n"
        "    key: |\n      -----BEGIN PGP PUBLIC KEY BLOCK-----\n      x\n      -----END PGP PUBLIC KEY BLOCK-----\n",
        [],
        "ipython==8.18.1",
        3,
        ["repositories.corp.uri", "credentials", "auth.conf", "local mirror", "deploy:****@"],
    ),
    (
        "constraint-outside-the-config-folder",
        "pip_constraint: ../../../../../../etc/passwd\n",
        [],
        "ipython==8.18.1",
        3,
        ["`pip_constraint`", "outside the directory of this file", "--pip-constraint"],
    ),
    ("duplicate-key", "ports: [80]\nports: [81]\n", [], "ipython==8.18.1", 3, ["'ports' twice", "lines 1 and 2"]),
    (
        "alias-bomb",
        "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
        + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdef", "bcdefg", strict=True))
        + "ports: *g\n",
        [],
        "ipython==8.18.1",
        3,
        ["YAML aliases", "Write the values out"],
    ),
    (
        "runtime-field-typo",
        "runtimes:\n  mine/3.13:\n    imgae: debian:trixie\n",
        [],
        "ipython==8.18.1",
        3,
        ["runtimes.mine/3.13.imgae", "Did you mean `image`?"],
    ),
    (
        "package-with-a-redirection",
        "dependencies:\n  run: ['py3-foo>=1.2']\n",
        [],
        "ipython==8.18.1",
        3,
        ["dependencies.run", "'py3-foo>=1.2'", "py3-foo=1.2"],
    ),
    (
        "result-file-under-a-file",
        "ports: []\n",
        ["--result-file", "grocker.yml/result.yml"],
        "ipython==8.18.1",
        3,
        ["--result-file", "is not a directory"],
    ),
    (
        "musl-wheel-on-debian",
        None,
        [],
        "foo-1.0-cp313-cp313-musllinux_1_2_x86_64.whl",
        2,
        ["musllinux_1_2_x86_64", "glibc", "does not install"],
    ),
]


@pytest.mark.parametrize(
    ("config", "options", "release", "code", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in VALIDATION_CASES],
)
def test_validation_error(
    cli: Callable[..., Outcome],
    grocker: Grocker,
    watch: EngineWatch,
    tmp_path: Path,
    config: str | None,
    options: list[str],
    release: str,
    code: int,
    words: list[str],
) -> None:
    (tmp_path / "foo-1.0-cp313-cp313-win_amd64.whl").write_bytes(b"")
    (tmp_path / "foo-1.0-cp313-cp313-musllinux_1_2_x86_64.whl").write_bytes(b"")
    args = ["build", *options]
    if config is not None:
        (tmp_path / "grocker.yml").write_text(config)
        args += ["-c", "grocker.yml"]
    name = None
    if "-n" not in options and release not in ("ipython", "ipython>=8"):
        name = grocker.name("invalid")
        args += ["-n", name]

    outcome = cli(*args, "--no-push", release)

    assert outcome.returncode == code, outcome.output
    message = error_message(outcome)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert watch.requests() == [], "a mistake found by validation must not reach the engine"
    assert "S3cretPassw0rd" not in outcome.output
    assert not (tmp_path / "result.yml").exists()
    assert_nothing_left(grocker.client, watch, name)


def test_missing_constraints_option(cli: Callable[..., Outcome], grocker: Grocker, watch: EngineWatch) -> None:
    name = grocker.name("noconstraint")

    outcome = cli("build", "--pip-constraint", "missing.txt", "-n", name, "ipython==8.18.1")

    # click checks the option itself: its usage error names the option and the file.
    assert outcome.returncode == 2, outcome.output
    assert "Error: Invalid value for '--pip-constraint'" in outcome.stderr
    assert "'missing.txt' does not exist" in outcome.stderr
    assert "Traceback" not in outcome.output
    assert watch.requests() == []
    assert_nothing_left(grocker.client, watch, name)


def test_pip_conf_devnull_means_no_pip_settings(cli: Callable[..., Outcome], watch: EngineWatch) -> None:
    # As PIP_CONFIG_FILE=/dev/null does for pip; it used to be refused as a file that "does not exist".
    outcome = cli("build", "--pip-conf", os.devnull, "--dry-run", "ipython==8.18.1")

    assert outcome.returncode == 0, outcome.output
    assert "pip settings from: none" in outcome.stdout
    assert watch.requests() == []


def test_missing_system_package_fails_the_root_build(
    cli: Callable[..., Outcome],
    grocker: Grocker,
    watch: EngineWatch,
    tmp_path: Path,
) -> None:
    (tmp_path / "grocker.yml").write_text("dependencies:\n  run: [grocker-test-no-such-package]\n")
    name = grocker.name("nopackage")

    outcome = cli("build", "-c", "grocker.yml", "-n", name, "--no-push", "grocker-fixture-pure==1.0.0")

    assert outcome.returncode == 5, outcome.output
    message = error_message(outcome)
    assert "root image build failed because" in message
    assert "no system package named grocker-test-no-such-package" in message
    assert "dependencies.run" in message
    assert "Unable to locate package grocker-test-no-such-package" in outcome.stderr
    assert watch.requests(), "this mistake is only found by the engine"
    assert_nothing_left(grocker.client, watch, name)
    root_tags = [r for r in watch.requests() if "/tag?" in r]
    assert root_tags == [], "a failed root build must not be tagged"


def test_engine_not_answering(grocker: Grocker, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    name = grocker.name("noengine")

    outcome = run_cli(
        ["build", "-n", name, "--no-push", "grocker-fixture-pure==1.0.0"],
        tmp_path,
        env={"DOCKER_HOST": f"tcp://127.0.0.1:{closed_port}"},
    )

    assert outcome.returncode == 4, outcome.output
    message = error_message(outcome)
    assert f"cannot reach the Docker engine at tcp://127.0.0.1:{closed_port}" in message
    assert "DOCKER_HOST" in message
    assert "docker info" in message
    assert_nothing_left(grocker.client, _NoWatch(), name)


def test_engine_silent(grocker: Grocker, tmp_path: Path) -> None:
    """An engine that accepts the connection but never answers fails fast, not after minutes."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]

        outcome = run_cli(
            ["build", "-n", "grocker-test-silent:1", "--no-push", "grocker-fixture-pure==1.0.0"],
            tmp_path,
            env={"DOCKER_HOST": f"tcp://127.0.0.1:{port}"},
            timeout=120,
        )

    assert outcome.returncode == 4, outcome.output
    message = error_message(outcome)
    assert f"tcp://127.0.0.1:{port}" in message
    assert "did not answer" in message
    assert outcome.seconds < 60


def test_socket_without_permission(grocker: Grocker, tmp_path: Path) -> None:
    path = engine_socket()
    mode = os.stat(path).st_mode
    if mode & stat.S_IWOTH:
        pytest.fail(f"{path} is writable by everyone, so no user lacks permission: restore its mode (0660)")
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run the CLI as an unprivileged user"
    # nobody, with only the right to read and traverse folders, so that it can run this
    # interpreter and read the sources wherever they are, but not write to the socket.
    prefix = [
        setpriv,
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
        "--",
    ]
    tmp_path.chmod(0o777)
    name = grocker.name("denied")
    # An empty DOCKER_HOST (a CI script's `export DOCKER_HOST=`) means the default socket.
    env = {"DOCKER_HOST": "" if path == DEFAULT_SOCKET else f"unix://{path}"}

    outcome = run_cli(["build", "-n", name, "--no-push", "grocker-fixture-pure==1.0.0"], tmp_path, env, prefix)

    assert outcome.returncode == 4, outcome.output
    message = error_message(outcome)
    assert f"the Docker engine at unix://{path} (" in message
    assert "permission denied" in message
    assert "`docker` group" in message
    assert "adduser" in message
    assert_nothing_left(grocker.client, _NoWatch(), name)


class _NoWatch(EngineWatch):
    """For runs that never reach the engine: no relay, nothing created."""

    def __init__(self) -> None:
        pass

    def requests(self) -> list[str]:
        return []
