"""The containers and networks one build makes: created labelled, always removed on the way out.

Each one carries the lease of the command that made it (grocker.engine.lease), so that what a
lost command leaves behind is told from what a live one uses.
"""

from __future__ import annotations

import io
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from grocker.engine._calls import EngineRefusalError, GuardedApi
from grocker.engine.protocol import NO_NETWORK, LineHandler
from grocker.errors import BuildError, EngineError
from grocker.log import logger, tail

if TYPE_CHECKING:
    from grocker.engine.lease import Lease


class ContainerOps:
    """The chain's containers and networks (part of DockerEngine)."""

    api: GuardedApi
    described: str
    lease: Lease

    @contextmanager
    def network(self, labels: Mapping[str, str]) -> Iterator[str]:
        """A uniquely named, labelled internal network for one build; always removed on the way out.

        Internal: what joins it reaches only the other members (no route out), and each other by
        their network aliases through the engine's DNS.
        """
        name = f"grocker-net-{uuid.uuid4().hex[:12]}"
        with self.lease.held(None) as lease_labels:
            self.api.create_network(name, driver="bridge", internal=True, labels={**labels, **lease_labels})
            try:
                yield name
            finally:
                try:
                    self.api.remove_network(name)
                except EngineRefusalError as err:
                    if not err.not_found:
                        _left(f"network {name}", err, f"docker network rm {name}")
                except EngineError as err:
                    _left(f"network {name}", err, f"docker network rm {name}")

    @contextmanager
    def container(
        self,
        image: str,
        *,
        role: str,
        labels: Mapping[str, str],
        command: Sequence[str] | None = None,
        volumes: Mapping[str, tuple[str, str]] | None = None,
        environment: Mapping[str, str] | None = None,
        entrypoint: Sequence[str] | None = None,
        user: str | None = None,
        network: str | None = None,
        aliases: Sequence[str] = (),
    ) -> Iterator[DockerContainer]:
        """Create a uniquely named, labelled container; always remove it on the way out.

        It is created stopped, so that files can be copied in before it starts. With `network`,
        it joins that network only, known there by its `aliases`.
        """
        name = f"grocker-{role}-{uuid.uuid4().hex[:12]}"
        binds: dict[str, Mapping[str, str]] = {
            source: {"bind": target, "mode": mode} for source, (target, mode) in (volumes or {}).items()
        }
        with self.lease.held(image) as lease_labels:
            # Known by its name until the engine answers, so that an interrupt (SIGINT, SIGTERM)
            # arriving while it is being created still removes it.
            container = DockerContainer(self.api, self.described, name, name)
            try:
                with self.api.door(f"create the {role} container from {image}"):
                    created = self.api.raw.create_container(
                        image,
                        command=list(command) if command is not None else None,
                        name=name,
                        labels={**labels, **lease_labels},
                        environment=dict(environment or {}),
                        entrypoint=list(entrypoint) if entrypoint is not None else None,
                        user=user or "",
                        host_config=self.api.create_host_config(binds=binds, network_mode=network),
                        networking_config=(
                            self.api.create_networking_config(  # docker's stubs type a mapping as one config
                                {network: self.api.create_endpoint_config(aliases=list(aliases))}
                            )
                            if network and network != NO_NETWORK
                            else None
                        ),
                    )
                container.id = created["Id"]
                yield container
            finally:
                container.remove()


