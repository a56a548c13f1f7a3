"""An in-memory engine for unit tests of the build chain, checked by mypy against grocker.protocol.

It keeps images (by ID, with names), volumes with their files, the registry's images, and every
call in order (`calls`), so that a test asserts what the chain decided: what it reused, pulled,
built, tagged, pushed and removed. `fail(operation, subject, error)` makes one call raise (a
GrockerError, or KeyboardInterrupt for an interrupt), and `live` lists the containers and
mutexes not released yet: after any build, failed or not, both must be empty.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from grocker import layout
from grocker.protocol import ChainEngine, Container, ImageInfo, LineHandler

Call = tuple[str, str]


@dataclass
class FakeContainer:
    """A container of the fake engine: files put in, volumes mounted, a scripted run."""

    engine: FakeEngine
    name: str
    role: str
    volumes: Mapping[str, tuple[str, str]]
    files: dict[str, bytes] = field(default_factory=dict)

    def put_files(self, directory: str, files: Mapping[str, bytes], mode: int = 0o644) -> None:
        self.engine.step("put_files", self.role)
        self.files.update({f"{directory}/{path}": content for path, content in files.items()})
        self.engine.files_put.setdefault(self.role, {}).update(self.files)

    def get_file(self, path: str) -> bytes | None:
        for volume, (target, _mode) in self.volumes.items():
            if path.startswith(f"{target}/"):
                return self.engine.volume_files.get(volume, {}).get(path[len(target) + 1 :])
        return self.files.get(path)

    def start(self) -> None:
        self.engine.step("start", self.role)

    def run(self, on_line: LineHandler) -> tuple[int, list[str]]:
        self.engine.step("run", self.role)
        status, lines = self.engine.outputs.get(self.role, (0, []))
        for line in lines:
            on_line(line)
        if self.role == "compile" and status == 0:
            self._write_lock(lines)
        return status, list(lines)

    def ip_address(self) -> str:
        return "172.17.0.9"

    def wait_until(self, command: Sequence[str], timeout: float, what: str) -> None:
        self.engine.step("wait_until", self.role)

    def _write_lock(self, lines: Sequence[str]) -> None:
        """What compile.py leaves in the volume: the wheel lock of the request."""
        results = [line for line in lines if line.startswith(layout.RESULT_MARK)]
        if not results:
            return
        request = json.loads(self.files["/tmp/grocker-input/request.json"])
        (volume,) = self.volumes
        lock = json.loads(results[-1][len(layout.RESULT_MARK) :])
        self.engine.volume_files[volume][layout.lock_file(request["lock"])] = json.dumps(lock).encode()


@dataclass
class FakeEngine:
    """The build chain's engine, in memory."""

    images: dict[str, ImageInfo] = field(default_factory=dict)
    """By ID; names are in `tags`."""
    tags: dict[str, str] = field(default_factory=dict)
    registry: dict[str, Mapping[str, str]] = field(default_factory=dict)
    """Images a pull finds: name -> labels."""
    volume_labels_: dict[str, Mapping[str, str]] = field(default_factory=dict)
    volume_files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    outputs: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    """What a container of each role prints, and its exit status."""
    build_lines: dict[str, list[str]] = field(default_factory=dict)
    """What the build of each `what` ("root image", "runner image"...) prints."""
    contended: dict[str, Callable[[], None]] = field(default_factory=dict)
    """Mutexes another build holds: what that build does before it releases the mutex."""
    calls: list[Call] = field(default_factory=list)
    built: dict[str, dict[str, bytes]] = field(default_factory=dict)
    """The build context of each `what`."""
    files_put: dict[str, dict[str, bytes]] = field(default_factory=dict)
    """The files copied into the containers of each role."""
    live: list[str] = field(default_factory=list)
    failures: dict[Call, BaseException] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # Setting up and scripting

    def add_image(self, name: str, labels: Mapping[str, str] | None = None, size: int = 1000) -> str:
        """An image already on the engine, called `name`; its ID."""
        image_id = f"sha256:{next(self._ids):064x}"
        self.images[image_id] = ImageInfo(image_id, (), dict(labels or {}), size)
        self.tags[name] = image_id
        return image_id

    def fail(self, operation: str, subject: str, error: BaseException) -> None:
        """Make the call `operation` on `subject` raise `error`."""
        self.failures[(operation, subject)] = error

    def step(self, operation: str, subject: str) -> None:
        """Record a call, and raise when the test asked this call to fail."""
        self.calls.append((operation, subject))
        error = self.failures.get((operation, subject))
        if error is not None:
            raise error

    def did(self, operation: str) -> list[str]:
        """The subjects of every call of `operation`, in order."""
        return [subject for done, subject in self.calls if done == operation]

    def id_of(self, name: str) -> str | None:
        """The ID of the image called `name`, if any."""
        return self.tags.get(name)

    # The protocol

    def image(self, name: str) -> ImageInfo | None:
        image_id = self.tags.get(name, name)
        info = self.images.get(image_id)
        if info is None:
            return None
        names = tuple(sorted(tag for tag, target in self.tags.items() if target == image_id))
        return ImageInfo(info.id, names, info.labels, info.size)

    def pull(self, name: str) -> bool:
        self.step("pull", name)
        labels = self.registry.get(name)
        if labels is None:
            return False
        self.add_image(name, labels)
        return True

    def build(
        self,
        files: Mapping[str, bytes],
        *,
        labels: Mapping[str, str],
        what: str,
        on_line: LineHandler,
        extra_hosts: Mapping[str, str] | None = None,
        nocache: bool = False,
    ) -> str:
        self.step("build", what)
        self.built[what] = dict(files)
        for line in self.build_lines.get(what, []):
            on_line(line)
        image_id = f"sha256:{next(self._ids):064x}"
        self.images[image_id] = ImageInfo(image_id, (), dict(labels), 2000)
        return image_id

    def tag(self, image_id: str, name: str) -> None:
        self.step("tag", name)
        self.tags[name] = image_id

    def push(self, name: str, on_line: LineHandler) -> str:
        self.step("push", name)
        return "sha256:" + hashlib.sha256(name.encode()).hexdigest()

    def try_remove_image(self, image_id: str) -> str | None:
        self.step("remove_image", image_id)
        self.images.pop(image_id, None)
        self.tags = {name: target for name, target in self.tags.items() if target != image_id}
        return None

    def volume_labels(self, name: str) -> Mapping[str, str] | None:
        return self.volume_labels_.get(name)

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        self.step("create_volume", name)
        self.volume_labels_.setdefault(name, dict(labels))
        self.volume_files.setdefault(name, {})

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
    ) -> Iterator[FakeContainer]:
        self.step("create_container", role)
        name = f"grocker-{role}-{next(self._ids)}"
        self.live.append(name)
        try:
            yield FakeContainer(self, name, role, dict(volumes or {}))
        finally:
            self.live.remove(name)
            self.calls.append(("remove_container", role))

    @contextmanager
    def mutex(self, key: str, image: str, labels: Mapping[str, str], on_wait: Callable[[], None]) -> Iterator[None]:
        self.step("mutex", key)
        holder = self.contended.pop(key, None)
        if holder is not None:
            on_wait()
            holder()
        self.live.append(f"mutex {key}")
        try:
            yield
        finally:
            self.live.remove(f"mutex {key}")


def _check_protocol(engine: FakeEngine, container: FakeContainer) -> tuple[ChainEngine, Container]:
    """Never called: mypy checks here that the fakes implement the protocols."""
    return engine, container
