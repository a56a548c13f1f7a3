"""In-memory engines for unit tests, checked by mypy against grocker.engine.protocol.

FakeEngine is the build chain's engine; FakePurgeEngine (at the end) is purge's.

It keeps images (by ID, with names), volumes with their files, the registry's images, and every
call in order (`calls`), so that a test asserts what the chain decided: what it reused, pulled,
built, tagged, pushed and removed. `fail(operation, subject, error)` makes one call raise (a
GrockerError, or KeyboardInterrupt for an interrupt), and `live` lists the containers and
mutexes not released yet: after any build, failed or not, both must be empty.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from grocker import layout
from grocker.engine.protocol import (
    ChainEngine,
    Container,
    ContainerInfo,
    ImageInfo,
    LabelledImage,
    LineHandler,
    NetworkInfo,
    PurgeEngine,
    VolumeInfo,
)
from grocker.wire.abi import RESULT_MARK as ABI_MARK
from grocker.wire.wheelhouse import PUBLISH_MARK, REPORT_MARK

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
        if self.role == "publish" and status == 0:
            self._write_lock(lines)
        return status, list(lines)

    def execute(self, command: Sequence[str], on_line: LineHandler) -> tuple[int, list[str]]:
        self.engine.step("execute", self.role)
        return self.run(on_line)

    def ip_address(self) -> str:
        return "172.17.0.9"

    def wait_until(self, command: Sequence[str], timeout: float, what: str) -> None:
        self.engine.step("wait_until", self.role)

    def _write_lock(self, lines: Sequence[str]) -> None:
        """What the publisher leaves in the wheel volume: the wheel lock of the request."""
        results = [line for line in lines if line.startswith(PUBLISH_MARK)]
        if not results:
            return
        lock = json.loads(results[-1][len(PUBLISH_MARK) :]).get("lock")
        if lock is None:
            return
        request = json.loads(self.files["/tmp/grocker-input/publish.json"])
        if request.get("lock") is None:
            return  # the first publish of a local sdist's build: the lock comes with its wheel
        volume = next(name for name, (target, _mode) in self.volumes.items() if target == layout.COMPILE_MOUNT)
        self.engine.volume_files[volume][layout.lock_file(request["lock"]["key"])] = json.dumps(lock).encode()


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
    build_failures: dict[str, BaseException] = field(default_factory=dict)
    """What the build of each `what` raises once it has printed its lines."""
    contended: dict[str, Callable[[], None]] = field(default_factory=dict)
    """Mutexes another build holds: what that build does before it releases the mutex."""
    calls: list[Call] = field(default_factory=list)
    built: dict[str, dict[str, bytes]] = field(default_factory=dict)
    """The build context of each `what`."""
    files_put: dict[str, dict[str, bytes]] = field(default_factory=dict)
    """The files copied into the containers of each role."""
    live: list[str] = field(default_factory=list)
    failures: dict[Call, BaseException] = field(default_factory=dict)
    build_network_dns: bool = True
    parallel: bool = False
    """False by default: the wheel server and the publisher start inline, so that the one sequence
    of calls the tests assert is the same on every run; tests of the background set it True."""
    build_networks: dict[str, tuple[str | None, dict[str, str] | None]] = field(default_factory=dict)
    """The network and /etc/hosts entries each `what` was built with."""
    cache_from: dict[str, list[str]] = field(default_factory=dict)
    """The images each build (by `what`) was given as its cache sources."""
    containers_made: list[dict[str, object]] = field(default_factory=list)
    """Each container created: its role, image, volumes, command, entrypoint, user and network."""
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

    def labelled_images(self, labels: Mapping[str, str]) -> Sequence[LabelledImage]:
        # A query, as image(): not recorded in `calls`.
        return [
            LabelledImage(info.id, dict(info.labels))
            for info in reversed(self.images.values())
            if all(info.labels.get(label) == value for label, value in labels.items())
        ]

    def labelled_image(self, labels: Mapping[str, str]) -> str | None:
        self.step("labelled_image", ",".join(sorted(labels)))
        return next(
            (
                info.id
                for info in self.images.values()
                if all(info.labels.get(label) == value for label, value in labels.items())
            ),
            None,
        )

    def build(
        self,
        files: Mapping[str, bytes],
        *,
        labels: Mapping[str, str],
        what: str,
        on_line: LineHandler,
        extra_hosts: Mapping[str, str] | None = None,
        network: str | None = None,
        nocache: bool = False,
        cache_from: Sequence[str] = (),
    ) -> str:
        self.step("build", what)
        self.cache_from[what] = list(cache_from)
        self.build_networks[what] = (network, dict(extra_hosts) if extra_hosts else None)
        self.built[what] = dict(files)
        for line in self.build_lines.get(what, []):
            on_line(line)
        if what in self.build_failures:
            raise self.build_failures[what]
        image_id = f"sha256:{next(self._ids):064x}"
        self.images[image_id] = ImageInfo(image_id, (), {**_dockerfile_labels(files), **labels}, 2000)
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

    def try_remove_volume(self, name: str) -> str | None:
        self.step("remove_volume", name)
        self.volume_labels_.pop(name, None)
        self.volume_files.pop(name, None)
        return None

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
    ) -> Iterator[FakeContainer]:
        self.step("create_container", role)
        self.containers_made.append(
            {
                "role": role,
                "image": image,
                "volumes": dict(volumes or {}),
                "command": list(command) if command is not None else None,
                "entrypoint": list(entrypoint) if entrypoint is not None else None,
                "user": user,
                "network": network,
            }
        )
        name = f"grocker-{role}-{next(self._ids)}"
        self.live.append(name)
        try:
            yield FakeContainer(self, name, role, dict(volumes or {}))
        finally:
            self.live.remove(name)
            self.calls.append(("remove_container", role))

    @contextmanager
    def network(self, labels: Mapping[str, str]) -> Iterator[str]:
        name = f"grocker-net-{next(self._ids)}"
        self.step("create_network", name)
        self.live.append(name)
        try:
            yield name
        finally:
            self.live.remove(name)
            self.calls.append(("remove_network", name))

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


def _dockerfile_labels(files: Mapping[str, bytes]) -> dict[str, str]:
    """The labels of a Dockerfile's LABEL instructions, as the engine would record them."""
    labels: dict[str, str] = {}
    for line in files.get("Dockerfile", b"").decode("utf-8").splitlines():
        if line.startswith("LABEL "):
            for word in shlex.split(line[len("LABEL ") :]):
                name, _, value = word.partition("=")
                labels[name] = value
    return labels


