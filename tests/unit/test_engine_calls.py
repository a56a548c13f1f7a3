"""The one door for engine errors: docker-py's low-level client faked behind it, never the protocol.

Whatever docker-py, requests/urllib3 or paramiko raise, in a call or while a stream is read,
reaches the user as an EngineError (exit 4) naming the engine, with the remedy; anything else
(a bug) goes through untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, ClassVar

import docker.errors
import docker.utils.socket
import paramiko
import pytest
import requests
import requests.exceptions
import urllib3.exceptions

from grocker.engine import connection
from grocker.engine._calls import EngineRefusalError, GuardedApi, GuardedStream, is_failure
from grocker.engine.containers import DockerContainer
from grocker.engine.docker import DockerEngine
from grocker.engine.endpoint import Endpoint, engine_timeout, from_environment
from grocker.errors import BuildError, ConfigError, EngineError, GrockerError
from tests.unit.api_fakes import FakeLowLevelApi

DESCRIBED = "the Docker engine at tcp://127.0.0.1:24599 (from DOCKER_HOST)"


def _api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} error", response=response, explanation=explanation)


FAILURES = {
    "api-error": _api_error(500, "disk on fire"),
    "docker-exception": docker.errors.DockerException("Error while fetching server API version"),
    "connection-error": requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected"),
    "read-timeout": requests.exceptions.ReadTimeout("Read timed out. (read timeout=7)"),
    "chunked-encoding": requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
    "urllib3-protocol": urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(0 bytes read)"),
    "urllib3-read-timeout": urllib3.exceptions.ReadTimeoutError(None, "/containers/x/logs", "Read timed out."),
    "incomplete-read": http.client.IncompleteRead(b""),
    "connection-reset": ConnectionResetError(104, "Connection reset by peer"),
    "broken-pipe": BrokenPipeError(32, "Broken pipe"),
    "docker-socket": docker.utils.socket.SocketError("Unexpected EOF"),
    "stream-parse": docker.errors.StreamParseError(ValueError("Expecting value")),
    "paramiko-ssh": paramiko.SSHException("SSH session not active"),
    "paramiko-channel": paramiko.ChannelException(2, "Connect failed"),
}
TIMEOUTS = {"read-timeout", "urllib3-read-timeout"}


class FakeApi:
    """docker-py's APIClient as far as the adapter uses it: canned answers, and `failing` raises."""

    timeout = 7

    def __init__(self, failing: dict[str, BaseException] | None = None) -> None:
        self.failing = failing or {}
        self.calls: list[str] = []
        self.stream_failure: BaseException | None = None

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.failing:
            raise self.failing[name]

    def _stream(self, chunks: list[Any]) -> Iterator[Any]:
        yield from chunks
        if self.stream_failure is not None:
            raise self.stream_failure

    def inspect_image(self, name: str) -> dict[str, Any]:
        self._call("inspect_image")
        return {"Id": "sha256:" + "1" * 64, "RepoTags": [name], "Config": {"Labels": {}}, "Size": 1}

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self._call("build")
        return self._stream([{"stream": "Step 1/2 : FROM debian:trixie\n"}, {"stream": " ---> 1a2b\n"}])

    def push(self, repository: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self._call("push")
        return self._stream([{"status": "Pushing", "id": "1a2b"}])

    def tag(self, *args: Any, **kwargs: Any) -> None:
        self._call("tag")

    def start(self, container: str) -> None:
        self._call("start")

    def logs(self, container: str, **kwargs: Any) -> Any:
        self._call("logs")
        if kwargs.get("stream"):
            return self._stream([b"compiling\n", b"half a li"])
        return b"nginx: [emerg] bind() failed\n"

    def wait(self, container: str, **kwargs: Any) -> dict[str, Any]:
        self._call("wait")
        return {"StatusCode": 0}

    def put_archive(self, container: str, path: str, data: bytes) -> None:
        self._call("put_archive")

    def get_archive(self, container: str, path: str) -> tuple[Iterator[bytes], dict[str, Any]]:
        self._call("get_archive")
        return self._stream([b"\0" * 512]), {}

    def exec_create(self, container: str, command: list[str], **kwargs: Any) -> dict[str, str]:
        self._call("exec_create")
        return {"Id": "exec-1"}

    def exec_start(self, exec_id: str) -> bytes:
        self._call("exec_start")
        return b"ok\n"

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        self._call("exec_inspect")
        return {"Running": False, "ExitCode": 1}

    def inspect_container(self, container: str) -> dict[str, Any]:
        self._call("inspect_container")
        return {"State": {"Running": True}, "NetworkSettings": {"Networks": {"n": {"IPAddress": "10.0.0.2"}}}}

    def remove_container(self, container: str, **kwargs: Any) -> None:
        self._call("remove_container")


def _engine(api: FakeApi) -> DockerEngine:
    return DockerEngine(SimpleNamespace(api=api), DESCRIBED)


def _container(api: FakeApi) -> DockerContainer:
    return DockerContainer(GuardedApi(api, DESCRIBED), DESCRIBED, "c" * 64, "grocker-compile-1a2b")


def _assert_engine_error(error: BaseException, family: str) -> None:
    assert isinstance(error, EngineError), repr(error)
    assert error.exit_code == 4
    message = str(error)
    assert DESCRIBED.removeprefix("the ") in message
    assert "bug" not in message
    assert "`docker info`" in message
    if family in TIMEOUTS:
        assert "did not answer within 7 s" in message
        assert "GROCKER_ENGINE_TIMEOUT" in message
    if family.startswith("paramiko"):
        assert "MaxSessions" in message


@pytest.mark.parametrize("family", sorted(FAILURES))
def test_a_failing_call_becomes_an_engine_error(family: str) -> None:
    engine = _engine(FakeApi({"inspect_image": FAILURES[family]}))

    with pytest.raises(EngineError) as raised:
        engine.image("app:1")

    _assert_engine_error(raised.value, family)
    assert "inspect an image (app:1)" in str(raised.value)
    assert raised.value.__cause__ is FAILURES[family]


@pytest.mark.parametrize("family", sorted(FAILURES.keys() - {"api-error"}))
def test_a_stream_cut_mid_way_becomes_an_engine_error(family: str) -> None:
    # A build's output, a push's, and a container's output followed: each breaks off mid-way.
    api = FakeApi()
    api.stream_failure = FAILURES[family]
    engine, seen = _engine(api), []

    with pytest.raises(EngineError) as built:
        engine.build({"Dockerfile": b"FROM debian:trixie\n"}, labels={}, what="root image", on_line=seen.append)
    with pytest.raises(EngineError) as pushed:
        engine.push("localhost:5000/app:1", seen.append)
    with pytest.raises(EngineError) as ran:
        _container(api).run(seen.append)

    for raised in (built, pushed, ran):
        _assert_engine_error(raised.value, family)
    # Not a failed build step (exit 5) nor a refused push (exit 6): the engine was lost.
    assert not isinstance(built.value, BuildError)
    assert seen[:2] == ["Step 1/2 : FROM debian:trixie", " ---> 1a2b"]
    assert "compiling" in seen


@pytest.mark.parametrize(
    ("operation", "method"),
    [
        ("put_files", "put_archive"),
        ("get_file", "get_archive"),
        ("start", "start"),
        ("run", "logs"),
        ("run", "wait"),
        ("execute", "exec_start"),
        ("exec", "exec_create"),
        ("wait_until", "inspect_container"),
        ("wait_until", "exec_inspect"),
        ("ip_address", "inspect_container"),
    ],
)
@pytest.mark.parametrize("family", ["connection-error", "read-timeout", "urllib3-protocol", "paramiko-ssh"])
def test_every_container_operation_goes_through_the_door(operation: str, method: str, family: str) -> None:
    container = _container(FakeApi({method: FAILURES[family]}))
    calls = {
        "put_files": lambda: container.put_files("/etc/grocker", {"nginx.conf": b""}),
        "get_file": lambda: container.get_file("/wheels/lock.json"),
        "start": container.start,
        "run": lambda: container.run(print),
        "execute": lambda: container.execute(["true"], print),
        "exec": lambda: container.exec(["true"]),
        "wait_until": lambda: container.wait_until(["true"], 0.0, "wheel server"),
        "ip_address": container.ip_address,
    }

    with pytest.raises(GrockerError) as raised:
        calls[operation]()

    _assert_engine_error(raised.value, family)


def test_a_stream_cut_while_a_file_is_read_is_an_engine_error() -> None:
    api = FakeApi()
    api.stream_failure = FAILURES["urllib3-protocol"]

    with pytest.raises(EngineError) as raised:
        _container(api).get_file("/wheels/lock.json")

    _assert_engine_error(raised.value, "urllib3-protocol")


def test_an_engine_refusal_keeps_its_status_and_explanation() -> None:
    engine = _engine(FakeApi({"inspect_image": _api_error(500, "disk on fire")}))

    with pytest.raises(EngineRefusalError) as raised:
        engine.image("app:1")

    assert (raised.value.status_code, raised.value.explanation) == (500, "disk on fire")
    assert not raised.value.not_found
    assert str(raised.value) == (
        "The Docker engine at tcp://127.0.0.1:24599 (from DOCKER_HOST) failed to inspect an image (app:1): "
        "disk on fire. Check that the engine is healthy (`docker info`) and try again."
    )


def test_a_missing_object_is_an_answer_not_an_error() -> None:
    response = requests.Response()
    response.status_code = 404
    missing = docker.errors.ImageNotFound("404", response=response, explanation="No such image: app:1")

    assert _engine(FakeApi({"inspect_image": missing})).image("app:1") is None


@pytest.mark.parametrize("bug", [ValueError("a bug"), KeyError("Id"), TypeError("a bug")])
def test_what_is_not_an_engine_failure_goes_through_untouched(bug: Exception) -> None:
    engine = _engine(FakeApi({"inspect_image": bug}))

    with pytest.raises(type(bug)) as raised:
        engine.image("app:1")

    assert raised.value is bug
    assert not is_failure(bug)


def test_a_container_that_cannot_be_removed_over_a_lost_connection_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    container = _container(FakeApi({"remove_container": FAILURES["connection-reset"]}))

    container.remove()

    assert "could not remove container grocker-compile-1a2b (the engine does not answer)" in caplog.text
    assert "the next Grocker command on this engine removes it" in caplog.text


# The client's timeout: GROCKER_ENGINE_TIMEOUT


@pytest.mark.parametrize(("value", "expected"), [(None, 600), ("", 600), ("5", 5), ("86400", 86400)])
def test_the_engine_timeout_comes_from_the_environment(value: str | None, expected: int) -> None:
    env = {} if value is None else {"GROCKER_ENGINE_TIMEOUT": value}
    assert engine_timeout(env) == expected
    assert from_environment({**env, "DOCKER_HOST": "tcp://127.0.0.1:24599"}).timeout == expected


@pytest.mark.parametrize("value", ["0", "86401", "-5", "1.5", "5s", "1e3", " 5", "ten", "5\n"])
def test_a_bad_engine_timeout_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        from_environment({"GROCKER_ENGINE_TIMEOUT": value, "DOCKER_HOST": "tcp://127.0.0.1:24599"})

    assert raised.value.exit_code == 3
    assert str(raised.value).startswith(f"GROCKER_ENGINE_TIMEOUT is {value!r}: it must be a whole number of seconds")


class _FakeClient:
    """docker.DockerClient at construction and on its first two calls; it records its timeouts."""

    made: ClassVar[list[_FakeClient]] = []

    def __init__(self, base_url: str, tls: object, timeout: int, version: str) -> None:
        self.api = FakeLowLevelApi(timeout=timeout)
        self.first_timeout = timeout
        _FakeClient.made.append(self)

    def version(self, api_version: bool) -> dict[str, Any]:
        return {"ApiVersion": "1.41", "Components": [{"Name": "Engine"}]}

    def info(self) -> dict[str, Any]:
        return {"DriverStatus": [["Backing Filesystem", "extfs"]]}


@pytest.mark.parametrize(("timeout", "first"), [(5, 5), (600, 20)])
def test_connect_waits_at_most_the_timeout_then_sweeps(
    monkeypatch: pytest.MonkeyPatch, timeout: int, first: int
) -> None:
    monkeypatch.setattr(connection.docker, "DockerClient", _FakeClient)
    endpoint = dataclasses.replace(Endpoint("tcp://127.0.0.1:24599", "DOCKER_HOST"), timeout=timeout)

    engine = connection.connect(endpoint)

    client = _FakeClient.made[-1]
    # The first answer comes fast from a healthy engine; later ones may take the whole timeout.
    assert (client.first_timeout, client.api.timeout) == (first, timeout)
    assert engine.build_network_dns
    assert [method for method, _ in client.api.calls] == ["containers", "networks"]  # the sweep


def test_once_the_engine_is_lost_later_calls_fail_at_once_without_reaching_it() -> None:
    api = FakeApi({"start": FAILURES["read-timeout"]})
    container = _container(api)
    with pytest.raises(EngineError) as first:
        container.start()
    api.failing.clear()

    # The removals on the way out would each wait for the timeout again.
    with pytest.raises(EngineError) as later:
        container.ip_address()
    container.remove()

    assert str(later.value) == str(first.value)
    assert api.calls == ["start"]


def test_a_refusal_does_not_count_as_a_lost_engine() -> None:
    api = FakeApi({"start": _api_error(500, "cannot start: no space left on device")})
    container = _container(api)
    with pytest.raises(EngineRefusalError):
        container.start()

    assert container.ip_address() == "10.0.0.2"
    assert api.calls == ["start", "inspect_container"]


class _SilentOutput:
    """A container's output followed: one line, then silence until closed (or `ends` is set)."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.ends = threading.Event()
        self._sent = False

    def __iter__(self) -> _SilentOutput:
        return self

    def __next__(self) -> bytes:
        if not self._sent:
            self._sent = True
            return b"compiling\n"
        while not (self.closed.is_set() or self.ends.is_set()):
            time.sleep(0.01)
        raise StopIteration

    def close(self) -> None:
        self.closed.set()


class _SilentApi(FakeApi):
    timeout = 0.05  # type: ignore[assignment]  # seconds: the watchdog's period

    def __init__(self, failing: dict[str, BaseException] | None = None) -> None:
        super().__init__(failing)
        self.output = _SilentOutput()

    def logs(self, container: str, **kwargs: Any) -> Any:
        self._call("logs")
        return self.output


def test_a_followed_output_on_an_engine_that_stops_answering_ends_after_the_timeout() -> None:
    api = _SilentApi({"inspect_container": FAILURES["read-timeout"]})

    with pytest.raises(EngineError) as raised:
        _container(api).run(print)

    assert api.output.closed.is_set()
    assert "did not answer within 0.05 s" in str(raised.value)
    assert "wait" not in api.calls


def test_a_silent_output_on_an_engine_that_answers_is_waited_for() -> None:
    api = _SilentApi()
    threading.Timer(0.5, api.output.ends.set).start()

    status, lines = _container(api).run(print)

    assert (status, lines) == (0, ["compiling"])
    assert not api.output.closed.is_set()
    assert api.calls.count("inspect_container") >= 3  # asked, while it was silent, whether it answers


def test_import_grocker_stays_light() -> None:
    # docker-py (and requests, urllib3) come in only when a command reaches an engine; pyelftools
    # only when the ABI gate copies it into its container.
    code = (
        "import sys, grocker, grocker.api, grocker.cli; "
        "print(sorted({'docker', 'requests', 'elftools'} & set(sys.modules)))"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert ran.stdout.strip() == "[]"


def test_a_stream_docker_py_cannot_cancel_is_closed_by_its_response() -> None:
    closed: list[str] = []

    class _SshStream:
        """docker-py's CancellableStream over ssh: close() refuses; its response closes."""

        _response = SimpleNamespace(close=lambda: closed.append("response"))

        def __next__(self) -> bytes:
            raise StopIteration

        def close(self) -> None:
            raise docker.errors.DockerException("Cancellable streams not supported for the SSH protocol")

    GuardedStream(_SshStream(), lambda: contextlib.nullcontext()).close()

    assert closed == ["response"]


class _PipeBreakingOnce(FakeApi):
    """Podman 5's copy into a container, whose helper's pipe breaks on the first try."""

    def put_archive(self, container: str, path: str, data: bytes) -> None:
        self.calls.append("put_archive")
        if self.calls.count("put_archive") == 1:
            raise _api_error(500, "passing bulk input to subprocess: write |1: broken pipe")


def test_a_copy_whose_pipe_broke_is_made_once_more() -> None:
    api = _PipeBreakingOnce()

    _container(api).put_files("/tmp", {"request.json": b"{}"})

    assert api.calls == ["put_archive", "put_archive"]


def test_a_copy_that_fails_otherwise_or_twice_is_an_engine_error() -> None:
    refused = FakeApi({"put_archive": _api_error(500, "no space left on device")})
    with pytest.raises(EngineError) as failure:
        _container(refused).put_files("/tmp", {"request.json": b"{}"})
    assert refused.calls == ["put_archive"]
    assert failure.value.exit_code == 4

    broken = FakeApi({"put_archive": _api_error(500, "passing bulk input to subprocess: write |1: broken pipe")})
    with pytest.raises(EngineError):
        _container(broken).put_files("/tmp", {"request.json": b"{}"})
    assert broken.calls == ["put_archive", "put_archive"]
