"""An in-memory stand-in for docker-py's low-level client (APIClient), for the engine package's tests.

It sits behind grocker.engine's door, where the real client would: containers (with names,
labels, states, auto-remove and an attached stdin), networks, and the calls in order. It
answers as Docker does: 409 for a name in use, 404 for what does not exist.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import docker.errors
import requests

NOW = 1_800_000_000.0
"""The engine's clock, epoch seconds."""


def api_error(status: int, explanation: str) -> docker.errors.APIError:
    """docker-py's error for an engine's answer with `status`."""
    response = requests.Response()
    response.status_code = status
    kind = docker.errors.NotFound if status == 404 else docker.errors.APIError
    return kind(f"{status} error", response=response, explanation=explanation)


@dataclass
class FakeContainer:
    """One container: what the engine lists of it."""

    id: str
    name: str
    labels: dict[str, str]
    state: str = "created"
    auto_remove: bool = False
    created: float = NOW
    image: str = ""


class AttachedStdin:
    """The socket attach_socket returns: closing it ends the container's `cat`."""

    def __init__(self, api: FakeLowLevelApi, container_id: str) -> None:
        self.api = api
        self.container_id = container_id
        self.closed = False

    def shutdown(self, how: int) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.api.stdin_closed(self.container_id)


@dataclass
class FakeLowLevelApi:
    """docker-py's APIClient, as far as the engine package uses it."""

    timeout: int = 600
    containers_by_id: dict[str, FakeContainer] = field(default_factory=dict)
    networks_by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    failing: dict[str, BaseException] = field(default_factory=dict)
    """Method name: what it raises (every time)."""
    no_cat: set[str] = field(default_factory=set)
    """Images in which `cat` does not exist: starting a container of one fails."""
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def _call(self, method: str, subject: str) -> None:
        self.calls.append((method, subject))
        if method in self.failing:
            raise self.failing[method]

    def _find(self, ref: str) -> FakeContainer:
        for container in self.containers_by_id.values():
            if ref in (container.id, container.name):
                return container
        raise api_error(404, f"No such container: {ref}")

    def add(self, name: str, labels: dict[str, str], state: str = "running", age: float = 3600.0) -> FakeContainer:
        """A container that exists already (another build's, a lost one's)."""
        container = FakeContainer(f"{next(self._ids):064x}", name, dict(labels), state, created=NOW - age)
        self.containers_by_id[container.id] = container
        return container

    def add_network(self, name: str, labels: dict[str, str], age: float = 3600.0) -> None:
        """A network that exists already."""
        self.networks_by_name[name] = {"Name": name, "Labels": dict(labels), "Created": NOW - age, "Containers": {}}

    # The low-level API

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return dict(kwargs)

    def create_networking_config(self, config: Any) -> Any:
        return config

    def create_endpoint_config(self, **kwargs: Any) -> dict[str, Any]:
        return dict(kwargs)

    def create_container(self, image: str, name: str, labels: dict[str, str], **kwargs: Any) -> dict[str, str]:
        self._call("create_container", name)
        if any(container.name == name for container in self.containers_by_id.values()):
            raise api_error(409, f'Conflict. The container name "/{name}" is already in use')
        auto_remove = bool((kwargs.get("host_config") or {}).get("auto_remove"))
        container = FakeContainer(f"{next(self._ids):064x}", name, dict(labels), auto_remove=auto_remove, image=image)
        self.containers_by_id[container.id] = container
        return {"Id": container.id}

    def attach_socket(self, container_id: str, params: dict[str, Any]) -> AttachedStdin:
        self._call("attach_socket", container_id)
        return AttachedStdin(self, container_id)

    def start(self, container_id: str) -> None:
        self._call("start", container_id)
        container = self._find(container_id)
        if container.image in self.no_cat:
            raise api_error(400, 'exec: "cat": executable file not found in $PATH')
        container.state = "running"

    def stdin_closed(self, container_id: str) -> None:
        """`cat` reads the end of its input: it exits, and an auto-remove container goes."""
        container = self.containers_by_id.get(container_id)
        if container is None or container.state != "running":
            return
        container.state = "exited"
        if container.auto_remove:
            del self.containers_by_id[container_id]

    def inspect_container(self, ref: str) -> dict[str, Any]:
        self._call("inspect_container", ref)
        container = self._find(ref)
        return {"Id": container.id, "State": {"Status": container.state}, "Config": {"Labels": container.labels}}

    def remove_container(self, ref: str, **kwargs: Any) -> None:
        self._call("remove_container", ref)
        container = self._find(ref)
        if container.state == "running" and not kwargs.get("force"):
            raise api_error(409, "You cannot remove a running container")
        del self.containers_by_id[container.id]

    def containers(self, all: bool = False, filters: dict[str, Any] | None = None, **kwargs: Any) -> list[Any]:
        self._call("containers", str(filters))
        key = str((filters or {}).get("label", ""))
        return [
            {
                "Id": c.id,
                "Names": [f"/{c.name}"],
                "State": c.state,
                "Labels": c.labels,
                "Created": int(c.created),
                "ImageID": "",
            }
            for c in self.containers_by_id.values()
            if (not key or key in c.labels) and (all or c.state == "running")
        ]

    def create_network(self, name: str, labels: dict[str, str], **kwargs: Any) -> None:
        self._call("create_network", name)
        self.networks_by_name[name] = {"Name": name, "Labels": dict(labels), "Created": NOW, "Containers": {}}

    def networks(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self._call("networks", str(filters))
        key = str((filters or {}).get("label", ""))
        return [
            {**network, "Created": _rfc3339(network["Created"])}
            for network in self.networks_by_name.values()
            if not key or key in network["Labels"]
        ]

    def inspect_network(self, name: str) -> dict[str, Any]:
        self._call("inspect_network", name)
        if name not in self.networks_by_name:
            raise api_error(404, f"network {name} not found")
        return self.networks_by_name[name]

    def remove_network(self, name: str) -> None:
        self._call("remove_network", name)
        if name not in self.networks_by_name:
            raise api_error(404, f"network {name} not found")
        del self.networks_by_name[name]

    def info(self) -> dict[str, Any]:
        self._call("info", "")
        return {"SystemTime": _rfc3339(NOW)}


def _rfc3339(epoch: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).isoformat().replace("+00:00", "Z")