# Purge's engine: images with their history, containers, volumes, and the engine's refusals.

START = int(datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc).timestamp())
# What `docker import` of a Debian root file system records as its only step.
BASE_STEPS = [(START, "/bin/sh -c #(nop) ADD file:0123abcd in / ")]


def rfc3339(epoch: int) -> str:
    """The engine's image creation time: nanoseconds and Z."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + ".123456789Z"


def classic_label_steps(labels: Mapping[str, str], when: int) -> list[tuple[int, str]]:
    """The steps the classic builder appends for build labels: one LABEL step per label."""
    return [(when, f"/bin/sh -c #(nop)  LABEL {key}={value}") for key, value in labels.items()]


def grocker_labels(version: str, role: str) -> dict[str, str]:
    """The labels Grocker 7 gives an image of this role (naming.internal_labels, runner_labels)."""
    labels = {
        "grocker.version": version,
        "grocker.image.role": role,
        "grocker.runtime": "trixie/3.13",
        "grocker.config.hash": "0" * 64,
        "org.opencontainers.image.base.name": "debian:trixie",
    }
    if role == "runner":
        labels.update(
            {
                "grocker.app.name": "app",
                "grocker.app.extras": "",
                "grocker.app.version": "1.0",
                "org.opencontainers.image.title": "app",
                "org.opencontainers.image.version": "1.0",
                "org.opencontainers.image.created": "2026-01-02T00:00:00Z",
            }
        )
    return labels


@dataclass
class FakeImage:
    info: ImageInfo
    created: int
    steps: list[tuple[int, str]]  # oldest first
    parent: str | None = None


@dataclass
class FakePurgeEngine:
    """The engine operations purge uses, with the engine's refusals (never forced)."""

    images_: dict[str, FakeImage] = field(default_factory=dict)
    containers_: dict[str, ContainerInfo] = field(default_factory=dict)
    volumes_: dict[str, VolumeInfo] = field(default_factory=dict)
    mounts: dict[str, str] = field(default_factory=dict)  # container id -> volume name
    networks_: dict[str, NetworkInfo] = field(default_factory=dict)
    members: dict[str, str] = field(default_factory=dict)  # running container id -> network name
    calls: list[tuple[str, str]] = field(default_factory=list)
    clock: itertools.count[int] = field(default_factory=lambda: itertools.count(START + 60, 60))
    # The containerd image store keeps the build steps' images: image id -> their IDs, newest first.
    intermediates: dict[str, list[str]] = field(default_factory=dict)

    # Making objects

    def image(
        self,
        labels: Mapping[str, str],
        steps: Sequence[str],
        *,
        parent: str | None = None,
        tags: Sequence[str] = (),
        label_steps: bool = True,
    ) -> str:
        """Build an image FROM `parent` (or the base) with Dockerfile `steps`, then the build labels."""
        when = next(self.clock)
        base = self.images_[parent] if parent else None
        history = list(base.steps if base else BASE_STEPS) + [(when, step) for step in steps]
        if label_steps:
            history += classic_label_steps(labels, when)
        image_id = f"sha256:{len(self.images_) + 1:064x}"
        inherited = dict(base.info.labels) if base else {}
        info = ImageInfo(image_id, tuple(tags), {**inherited, **labels}, 1000)
        self.images_[image_id] = FakeImage(info, when, history, parent)
        return image_id

    def grocker_image(self, version: str, role: str, *, parent: str | None = None, tags: Sequence[str] = ()) -> str:
        """An image as Grocker builds it."""
        steps = ["/bin/sh -c sh /tmp/grocker/provision.sh", '/bin/sh -c #(nop)  ENTRYPOINT ["app"]']
        return self.image(grocker_labels(version, role), steps, parent=parent, tags=tags)

    def container(
        self,
        image_id: str,
        *,
        status: str = "exited",
        labels: Mapping[str, str] | None = None,
        volume: str = "",
        age: float | None = 3600.0,
        network: str = "",
    ) -> str:
        """A container of the image: its labels are the image's, plus `labels`; created `age` s ago."""
        container_id = f"c{len(self.containers_) + 1:063x}"
        merged = {**self.images_[image_id].info.labels, **(labels or {})}
        self.containers_[container_id] = ContainerInfo(
            container_id, f"ctr-{len(self.containers_) + 1}", status, image_id, merged, age
        )
        if volume:
            self.mounts[container_id] = volume
        if network:
            self.members[container_id] = network
        return container_id

    def network(self, version: str, role: str = "network", *, age: float | None = 3600.0) -> str:
        """A per-build network of that Grocker version, created `age` s ago."""
        name = f"grocker-net-{len(self.networks_):012x}"
        self.networks_[name] = NetworkInfo(name, {"grocker.version": version, "grocker.image.role": role}, age)
        return name

    def volume(self, version: str, role: str = "wheel") -> str:
        """A wheel volume of that Grocker version."""
        name = f"grocker-wheel-cache-{version}-trixie-3.13-{len(self.volumes_)}"
        self.volumes_[name] = VolumeInfo(name, {"grocker.version": version, "grocker.image.role": role})
        return name

    # What purge calls

    def containers(self, label: str) -> list[ContainerInfo]:
        return [c for c in self.containers_.values() if label in c.labels]

    def images(self, label: str) -> list[ImageInfo]:
        return [i.info for i in self.images_.values() if label in i.info.labels]

    def volumes(self, label: str) -> list[VolumeInfo]:
        return [v for v in self.volumes_.values() if label in v.labels]

    def networks(self, label: str) -> list[NetworkInfo]:
        return [n for n in self.networks_.values() if label in n.labels]

    def image_history(self, image_id: str) -> tuple[str, list[tuple[int, str]]] | None:
        image = self.images_.get(image_id)
        return None if image is None else (rfc3339(image.created), list(reversed(image.steps)))

    def image_intermediates(self, image_id: str) -> list[str]:
        return list(self.intermediates.get(image_id, []))

    def try_remove_container(self, container_id: str) -> str | None:
        self.calls.append(("container", container_id))
        if self.containers_[container_id].status == "running":
            return f"You cannot remove a running container {container_id}."
        del self.containers_[container_id]
        self.mounts.pop(container_id, None)
        return None

    def try_remove_image(self, image_id: str) -> str | None:
        self.calls.append(("image", image_id))
        if any(image.parent == image_id for image in self.images_.values()):
            return "image has dependent child images"
        for container in self.containers_.values():
            if container.image_id == image_id:
                state = "running" if container.status == "running" else "stopped"
                return f"image is being used by {state} container {container.id[:12]}"
        del self.images_[image_id]
        return None

    def try_remove_volume(self, name: str) -> str | None:
        self.calls.append(("volume", name))
        users = [cid for cid, volume in self.mounts.items() if volume == name]
        if users:
            return f"volume is in use - [{users[0]}]"
        del self.volumes_[name]
        return None

    def untag_image(self, image_id: str) -> str | None:
        """Docker's `rmi NAME:TAG` on each name: the image stays for its children, nameless."""
        self.calls.append(("untag", image_id))
        image = self.images_.get(image_id)
        if image is not None:
            image.info = ImageInfo(image.info.id, (), image.info.labels, image.info.size)
        return None

    def try_remove_network(self, name: str) -> str | None:
        self.calls.append(("network", name))
        users = [cid for cid, network in self.members.items() if network == name and cid in self.containers_]
        if users:
            return f"network is in use by container {users[0][:12]}"
        self.networks_.pop(name, None)
        return None


