"""The one door between Grocker and docker-py: every call, and every stream it returns, goes through it.

docker-py reports an engine's refusal as `APIError`, and a lost or silent engine as whatever the
transport raised: requests' `ConnectionError` or `ReadTimeout`, urllib3's `ProtocolError` from a
stream read mid-way, an `OSError` from a socket, paramiko's errors over ssh. `GuardedApi` wraps
docker-py's low-level client so that each of those becomes an EngineError (exit 4) that names
the engine and what Grocker was doing, with the remedy written once here. An answer the adapter
interprets (404, 409, a name in use) arrives as `EngineRefusalError`, which keeps the status and the
engine's explanation.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import types
from collections.abc import Callable, Iterator
from typing import Any

import requests.exceptions
import urllib3.exceptions

from grocker.engine.dockerlib import docker
from grocker.errors import EngineError

REMEDY = "Check that the engine is healthy (`docker info`) and try again."
LOST_REMEDY = (
    "Check that the engine runs and answers (`docker info`), then run the command again: the next "
    "Grocker command on this engine removes what this one left running there."
)
# What docker-py and its transports raise when the engine cannot be talked to. docker-py's own
# SocketError and StreamParseError come from reading a stream that was cut mid-frame.
_FAILURES: tuple[type[BaseException], ...] = (
    docker.errors.DockerException,
    docker.errors.StreamParseError,
    docker.utils.socket.SocketError,
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)
_TIMEOUTS: tuple[type[BaseException], ...] = (
    requests.exceptions.Timeout,
    urllib3.exceptions.TimeoutError,
    socket.timeout,
    TimeoutError,
)
# docker-py's methods, in the words of the messages; others read as their name.
_ACTIONS = {
    "inspect_image": "inspect an image",
    "inspect_container": "inspect a container",
    "inspect_volume": "inspect a volume",
    "inspect_network": "inspect a network",
    "images": "list images",
    "containers": "list containers",
    "volumes": "list volumes",
    "networks": "list networks",
    "history": "read an image's history",
    "build": "build an image",
    "pull": "pull an image",
    "push": "push an image",
    "tag": "tag an image",
    "create_container": "create a container",
    "create_volume": "create a volume",
    "create_network": "create a network",
    "remove_container": "remove a container",
    "remove_image": "remove an image",
    "remove_volume": "remove a volume",
    "remove_network": "remove a network",
    "start": "start a container",
    "logs": "follow a container's output",
    "wait": "wait for a container",
    "put_archive": "copy files into a container",
    "get_archive": "copy a file out of a container",
    "exec_create": "run a command in a container",
    "exec_start": "run a command in a container",
    "exec_inspect": "read a command's exit status",
    "attach_socket": "attach to a container",
    "info": "read the engine's state",
    "version": "read the engine's version",
}
# Local helpers of docker-py's client: they build parameters and never reach the engine.
_LOCAL = frozenset({"create_host_config", "create_networking_config", "create_endpoint_config"})


class EngineRefusalError(EngineError):
    """The engine answered a request with an error status (docker-py's APIError)."""

    def __init__(self, message: str, *, status_code: int | None, explanation: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.explanation = explanation

    @property
    def not_found(self) -> bool:
        """The object the request named does not exist (404)."""
        return self.status_code == 404


def is_failure(err: BaseException) -> bool:
    """Whether `err` means the engine refused, dropped, or did not answer a request."""
    return isinstance(err, _FAILURES) or type(err).__module__.split(".")[0] == "paramiko"


def sentence(text: str) -> str:
    """`text` with a capital first letter."""
    return text[:1].upper() + text[1:]


def translate(err: BaseException, described: str, action: str, timeout: float | None) -> EngineError:
    """The EngineError for `err`, raised while Grocker tried to `action` on the engine `described`."""
    if isinstance(err, docker.errors.APIError):
        explanation = str(err.explanation or err)
        return EngineRefusalError(
            f"{sentence(described)} failed to {action}: {explanation}. {REMEDY}",
            status_code=err.status_code,
            explanation=explanation,
        )
    text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    if isinstance(err, _TIMEOUTS) or "timed out" in str(err).lower():
        limit = f"within {timeout:g} s " if timeout else ""
        return EngineError(
            f"{sentence(described)} did not answer {limit}when Grocker tried to {action}: the engine hangs "
            f"or is overloaded. {LOST_REMEDY} GROCKER_ENGINE_TIMEOUT sets how many seconds Grocker waits.",
            details=text,
        )
    ssh = (
        " Over ssh, check too that the engine's host answers and that its sshd allows several sessions "
        "on one connection (MaxSessions)."
        if type(err).__module__.split(".")[0] == "paramiko"
        else ""
    )
    return EngineError(
        f"Grocker lost its connection to {described} when it tried to {action} ({text}). {LOST_REMEDY}{ssh}"
    )


@contextlib.contextmanager
def door(described: str, action: str, timeout: float | None = None) -> Iterator[None]:
    """Turn an engine failure raised in the block into an EngineError; let anything else through."""
    try:
        yield
    except EngineError:
        raise
    except BaseException as err:
        if not is_failure(err):
            raise
        raise translate(err, described, action, timeout) from err


class GuardedApi:
    """docker-py's low-level client (`docker.APIClient`), every call and stream through the door.

    Attributes read through; a method's result that is a stream (a build's or a push's JSON
    chunks, a container's output followed, an archive's chunks) is wrapped so that reading it
    goes through the door as well.
    """

    def __init__(self, api: Any, described: str) -> None:
        self._api = api
        self._described = described
        self.lost: EngineError | None = None
        """The first failure to talk to the engine: later calls fail at once with it (see `door`)."""

    @property
    def raw(self) -> Any:
        """The client itself, for what is not a call (its timeout, its version)."""
        return self._api

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._api, name)
        if not callable(attribute) or name in _LOCAL:
            return attribute
        action = _ACTIONS.get(name, name.replace("_", " "))

        def call(*args: Any, **kwargs: Any) -> Any:
            # The object the call names (an image, a container's ID), when it comes first.
            subject = args[0] if args and isinstance(args[0], str) and len(args[0]) <= 100 else ""
            with self.door(f"{action} ({subject})" if subject else action):
                result = attribute(*args, **kwargs)
            return self._guarded(result, action)

        return call

    @contextlib.contextmanager
    def door(self, action: str) -> Iterator[None]:
        """The door for calls of this engine (named in the message, with the client's timeout).

        Once the engine was lost (a connection cut, a timeout: not a refusal), every later call
        fails at once with that error: the command is failing already, and the removals on its
        way out would each wait for the timeout again. The next command removes what they could
        not (grocker.engine.cleanup's sweep).
        """
        if self.lost is not None:
            raise EngineError(self.lost.message, details=self.lost.details)
        timeout = getattr(self._api, "timeout", None)
        try:
            with door(self._described, action, timeout if isinstance(timeout, (int, float)) else None):
                yield
        except EngineRefusalError:
            raise
        except EngineError as err:
            if err.__cause__ is not None and is_failure(err.__cause__):
                self.lost = err
            raise

    def _guarded(self, result: Any, action: str) -> Any:
        if isinstance(result, tuple):
            return tuple(self._guarded(item, action) for item in result)
        # Streams only: the attached socket of attach_socket is an iterator of lines too.
        if isinstance(result, (types.GeneratorType, docker.types.daemon.CancellableStream)):
            return GuardedStream(result, lambda: self.door(action))
        return result


class GuardedStream(Iterator[Any]):
    """A stream from docker-py whose reads go through the door."""

    def __init__(self, stream: Iterator[Any], door: Callable[[], contextlib.AbstractContextManager[None]]) -> None:
        self._stream = stream
        self._door = door

    def __next__(self) -> Any:
        with self._door():
            return next(self._stream)

    def close(self) -> None:
        """Close the underlying response (docker-py's CancellableStream), when it can be."""
        close = getattr(self._stream, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception:
            # Over ssh, docker-py refuses to cancel a stream: close its HTTP response instead.
            response = getattr(self._stream, "_response", None)
            if response is not None:
                with contextlib.suppress(Exception):
                    response.close()