class DockerContainer:
    """A container created by DockerEngine.container (grocker.engine.protocol.Container)."""

    def __init__(self, api: GuardedApi, described: str, container_id: str, name: str) -> None:
        self.api = api
        # The engine, as messages name it.
        self.described = described
        self.id = container_id
        self.name = name

    def put_files(self, directory: str, files: Mapping[str, bytes], mode: int = 0o644) -> None:
        """Copy files into the container, stopped or running (into a folder that exists), never into an image."""
        archive = tar(files, mode=mode, folders=True).getvalue()
        try:
            self.api.put_archive(self.id, directory, archive)
        except EngineRefusalError as err:
            # Podman 5 copies through a helper process whose pipe now and then breaks while other
            # containers start ("passing bulk input to subprocess: write |1: broken pipe", seen once
            # in CI on a fresh engine). A copy is all or nothing and the same files go again: once more.
            if "broken pipe" not in err.explanation.lower():
                raise
            self.api.put_archive(self.id, directory, archive)

    def get_file(self, path: str) -> bytes | None:
        """Read one file from the container (its volumes included), or None if it is missing."""
        try:
            stream, _stat = self.api.get_archive(self.id, path)
            data = b"".join(stream)
        except EngineRefusalError as err:
            if err.not_found:
                return None
            raise
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            member = archive.next()
            extracted = archive.extractfile(member) if member else None
            return extracted.read() if extracted else None

    def start(self) -> None:
        """Start the container."""
        with self.api.door(f"start container {self.name}"):
            self.api.raw.start(self.id)

    def run(self, on_line: LineHandler) -> tuple[int, list[str]]:
        """Start the container, stream its output, and return its exit status and lines."""
        self.start()
        lines: list[str] = []
        pending = ""
        stream = self.api.logs(self.id, stream=True, follow=True, stdout=True, stderr=True)
        with _Watchdog(self, stream) as watchdog:
            try:
                for chunk in stream:
                    watchdog.fed()
                    pending += chunk.decode("utf-8", "replace")
                    *complete, pending = pending.split("\n")
                    for line in complete:
                        lines.append(line)
                        on_line(line)
            except EngineError:
                if watchdog.failure is not None:
                    raise watchdog.failure from None
                raise
        if watchdog.failure is not None:
            raise watchdog.failure
        if pending:
            lines.append(pending)
            on_line(pending)
        # Its output has ended, so it has stopped: the engine answers at once (docker-py waits for ever).
        status = self.api.wait(self.id, timeout=self.api.raw.timeout)
        return int(status.get("StatusCode", 1)), lines

    def ip_address(self) -> str:
        """The container's address on its network, reachable from build steps on that network."""
        attrs = self.api.inspect_container(self.id)
        networks = attrs.get("NetworkSettings", {}).get("Networks") or {}
        for network in networks.values():
            if network.get("IPAddress"):
                return str(network["IPAddress"])
        address = attrs.get("NetworkSettings", {}).get("IPAddress")
        if not address:
            raise EngineError(
                f"Container {self.name} has no IP address on the default network of {self.described}, so "
                "the runner build cannot reach the wheel server. Check the engine's bridge network."
            )
        return str(address)

    def execute(self, command: Sequence[str], on_line: LineHandler) -> tuple[int, list[str]]:
        """Run `command` in the running container, as its user; return its exit status and lines."""
        with self.api.door(f"run a command in container {self.name}"):
            created = self.api.raw.exec_create(self.id, list(command), stdout=True, stderr=True)
            output = self.api.raw.exec_start(created["Id"])
            # The output ends when the command does; its exit code may be set a moment later.
            deadline = time.monotonic() + 10
            while (state := self.api.raw.exec_inspect(created["Id"])).get("Running") and time.monotonic() < deadline:
                time.sleep(0.05)
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else ""
        lines = text.split("\n")
        if lines and not lines[-1]:
            lines.pop()
        for line in lines:
            on_line(line)
        code = state.get("ExitCode")
        return (int(code) if code is not None else 1), lines

    def exec(self, command: Sequence[str]) -> int:
        """Run a command inside the running container; return its exit code."""
        created = self.api.exec_create(self.id, list(command), stdout=True, stderr=True)
        self.api.exec_start(created["Id"])
        return int(self.api.exec_inspect(created["Id"]).get("ExitCode") or 0)

    def wait_until(self, command: Sequence[str], timeout: float, what: str) -> None:
        """Run `command` in the container until it succeeds; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.api.inspect_container(self.id).get("State", {})
            if not state.get("Running"):
                logs = self.api.logs(self.id).decode("utf-8", "replace")
                raise BuildError(f"The {what} stopped before it was ready.", details=tail(logs.splitlines()))
            if self.exec(command) == 0:
                return
            if time.monotonic() > deadline:
                raise BuildError(f"The {what} did not answer within {timeout:.0f} s.")
            time.sleep(0.2)

    def remove(self) -> None:
        """Force-remove the container; a failure only warns, so it never hides the first error."""
        for attempt in range(3):
            try:
                # v=True: the anonymous volumes of the image's VOLUMEs go with it; named ones (the wheel
                # volume) never do.
                self.api.remove_container(self.id, force=True, v=True)
                return
            except EngineRefusalError as err:
                if err.not_found:
                    return
                if attempt == 2:
                    _left(f"container {self.name}", err, f"docker rm -f {self.name}")
            except EngineError as err:
                # The engine is lost: retrying would only wait again.
                _left(f"container {self.name}", err, f"docker rm -f {self.name}")
                return
            time.sleep(0.5)


class _Watchdog:
    """Asks the engine whether it still answers when a followed output has been silent for a while.

    docker-py reads a container's output with no timeout (a compile may print nothing for
    minutes), so an engine that stops answering would hold the read for ever. Each time the
    output has been silent for the client's timeout, the container is inspected, with that
    timeout; when the engine does not answer, the stream is closed, which ends the read, and
    `failure` says why.
    """

    def __init__(self, container: DockerContainer, stream: Any) -> None:
        self._container = container
        self._stream = stream
        self._fed = threading.Event()
        self._done = threading.Event()
        self.failure: EngineError | None = None
        timeout = getattr(container.api.raw, "timeout", None)
        self._timeout = float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else None

    def __enter__(self) -> _Watchdog:
        if self._timeout is not None:
            threading.Thread(target=self._watch, name="grocker-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()

    def fed(self) -> None:
        """The output goes on: no need to ask the engine."""
        self._fed.set()

    def _watch(self) -> None:
        while not self._done.wait(self._timeout):
            if self._fed.is_set():
                self._fed.clear()
                continue
            try:
                self._container.api.inspect_container(self._container.id)
            except EngineRefusalError:
                continue  # it answers
            except EngineError as err:
                self.failure = err
                close = getattr(self._stream, "close", None)
                if close is not None:
                    close()
                return


def _left(what: str, err: EngineError, command: str) -> None:
    # The build's own error says what happened to the engine; this says what stays behind.
    why = err.explanation if isinstance(err, EngineRefusalError) else "the engine does not answer"
    logger.warning(
        "could not remove %s (%s); the next Grocker command on this engine removes it, or `%s`", what, why, command
    )


def name_in_use(status: int | None, explanation: str) -> bool:
    """Whether the engine refused a container because another one has its name.

    Docker answers 409 Conflict; Podman 500 "the container name ... is already in use".
    """
    return status == 409 or "is already in use" in explanation


def tar(files: Mapping[str, bytes], mode: int = 0o644, folders: bool = False) -> io.BytesIO:
    """An uncompressed tar archive of `files` (path to content), with their folders when `folders`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        made: set[str] = set()
        for path, content in sorted(files.items()):
            if folders:
                parts = path.split("/")[:-1]
                for depth in range(1, len(parts) + 1):
                    folder = "/".join(parts[:depth])
                    if folder not in made:
                        made.add(folder)
                        info = tarfile.TarInfo(folder)
                        info.type = tarfile.DIRTYPE
                        info.mode = 0o755
                        archive.addfile(info)
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = 0o755 if path.endswith(".sh") else mode
            info.mtime = 0
            archive.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    return buffer
