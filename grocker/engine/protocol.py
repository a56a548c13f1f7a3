"""What the build chain and purge need from an engine: typed protocols, no `docker` import.

`grocker.engine.docker.DockerEngine` implements them with docker-py; unit tests use an in-memory fake
(tests/unit/fakes.py) that mypy checks against the same protocols.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

LineHandler = Callable[[str], None]

NO_NETWORK = "none"
"""The `network` of a container that needs none: loopback only, and it starts faster."""


@dataclass(frozen=True)
class ImageInfo:
    """What Grocker needs to know of an image."""

    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    size: int


@dataclass(frozen=True)
class LabelledImage:
    """A local image found by its labels, with all of them."""

    id: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class ContainerInfo:
    """What purge needs to know of a container."""

    id: str
    name: str
    status: str
    image_id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    age: float | None = None
    """Seconds since the engine created it, by the engine's clock; None when unknown."""


@dataclass(frozen=True)
class NetworkInfo:
    """What purge needs to know of a network."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    age: float | None = None
    """Seconds since the engine created it, by the engine's clock; None when unknown."""


@dataclass(frozen=True)
class VolumeInfo:
    """What purge needs to know of a volume."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


class Container(Protocol):
    """A container the chain created, stopped until `start` or `run`."""

    @property
    def name(self) -> str: ...

    def put_files(self, directory: str, files: Mapping[str, bytes], mode: int = 0o644) -> None:
        """Copy files into the container, stopped or running (into a folder that exists), never into an image."""

    def get_file(self, path: str) -> bytes | None:
        """Read one file from the container (its volumes included), or None if it is missing."""

    def start(self) -> None:
        """Start the container."""

    def run(self, on_line: LineHandler) -> tuple[int, list[str]]:
        """Start the container, stream its output, and return its exit status and lines."""

    def execute(self, command: Sequence[str], on_line: LineHandler) -> tuple[int, list[str]]:
        """Run `command` in the running container, as its user; return its exit status and lines."""

    def ip_address(self) -> str:
        """The container's address, reachable from build steps on its network."""

    def wait_until(self, command: Sequence[str], timeout: float, what: str) -> None:
        """Run `command` in the running container until it succeeds; BuildError after `timeout` s."""


class ChainEngine(Protocol):
    """The engine operations of the build chain."""

    build_network_dns: bool
    """Whether build steps on a network resolve its members' aliases through the engine's DNS
    (Docker); when not (Podman), the chain gives the build /etc/hosts entries instead."""
    parallel: bool
    """Whether the chain may call it from several threads at once: not over ssh, where each call
    in flight is a session of one ssh connection, and sshd limits them (MaxSessions, 10)."""

    def image(self, name: str) -> ImageInfo | None:
        """Inspect a local image, or None when it does not exist."""

    def pull(self, name: str) -> bool:
        """Pull an image; False when the registry does not have it or cannot be reached."""

    def labelled_image(self, labels: Mapping[str, str]) -> str | None:
        """The ID of one local image that carries every one of `labels` with its value, or None."""

    def labelled_images(self, labels: Mapping[str, str]) -> Sequence[LabelledImage]:
        """The local images that carry every one of `labels` with its value, newest first, once each."""

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
        """Build an untagged image from in-memory files, streaming its output; return its ID.

        With `network`, the RUN steps join that network. `cache_from`: images (pulled ones too)
        whose steps the build may reuse; the engine then takes a cached step only from their chains.
        """

    def tag(self, image_id: str, name: str) -> None:
        """Point `name` at the image."""

    def push(self, name: str, on_line: LineHandler) -> str:
        """Push an image; return the registry's manifest digest."""

    def try_remove_image(self, image_id: str) -> str | None:
        """Remove an image, never forcing; None once gone, else why it is kept."""

    def volume_labels(self, name: str) -> Mapping[str, str] | None:
        """The labels of a volume, or None when it does not exist."""

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        """Create a labelled volume (idempotent)."""

    def try_remove_volume(self, name: str) -> str | None:
        """Remove a volume, never forcing; None once gone, else why it is kept (in use)."""

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
    ) -> AbstractContextManager[Container]:
        """A uniquely named, labelled, stopped container, always removed on the way out.

        With `network`, it joins that network only, known there by its `aliases`.
        """

    def network(self, labels: Mapping[str, str]) -> AbstractContextManager[str]:
        """A uniquely named, labelled internal network for one build; always removed on the way out."""

    def mutex(
        self, key: str, image: str, labels: Mapping[str, str], on_wait: Callable[[], None]
    ) -> AbstractContextManager[None]:
        """Hold the engine-wide mutex called `key` while the block runs; wait while another build holds it."""


class PurgeEngine(Protocol):
    """The engine operations purge uses."""

    def containers(self, label: str) -> Sequence[ContainerInfo]:
        """Every container, running or not, carrying the label."""

    def images(self, label: str) -> Sequence[ImageInfo]:
        """Every image carrying the label, dangling ones included."""

    def volumes(self, label: str) -> Sequence[VolumeInfo]:
        """Every volume carrying the label."""

    def networks(self, label: str) -> Sequence[NetworkInfo]:
        """Every network carrying the label."""

    def image_history(self, image_id: str) -> tuple[str, Sequence[tuple[int, str]]] | None:
        """When an image was created (RFC 3339) and its steps, newest first; None when it is gone."""

    def image_intermediates(self, image_id: str) -> Sequence[str]:
        """The untagged images the classic builder left under this one, newest first.

        Docker with overlay2 removes them with the image; the containerd image store keeps them.
        """

    def try_remove_container(self, container_id: str) -> str | None:
        """Remove a stopped container, never forcing; None once gone, else why it is kept."""

    def try_remove_image(self, image_id: str) -> str | None:
        """Remove an image, never forcing; None once gone, else why it is kept."""

    def try_remove_volume(self, name: str) -> str | None:
        """Remove a volume, never forcing; None once gone, else why it is kept."""

    def untag_image(self, image_id: str) -> str | None:
        """Remove every name of the image, as `docker rmi NAME:TAG` does, not the image itself.

        For an image other images are built FROM: they keep its layers. None once it has no name
        left (or is gone), else why a name is kept.
        """

    def try_remove_network(self, name: str) -> str | None:
        """Remove a network, never forcing; None once gone, else why it is kept (a container uses it)."""


class Engine(ChainEngine, PurgeEngine, Protocol):
    """Everything Grocker asks of an engine."""


def rfc3339_epoch(text: str) -> float | None:
    """Epoch seconds of an engine's RFC 3339 time (nanoseconds, "Z" or an offset); None if unreadable."""
    cleaned = re.sub(r"\.\d+", "", text.strip()).replace("Z", "+00:00")
    try:
        moment = datetime.datetime.fromisoformat(cleaned)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()
