"""The Docker engine through docker-py: the only module that imports `docker`.

Everything Grocker does happens engine-side (builds, volumes, containers), so a remote engine
given by DOCKER_HOST works like a local one. Errors from docker-py become GrockerErrors with
a remedy; containers live in context managers that always remove them. The chain and purge
see this class only through the protocols of grocker.protocol.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import logging
import re
import socket
import tarfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import requests.exceptions

from grocker.dockerlib import docker, ssh_transport
from grocker.endpoint import Endpoint, TLSFiles, engine_summary
from grocker.errors import BuildError, EngineError, PushError
from grocker.labels import MUTEX_OWNER_LABEL
from grocker.log import logger, tail
from grocker.protocol import NO_NETWORK, ContainerInfo, ImageInfo, LineHandler, NetworkInfo, VolumeInfo, rfc3339_epoch

MIN_API_VERSION = (1, 39)
# The first answer comes fast from a healthy engine: an engine that accepts the connection and
# never answers must fail the build in seconds, not after the timeout that builds and pushes need.
CONNECT_TIMEOUT = 20
OPERATION_TIMEOUT = 600
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


def connect(endpoint: Endpoint) -> DockerEngine:
    """Connect to the engine `endpoint` names and check that it answers and is recent."""
    described = endpoint.describe()
    failures: tuple[type[Exception], ...] = (docker.errors.DockerException, requests.exceptions.RequestException)
    if endpoint.scheme == "ssh":
        failures += _ssh_errors(endpoint)
    try:
        # The API version is negotiated below, once the session is set up: not at construction.
        client = docker.DockerClient(
            base_url=endpoint.host,
            tls=_tls_config(endpoint.tls),
            timeout=CONNECT_TIMEOUT,
            version=_FIRST_API_VERSION,
        )
        # requests would let REQUESTS_CA_BUNDLE (often set for a proxy's CA) replace the engine's
        # CA from DOCKER_CERT_PATH, and the TLS handshake would fail; an engine is never reached
        # through an HTTP proxy either.
        client.api.trust_env = False
        version = client.version(api_version=False)
        # docker-py has no public setter: it negotiates only in its constructor.
        client.api._version = _negotiated(str(version.get("ApiVersion", "0.0")))  # type: ignore[attr-defined]
    except docker.errors.TLSParameterError as err:
        raise EngineError(
            f"Grocker cannot use {described} because its TLS files are not usable: {err}. Check the "
            "certificate folder (ca.pem, cert.pem, key.pem).",
        ) from err
    except failures as err:
        raise _unreachable(endpoint, err) from err
    api = tuple(int(part) for part in str(version.get("ApiVersion", "0.0")).split(".")[:2])
    if api < MIN_API_VERSION:
        raise EngineError(
            f"{_sentence(described)} speaks API {version.get('ApiVersion')}, older than the "
            f"{'.'.join(map(str, MIN_API_VERSION))} Grocker needs (Docker 18.09). Upgrade the engine."
        )
    client.api.timeout = OPERATION_TIMEOUT
    # One more call: it tells the image store (and, at -v, what the engine is).
    try:
        info = client.info()
    except (docker.errors.APIError, requests.exceptions.RequestException) as err:
        raise _unreachable(endpoint, err) from err
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("engine: %s; %s", engine_summary(version, info), described)
    components = {str(part.get("Name")) for part in version.get("Components") or [] if isinstance(part, dict)}
    return DockerEngine(
        client,
        described,
        podman="Podman Engine" in components,
        containerd_store=uses_containerd_store(info),
        parallel=endpoint.scheme != "ssh",
    )


_FIRST_API_VERSION = "1.39"


def _tls_config(tls: TLSFiles | None) -> docker.tls.TLSConfig | bool:
    if tls is None:
        return False
    return docker.tls.TLSConfig(
        client_cert=(str(tls.client_cert[0]), str(tls.client_cert[1])) if tls.client_cert else None,
        ca_cert=str(tls.ca_cert) if tls.ca_cert else None,
        verify=tls.verify,
    )


def _ssh_errors(endpoint: Endpoint) -> tuple[type[Exception], ...]:
    """The errors of an ssh connection; a clear error when paramiko (the `ssh` extra) is missing."""
    try:
        # Optional, and untyped: only ssh:// engines need it.
        paramiko = importlib.import_module("paramiko")
        ssh_transport()
    except ImportError as err:
        raise EngineError(
            f"Grocker cannot reach {endpoint.describe()} because ssh:// engines need paramiko, which "
            "is not installed. Install Grocker with its ssh extra: `pip install 'grocker[ssh]'`.",
        ) from err
    return (paramiko.SSHException, OSError)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _negotiated(server: str) -> str:
    """The highest API version both docker-py and the engine speak."""
    ours = docker.constants.DEFAULT_DOCKER_API_VERSION

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split(".")[:2])

    return server if key(server) < key(ours) else ours


def _unreachable(endpoint: Endpoint, err: Exception) -> EngineError:
    described = endpoint.describe()
    text = str(err) or type(err).__name__
    if "Permission denied" in text or "PermissionError" in text:
        return EngineError(
            f"Grocker cannot use {described}: permission denied on its socket. The socket "
            "has to be readable and writable by the current user; most distributions give that "
            "to root and the `docker` group. Add yourself to it (`sudo adduser $(whoami) docker`), "
            "then reload your groups (`su $(whoami)` or log in again).",
            details=text,
        )
    if endpoint.scheme == "ssh":
        return EngineError(
            f"Grocker cannot reach {described} over ssh: {text}. `{_ssh_command(endpoint.host)} docker "
            "system dial-stdio` must work without a prompt: the host's key in ~/.ssh/known_hosts, a key "
            "without passphrase (or an ssh agent), and the docker command on the remote host.",
        )
    if "timed out" in text.lower():
        return EngineError(
            f"{_sentence(described)} did not answer within {CONNECT_TIMEOUT} s: something "
            "accepts connections there but does not speak the engine's API, or the engine hangs. "
            "Check the address, and that `docker info` answers.",
            details=text,
        )
    if "certificate" in text.lower() or "SSL" in text or "TLS" in text:
        return EngineError(
            f"Grocker cannot connect to {described}: the TLS handshake failed. {_tls_advice(endpoint)}",
            details=text,
        )
    return EngineError(
        f"Grocker cannot reach {described}. Start it (`sudo dockerd` or "
        "`sudo systemctl start docker`), or point Grocker at a running engine (DOCKER_HOST, "
        "DOCKER_CONTEXT or `docker context use`); `docker info` must answer.",
        details=text,
    )


def _ssh_command(host: str) -> str:
    """The ssh command line that reaches `host` (ssh://[user@]host[:port]), to try by hand."""
    url = urllib.parse.urlsplit(host)
    port = f"-p {url.port} " if url.port else ""
    user = f"{url.username}@" if url.username else ""
    return f"ssh {port}{user}{url.hostname}"


def _tls_advice(endpoint: Endpoint) -> str:
    if endpoint.context:
        return (
            f"Check the TLS files of context `{endpoint.context}` (`docker context inspect "
            f"{endpoint.context}`) against the engine's certificates."
        )
    return "Check DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem) and DOCKER_TLS_VERIFY against the engine's certificates."


def uses_containerd_store(info: Mapping[str, Any]) -> bool:
    """Whether the engine keeps images in containerd (Docker 29's default, or the feature flag)."""
    status = info.get("DriverStatus") or []
    return any(list(pair) == ["driver-type", "io.containerd.snapshotter.v1"] for pair in status)


class DockerEngine:
    """A connected engine, with the operations the build chain and purge need (grocker.protocol.Engine)."""

    def __init__(
        self,
        client: docker.DockerClient,
        described: str,
        *,
        podman: bool = False,
        containerd_store: bool = False,
        parallel: bool = True,
    ) -> None:
        self.client = client
        self.api = client.api
        # "the Docker engine at HOST (how it was chosen)": every error names it.
        self.described = described
        # Podman's Docker-compatible API differs from Docker's in a few build parameters.
        self.podman = podman
        # Docker's containerd image store counts an image's size differently (see image()).
        self.containerd_store = containerd_store
        # Over ssh, each call in flight is an ssh session, and sshd limits them: one at a time.
        self.parallel = parallel

    # Images

    def image(self, name: str) -> ImageInfo | None:
        """Inspect a local image, or None when it does not exist."""
        try:
            attrs = self.api.inspect_image(name)  # type: ignore[no-untyped-call]  # untyped in docker's stubs
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as err:
            raise self.error("inspect image", name, err) from err
        info = _image_info(attrs)
        if self.containerd_store:
            # The store's `Size` counts the stored content, compressed for the layers built here;
            # the unpacked size, the one overlay2 and Podman give, is the layers' in the history.
            try:
                steps = self.api.history(info.id)  # type: ignore[no-untyped-call]
            except (docker.errors.APIError, requests.exceptions.RequestException) as err:
                raise self.error("read the history of image", name, err) from err
            info = dataclasses.replace(info, size=unpacked_size(steps))
        return info

    def pull(self, name: str) -> bool:
        """Pull an image; False when the registry does not have it or cannot be reached."""
        repository, tag = split_tag(name)
        try:
            for chunk in self.api.pull(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    logger.debug("pull %s: %s", name, chunk["error"])
                    return False
        except (docker.errors.APIError, requests.exceptions.RequestException) as err:
            logger.debug("pull %s: %s", name, err)
            return False
        return self.image(name) is not None

    def labelled_image(self, labels: Mapping[str, str]) -> str | None:
        """The ID of one local image that carries every one of `labels` with its value, or None."""
        # Several `label` filters: the engine keeps the images that match them all.
        wanted = [f"{label}={value}" for label, value in sorted(labels.items())]
        try:
            found = self.api.images(filters={"label": wanted}, quiet=True)
        except docker.errors.APIError as err:
            raise self.error("list images", ", ".join(wanted), err) from err
        return str(found[0]) if found else None

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
    ) -> str:
        """Build an image from in-memory files, streaming its output; return the new image ID.

        The image is left untagged: the caller tags it once it is known to be good, so that a
        failed build never moves a name. With `network`, the RUN steps join that network.
        """
        context = _tar(files)
        lines: list[str] = []
        pending = ""
        image_id = None
        try:
            stream = self.api.build(
                fileobj=context,
                custom_context=True,
                rm=True,
                forcerm=True,
                labels=dict(labels),
                # A string for Podman (JSON), which docker-py passes through as the parameter's value.
                extra_hosts=self._extra_hosts(extra_hosts),  # type: ignore[arg-type]
                network_mode=network,
                nocache=nocache,
                decode=True,
            )
            for chunk in stream:
                # A line may span chunks, and so may the colour codes the engine puts around a
                # step's stderr: join the chunks into lines first, then drop the codes (NO_COLOR).
                pending += chunk.get("stream", "")
                *complete, pending = pending.split("\n")
                if "error" in chunk and pending:
                    complete.append(pending)
                    pending = ""
                for raw in complete:
                    line = _ANSI_RE.sub("", raw).rstrip("\r")
                    lines.append(line)
                    on_line(line)
                    found = re.match(r"^Successfully built ([0-9a-f]+)$", line.strip())
                    if found:
                        image_id = found.group(1)
                if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                if "error" in chunk:
                    lines.append(chunk["error"])
                    raise BuildError(_build_failure(what, chunk["error"].strip(), lines), details=tail(lines))
            if pending:
                lines.append(_ANSI_RE.sub("", pending))
                on_line(lines[-1])
        except docker.errors.APIError as err:
            # The engine refused the request itself (no build step ran, or it broke off): its answer,
            # not a failing step, so an engine error.
            raise EngineError(
                f"{_sentence(self.described)} refused to build the {what}: {err.explanation or err}. "
                "This is the engine's answer to the build request, not a failing build step: check the "
                "engine's log, and that it is one Grocker supports (Docker 20.10+, Podman 5 through "
                "its Docker-compatible API).",
                details=tail(lines),
            ) from err
        except requests.exceptions.RequestException as err:
            raise self.error(f"build the {what}", "", err) from err
        if image_id is None:
            raise BuildError(f"The {what} build ended without an image.", details=tail(lines))
        info = self.image(image_id)
        if info is None:
            raise BuildError(f"The {what} build reported image {image_id}, which does not exist.")
        return info.id

    def _extra_hosts(self, extra_hosts: Mapping[str, str] | None) -> dict[str, str] | str | None:
        """The build's `extrahosts` parameter, in the form the engine parses."""
        if not extra_hosts:
            return None
        if self.podman:
            # Podman decodes the parameter as a JSON list; docker-py sends Docker's repeated
            # `host:ip` form, which Podman refuses ("invalid character 'g'").
            return json.dumps([f"{host}:{address}" for host, address in extra_hosts.items()])
        return dict(extra_hosts)

    def tag(self, image_id: str, name: str) -> None:
        """Point `name` at the image."""
        repository, tag = split_tag(name)
        try:
            self.api.tag(image_id, repository, tag=tag, force=True)
        except docker.errors.APIError as err:
            raise self.error("tag image", name, err) from err

    def push(self, name: str, on_line: LineHandler) -> str:
        """Push an image; return the registry's manifest digest, taken from the push itself."""
        repository, tag = split_tag(name)
        digest = None
        lines: list[str] = []
        try:
            for chunk in self.api.push(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise PushError(
                        f"The push of {name} failed: {chunk['error'].strip()}. Check that the "
                        "registry is reachable and that you are logged in to it (`docker login`) "
                        "with the right to push there.",
                        details=tail(lines),
                    )
                status = chunk.get("status")
                if status:
                    line = f"{chunk.get('id', '')} {status} {chunk.get('progress', '')}".strip()
                    lines.append(line)
                    on_line(line)
                digest = push_digest(chunk) or digest
        except docker.errors.APIError as err:
            raise PushError(f"The push of {name} failed: {err.explanation or err}.") from err
        except requests.exceptions.RequestException as err:
            raise PushError(f"The push of {name} failed: {err}.") from err
        if not digest:
            raise PushError(f"The push of {name} ended without a manifest digest.", details=tail(lines))
        return str(digest)

    def images(self, label: str) -> list[ImageInfo]:
        """Every image carrying the label, dangling ones included."""
        try:
            summaries = self.api.images(all=False, filters={"label": label})
            dangling = self.api.images(all=False, filters={"label": label, "dangling": True})
        except docker.errors.APIError as err:
            raise self.error("list images", label, err) from err
        seen: dict[str, ImageInfo] = {}
        for summary in [*summaries, *dangling]:
            info = self.image(summary["Id"])
            if info is not None:
                seen[info.id] = info
        return list(seen.values())

    # Volumes

    def volume_labels(self, name: str) -> Mapping[str, str] | None:
        """The labels of a volume, or None when it does not exist."""
        try:
            attrs = self.api.inspect_volume(name)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as err:
            raise self.error("inspect volume", name, err) from err
        return attrs.get("Labels") or {}

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        """Create a labelled volume (idempotent)."""
        try:
            self.api.create_volume(name=name, labels=dict(labels))
        except docker.errors.APIError as err:
            raise self.error("create volume", name, err) from err

    def volumes(self, label: str) -> list[VolumeInfo]:
        """Every volume carrying the label."""
        try:
            answer = self.api.volumes(filters={"label": label})
        except docker.errors.APIError as err:
            raise self.error("list volumes", label, err) from err
        return [VolumeInfo(v["Name"], v.get("Labels") or {}) for v in answer.get("Volumes") or []]

    # Networks

    @contextmanager
    def network(self, labels: Mapping[str, str]) -> Iterator[str]:
        """A uniquely named, labelled internal network for one build; always removed on the way out.

        Internal: what joins it reaches only the other members (no route out), and each other by
        their network aliases through the engine's DNS.
        """
        name = f"grocker-net-{uuid.uuid4().hex[:12]}"
        try:
            self.api.create_network(name, driver="bridge", internal=True, labels=dict(labels))
        except docker.errors.APIError as err:
            raise self.error("create the build network", name, err) from err
        try:
            yield name
        finally:
            try:
                self.api.remove_network(name)
            except docker.errors.NotFound:
                pass
            except (docker.errors.APIError, requests.exceptions.RequestException) as err:
                logger.warning(
                    "could not remove network %s: %s; remove it with `docker network rm %s`", name, err, name
                )

    # Containers

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
        # Known by its name until the engine answers, so that an interrupt (SIGINT, SIGTERM)
        # arriving while it is being created still removes it.
        container = DockerContainer(self, name, name)
        try:
            try:
                created = self.api.create_container(
                    image,
                    command=list(command) if command is not None else None,
                    name=name,
                    labels=dict(labels),
                    environment=dict(environment or {}),
                    entrypoint=list(entrypoint) if entrypoint is not None else None,
                    user=user or "",
                    host_config=self.api.create_host_config(binds=binds, network_mode=network),
                    networking_config=(
                        self.api.create_networking_config(  # docker's stubs type a mapping as one config
                            {network: self.api.create_endpoint_config(aliases=list(aliases))}  # type: ignore[arg-type]
                        )
                        if network and network != NO_NETWORK
                        else None
                    ),
                )
            except docker.errors.APIError as err:
                raise self.error(f"create the {role} container", image, err) from err
            container.id = created["Id"]
            yield container
        finally:
            container.remove()

    @contextmanager
    def mutex(self, key: str, image: str, labels: Mapping[str, str], on_wait: Callable[[], None]) -> Iterator[None]:
        """Hold the engine-wide mutex called `key` while the block runs; wait while another build holds it.

        The mutex is a container with a name made from `key`: the engine refuses a second container
        of that name, so one build at a time holds it, whichever machine it runs on. The container
        runs `cat` on a stdin attached to this process and is removed when it ends, so the mutex
        goes away by itself when its holder dies, however it dies. `image` must be local.
        """
        # "lock" in the name predates the word mutex; running builds of other versions share it.
        name = f"grocker-lock-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]}"
        owner = uuid.uuid4().hex
        holder = DockerContainer(self, name, name)
        created_since: dict[str, float] = {}
        attempted = waiting = False
        try:
            while True:
                attempted = True
                try:
                    created = self.api.create_container(
                        image,
                        entrypoint=["cat"],
                        name=name,
                        stdin_open=True,
                        labels={**labels, MUTEX_OWNER_LABEL: owner},
                        network_disabled=True,
                        host_config=self.api.create_host_config(auto_remove=True),
                    )
                    # From here on, by ID: once a released mutex's container is gone, the name is
                    # the next holder's, and an operation by name would start, attach to or remove
                    # that one.
                    holder.id = created["Id"]
                    break
                except docker.errors.APIError as err:
                    attempted = False
                    if not name_in_use(err.status_code, str(err.explanation or err)):
                        raise self.error("create the mutex container", name, err) from err
                if not waiting:
                    waiting = True
                    on_wait()
                self._clear_stale_mutex(name, created_since)
                time.sleep(1)
            connection = self.api.attach_socket(holder.id, params={"stdin": 1, "stream": 1})
            try:
                holder.start()
                yield
            finally:
                raw = getattr(connection, "_sock", connection)
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_RDWR)
                # docker-py keeps the attach request's HTTP response on the socket it returns: closed
                # here, in order, or a process that builds more than once (the library, the tests)
                # leaks a socket per build and an error when the response is collected.
                response = getattr(connection, "_response", None)
                if response is not None:
                    with contextlib.suppress(OSError, ValueError):
                        response.close()
                connection.close()
                raw.close()
        finally:
            if attempted and self._mutex_owner(name) == owner:
                holder.remove()

    def _mutex_owner(self, name: str) -> str | None:
        try:
            attrs = self.api.inspect_container(name)
        except (docker.errors.APIError, requests.exceptions.RequestException):
            return None
        return (attrs.get("Config", {}).get("Labels") or {}).get(MUTEX_OWNER_LABEL)

    def _clear_stale_mutex(self, name: str, created_since: dict[str, float]) -> None:
        """Remove a mutex container whose holder died before starting it, or that outlived `cat`."""
        try:
            attrs = self.api.inspect_container(name)
        except (docker.errors.APIError, requests.exceptions.RequestException):
            return  # gone already, or the engine is busy: look again on the next turn
        status = attrs.get("State", {}).get("Status")
        # Holders start their mutex right after creating it; one seen unstarted for a minute
        # (measured here, so that the engine's clock does not matter) has lost its holder.
        first_seen = created_since.setdefault(attrs["Id"], time.monotonic())
        if status in ("exited", "dead") or (status == "created" and time.monotonic() - first_seen > 60):
            logger.debug("removing the abandoned mutex %s (%s)", name, status)
            with contextlib.suppress(docker.errors.APIError):
                self.api.remove_container(attrs["Id"], force=True)

    def containers(self, label: str) -> list[ContainerInfo]:
        """Every container, running or not, carrying the label, with its age by the engine's clock."""
        try:
            answer = self.api.containers(all=True, filters={"label": label})
        except docker.errors.APIError as err:
            raise self.error("list containers", label, err) from err
        now = self._clock() if answer else None
        return [
            ContainerInfo(
                c["Id"],
                (c.get("Names") or ["?"])[0].lstrip("/"),
                c.get("State", ""),
                c.get("ImageID", ""),
                c.get("Labels") or {},
                age=_age(now, c.get("Created")),
            )
            for c in answer
        ]

    def networks(self, label: str) -> list[NetworkInfo]:
        """Every network carrying the label, with its age by the engine's clock."""
        try:
            answer = self.api.networks(filters={"label": label})
        except (docker.errors.APIError, requests.exceptions.RequestException) as err:
            raise self.error("list networks", label, err) from err
        now = self._clock() if answer else None
        return [NetworkInfo(n["Name"], n.get("Labels") or {}, age=_age(now, n.get("Created"))) for n in answer]

    def try_remove_network(self, name: str) -> str | None:
        """Remove a network, never forcing; None once gone, else why it is kept (a container uses it).

        Docker removes a network that a created, not yet started container names (which then
        cannot start) and refuses one with running members; Podman refuses both.
        """

        def remove() -> str | None:
            members = self.api.inspect_network(name).get("Containers") or {}
            if members:
                first = next(iter(members.values())) or {}
                return f"network is in use by container {first.get('Name') or next(iter(members))[:12]}"
            try:
                self.api.remove_network(name)
            except docker.errors.APIError as err:
                explanation = str(err.explanation or err)
                if err.status_code != 404 and _NETWORK_IN_USE_RE.search(explanation):
                    return f"network is in use: {explanation}"
                raise
            return None

        return self._try_remove("network", name, remove)

    def _clock(self) -> float:
        """The engine's time (epoch seconds), so that ages do not depend on this machine's clock."""
        try:
            moment = rfc3339_epoch(str(self.api.info().get("SystemTime") or ""))
        except (docker.errors.APIError, requests.exceptions.RequestException):
            moment = None
        return time.time() if moment is None else moment

    def image_history(self, image_id: str) -> tuple[str, list[tuple[int, str]]] | None:
        """When an image was created (RFC 3339 text) and its build steps, newest first.

        Each step is (creation time in epoch seconds, the instruction that made it). None when
        the image no longer exists. Purge reads it to tell an image Grocker built from one built
        FROM it by someone else, since both carry the same inherited labels.
        """
        try:
            attrs = self.api.inspect_image(image_id)  # type: ignore[no-untyped-call]
            steps = self.api.history(image_id)  # type: ignore[no-untyped-call]
        except docker.errors.NotFound:
            return None
        except (docker.errors.APIError, requests.exceptions.RequestException) as err:
            raise EngineError(
                f"{_sentence(self.described)} failed to read the history of image {image_id}: "
                f"{getattr(err, 'explanation', None) or err}. Check that the engine is healthy (`docker info`)."
            ) from err
        return str(attrs.get("Created") or ""), [
            (int(step.get("Created") or 0), str(step.get("CreatedBy") or "")) for step in steps
        ]

    def image_intermediates(self, image_id: str) -> list[str]:
        """The untagged images the classic builder left under this one, newest first.

        They are the IDs in the image's history down to its first tagged ancestor. Docker with
        overlay2 removes them along with the image; the containerd image store keeps them as
        images of their own, which purge removes next.
        """
        try:
            steps = self.api.history(image_id)  # type: ignore[no-untyped-call]
        except docker.errors.NotFound:
            return []
        except (docker.errors.APIError, requests.exceptions.RequestException) as err:
            raise self.error("read the history of image", image_id, err) from err
        found = []
        for step in steps[1:]:
            step_id = str(step.get("Id") or "")
            if not step_id.startswith("sha256:") or step.get("Tags"):
                break
            found.append(step_id)
        return found

    def try_remove_container(self, container_id: str) -> str | None:
        """Remove a stopped container, never forcing; None once gone, else why it is kept."""

        def remove() -> None:
            self.api.remove_container(container_id, v=False, force=False)

        return self._try_remove("container", container_id, remove)

    def try_remove_volume(self, name: str) -> str | None:
        """Remove a volume, never forcing; None once gone, else why it is kept (in use)."""

        def remove() -> None:
            self.api.remove_volume(name, force=False)

        return self._try_remove("volume", name, remove)

    def try_remove_image(self, image_id: str) -> str | None:
        """Remove an image by ID with all its names, never forcing; None once gone, else why it is kept.

        By ID, so that untagged (dangling) images go too. The engine refuses an ID with several
        names unless forced, and forcing would also delete an image under a stopped container,
        so such an image is untagged name by name instead, once no container uses it. The engine
        checks child images and running containers before names, so when names are what it
        objects to, neither exists: an image that is kept keeps all its names.
        """

        def remove() -> str | None:
            try:
                self.api.remove_image(image_id, force=False, noprune=False)
            except docker.errors.APIError as err:
                # Docker: 409 "referenced in multiple repositories"; Podman: 500 "by ID with more
                # than one tag".
                if not _SEVERAL_NAMES_RE.search(str(err.explanation)):
                    raise
                users = self.api.containers(all=True, quiet=True, filters={"ancestor": image_id})
                # Podman's `ancestor` filter misses them: compare the containers' images as well.
                short = image_id.removeprefix("sha256:")
                users += [
                    container
                    for container in self.api.containers(all=True)
                    if str(container.get("ImageID") or "").removeprefix("sha256:") == short
                ]
                if users:
                    return f"image is being used by stopped container {users[0]['Id'][:12]}"
                attrs = self.api.inspect_image(image_id)  # type: ignore[no-untyped-call]
                for reference in [*(attrs.get("RepoTags") or []), *(attrs.get("RepoDigests") or [])]:
                    self.api.remove_image(reference, force=False, noprune=False)
                self.api.remove_image(image_id, force=False, noprune=False)
            return None

        return self._try_remove("image", image_id, remove)

    def untag_image(self, image_id: str) -> str | None:
        """Remove every name of the image, as `docker rmi NAME:TAG` does, not the image itself.

        Docker with overlay2 refuses to remove by ID an image other images are built FROM, but
        removes its names: it then stays, untagged, for its children, and goes with the last of
        them. The caller makes sure no container uses the image (Docker would untag it anyway).
        """

        def remove() -> str | None:
            attrs = self.api.inspect_image(image_id)  # type: ignore[no-untyped-call]
            for reference in [*(attrs.get("RepoTags") or []), *(attrs.get("RepoDigests") or [])]:
                # A digest goes with its repository's last tag: it may be gone already.
                with contextlib.suppress(docker.errors.NotFound):
                    self.api.remove_image(reference, force=False, noprune=False)
            return None

        return self._try_remove("image", image_id, remove)

    def _try_remove(self, kind: str, ref: str, remove: Callable[[], str | None]) -> str | None:
        try:
            return remove()
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as err:
            explanation = str(err.explanation or err)
            if err.status_code == 409:
                # Keep the reason, not the engine's preamble ("conflict: unable to delete 1a2b (cannot be
                # forced) - image has dependent child images", "remove vol: volume is in use - [id]").
                preamble = (
                    r"^(?:conflict: unable to \w+ .*?\((?:cannot be forced|must be forced|must force)\) - "
                    r"|remove \S+: )"
                )
                return re.sub(preamble, "", explanation)
            raise EngineError(
                f"{_sentence(self.described)} failed to remove {kind} {ref}: {explanation}. "
                "Check that the engine is healthy (`docker info`) and try again."
            ) from err
        except requests.exceptions.RequestException as err:
            raise EngineError(
                f"{_sentence(self.described)} failed to remove {kind} {ref}: {err}. "
                "Check that the engine is healthy (`docker info`) and try again."
            ) from err

    def error(self, action: str, subject: str, err: Exception) -> EngineError:
        """An EngineError naming what failed on which engine."""
        explanation = getattr(err, "explanation", None) or str(err)
        subject = f" {subject}" if subject else ""
        return EngineError(
            f"{_sentence(self.described)} failed to {action}{subject}: {explanation}. "
            "Check that the engine is healthy (`docker info`) and try again."
        )


class DockerContainer:
    """A container created by DockerEngine.container (grocker.protocol.Container)."""

    def __init__(self, engine: DockerEngine, container_id: str, name: str) -> None:
        self.engine = engine
        self.api = engine.api
        self.id = container_id
        self.name = name

    def put_files(self, directory: str, files: Mapping[str, bytes], mode: int = 0o644) -> None:
        """Copy files into the container, stopped or running (into a folder that exists), never into an image."""
        self.api.put_archive(self.id, directory, _tar(files, mode=mode, folders=True).getvalue())

    def get_file(self, path: str) -> bytes | None:
        """Read one file from the container (its volumes included), or None if it is missing."""
        try:
            stream, _stat = self.api.get_archive(self.id, path)
        except docker.errors.NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.next()
            extracted = archive.extractfile(member) if member else None
            return extracted.read() if extracted else None

    def start(self) -> None:
        """Start the container."""
        try:
            self.api.start(self.id)
        except docker.errors.APIError as err:
            raise self.engine.error(f"start container {self.name}", "", err) from err

    def run(self, on_line: LineHandler) -> tuple[int, list[str]]:
        """Start the container, stream its output, and return its exit status and lines."""
        self.start()
        lines: list[str] = []
        pending = ""
        for chunk in self.api.logs(self.id, stream=True, follow=True, stdout=True, stderr=True):
            pending += chunk.decode("utf-8", "replace")
            *complete, pending = pending.split("\n")
            for line in complete:
                lines.append(line)
                on_line(line)
        if pending:
            lines.append(pending)
            on_line(pending)
        status = self.api.wait(self.id)
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
                f"Container {self.name} has no IP address on the default network of "
                f"{self.engine.described}, so the "
                "runner build cannot reach the wheel server. Check the engine's bridge network."
            )
        return str(address)

    def execute(self, command: Sequence[str], on_line: LineHandler) -> tuple[int, list[str]]:
        """Run `command` in the running container, as its user; return its exit status and lines."""
        try:
            created = self.api.exec_create(self.id, list(command), stdout=True, stderr=True)
            output = self.api.exec_start(created["Id"])
            # The output ends when the command does; its exit code may be set a moment later.
            deadline = time.monotonic() + 10
            while (state := self.api.exec_inspect(created["Id"])).get("Running") and time.monotonic() < deadline:
                time.sleep(0.05)
        except docker.errors.APIError as err:
            raise self.engine.error(f"run a command in container {self.name}", "", err) from err
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
            except docker.errors.NotFound:
                return
            except (docker.errors.APIError, requests.exceptions.RequestException) as err:
                if attempt == 2:
                    logger.warning(
                        "could not remove container %s: %s; remove it with `docker rm -f %s`", self.name, err, self.name
                    )
                time.sleep(0.5)