def _check_protocols(
    engine: FakeEngine, container: FakeContainer, purge_engine: FakePurgeEngine
) -> tuple[ChainEngine, Container, PurgeEngine]:
    """Never called: mypy checks here that the fakes implement the protocols."""
    return engine, container, purge_engine


# A chain whose steps succeed: what the containers of each role print.

BASE = "debian:trixie"
APP = "app-1.0-py3-none-any.whl"
SIX = "six-1.16.0-py2.py3-none-any.whl"


def report_line(app_in_volume: bool = False) -> str:
    """The resolve step's report: the application and one dependency."""
    items = [
        {"name": "app", "version": "1.0", "filename": APP, "in_volume": app_in_volume},
        {"name": "six", "version": "1.16.0", "filename": SIX, "in_volume": app_in_volume},
    ]
    return REPORT_MARK + json.dumps({"items": items})


def publish_line(added: tuple[str, ...] = (APP,), reused: tuple[str, ...] = (), elf: bool | None = None) -> str:
    """The publisher's result line, with the wheel lock it wrote (each wheel's `elf`, when given)."""
    flag = {} if elf is None else {"elf": elf}
    lock = {
        "application": {"file": APP, "sha256": "a" * 64, **flag},
        "dependencies": [{"file": SIX, "sha256": "b" * 64, **flag}],
        "installer": {"file": "pip-25.0-py3-none-any.whl", "sha256": "c" * 64, **flag},
    }
    return PUBLISH_MARK + json.dumps({"added": list(added), "reused": list(reused), "wheels": {}, "lock": lock})


def chain_engine() -> FakeEngine:
    """An engine with the base image, whose compile succeeds and whose runner has its entrypoint."""
    fake = FakeEngine()
    fake.add_image(BASE)
    fake.outputs["compile"] = (0, ["Collecting app==1.0", report_line()])
    fake.outputs["publish"] = (0, [publish_line()])
    fake.outputs["abi-check"] = (0, [ABI_MARK + json.dumps({"findings": [], "checked": {"wheels": 3, "elf_files": 0}})])
    return fake