def name_in_use(status: int | None, explanation: str) -> bool:
    """Whether the engine refused a container because another one has its name.

    Docker answers 409 Conflict; Podman 500 "the container name ... is already in use".
    """
    return status == 409 or "is already in use" in explanation


# An engine refusing to remove a network a container is on.
# Docker: 403 "network ... has active endpoints"; Podman: 500 "network is being used".
_NETWORK_IN_USE_RE = re.compile(r"active endpoints|is being used|in use")


def _age(now: float | None, created: object) -> float | None:
    """Seconds from `created` (epoch seconds, or RFC 3339 text as networks give it) to `now`."""
    if now is None:
        return None
    if isinstance(created, (int, float)) and not isinstance(created, bool) and created > 0:
        return max(0.0, now - float(created))
    moment = rfc3339_epoch(created) if isinstance(created, str) else None
    return None if moment is None else max(0.0, now - moment)


# An engine refusing to remove an image by ID because several names point at it.
_SEVERAL_NAMES_RE = re.compile(r"referenced in multiple repositories|by ID with more than one tag")
# The push stream's last status line, `<tag>: digest: sha256:<hex> size: <bytes>`.
_PUSHED_DIGEST_RE = re.compile(r"(?:\S+: )?digest: (sha256:[0-9a-f]{64}) size: \d+")


def push_digest(chunk: Mapping[str, Any]) -> str | None:
    """The manifest digest a push stream's chunk reports, or None.

    Docker with overlay2 and Podman send it in an `aux` chunk; Docker's containerd image store
    sends no `aux` at all, only the final status line, which every engine sends.
    """
    aux = chunk.get("aux")
    if isinstance(aux, dict) and isinstance(aux.get("Digest"), str) and aux["Digest"]:
        return str(aux["Digest"])
    found = _PUSHED_DIGEST_RE.fullmatch(str(chunk.get("status") or "").strip())
    return found.group(1) if found else None


def unpacked_size(steps: Sequence[Mapping[str, Any]]) -> int:
    """An image's unpacked size: the sum of its history's layer sizes."""
    return sum(int(step.get("Size") or 0) for step in steps)


def split_tag(name: str) -> tuple[str, str]:
    """Split `repo[:tag]` into repository and tag (default `latest`), port numbers aside."""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repository, _, tag = name.rpartition(":")
        return repository, tag
    return name, "latest"


def _build_failure(what: str, error: str, lines: Sequence[str]) -> str:
    """The message of a failed build: the engine's error, and the cause when the log shows it."""
    # apt's "E: Unable to locate package foo", apk's "  foo (no such package):".
    missing = [
        found.group(1) or found.group(2)
        for line in lines
        if (found := re.match(r"^E: Unable to locate package (\S+)|^\s+(\S+) \(no such package\)", line))
    ]
    if not missing:
        return f"The {what} build failed: {error}"
    return (
        f"The {what} build failed because the distribution has no system package named "
        f"{', '.join(dict.fromkeys(missing))}. Correct the name in dependencies.run or "
        "dependencies.build of the configuration (or in the runtime's packages), or add the "
        "repository that provides it under `repositories`."
    )


def _image_info(attrs: Mapping[str, Any]) -> ImageInfo:
    config = attrs.get("Config") or {}
    return ImageInfo(
        id=str(attrs["Id"]),
        tags=tuple(attrs.get("RepoTags") or ()),
        labels=dict(config.get("Labels") or {}),
        size=int(attrs.get("Size") or 0),
    )


def _tar(files: Mapping[str, bytes], mode: int = 0o644, folders: bool = False) -> io.BytesIO:
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
