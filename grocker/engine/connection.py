"""Connecting to the engine an Endpoint names: check that it answers and is recent enough.

A failure here means nothing was reached yet, so its message says how to reach the engine
(start it, fix the socket's permissions, the TLS files, the ssh set-up) rather than how to
retry. Once connected, every command first removes what lost commands left running on the
engine (grocker.engine.cleanup's sweep).
"""

from __future__ import annotations

import importlib
import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

from grocker.engine._calls import is_failure, sentence
from grocker.engine.docker import DockerEngine
from grocker.engine.dockerlib import docker, ssh_transport
from grocker.engine.endpoint import Endpoint, TLSFiles, engine_summary
from grocker.engine.protocol import Engine
from grocker.errors import EngineError
from grocker.log import logger

MIN_API_VERSION = (1, 39)
# The first answer comes fast from a healthy engine: an engine that accepts the connection and
# never answers must fail the command in seconds, not after the timeout that builds and pushes need.
CONNECT_TIMEOUT = 20
_FIRST_API_VERSION = "1.39"


def connect(endpoint: Endpoint) -> Engine:
    """Connect to the engine `endpoint` names, check that it answers and is recent; sweep it."""
    described = endpoint.describe()
    timeout = min(CONNECT_TIMEOUT, endpoint.timeout)
    if endpoint.scheme == "ssh":
        _check_ssh(endpoint)
    try:
        # The API version is negotiated below, once the session is set up: not at construction.
        client = docker.DockerClient(
            base_url=endpoint.host, tls=_tls_config(endpoint.tls), timeout=timeout, version=_FIRST_API_VERSION
        )
        # requests would let REQUESTS_CA_BUNDLE (often set for a proxy's CA) replace the engine's
        # CA from DOCKER_CERT_PATH, and the TLS handshake would fail; an engine is never reached
        # through an HTTP proxy either.
        client.api.trust_env = False
        version = client.version(api_version=False)
        # docker-py has no public setter: it negotiates only in its constructor.
        client.api._version = _negotiated(str(version.get("ApiVersion", "0.0")))  # type: ignore[attr-defined]
        api = tuple(int(part) for part in str(version.get("ApiVersion", "0.0")).split(".")[:2])
        if api < MIN_API_VERSION:
            raise EngineError(
                f"{sentence(described)} speaks API {version.get('ApiVersion')}, older than the "
                f"{'.'.join(map(str, MIN_API_VERSION))} Grocker needs (Docker 18.09). Upgrade the engine."
            )
        # One more call: it tells the image store (and, at -v, what the engine is).
        info = client.info()
    except docker.errors.TLSParameterError as err:
        raise EngineError(
            f"Grocker cannot use {described} because its TLS files are not usable: {err}. Check the "
            "certificate folder (ca.pem, cert.pem, key.pem).",
        ) from err
    except EngineError:
        raise
    except Exception as err:
        if not is_failure(err):
            raise
        raise _unreachable(endpoint, err, timeout) from err
    client.api.timeout = endpoint.timeout
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("engine: %s; %s", engine_summary(version, info), described)
    components = {str(part.get("Name")) for part in version.get("Components") or [] if isinstance(part, dict)}
    engine = DockerEngine(
        client,
        described,
        podman="Podman Engine" in components,
        containerd_store=uses_containerd_store(info),
        parallel=endpoint.scheme != "ssh",
        # Over ssh, each attached stdin is an ssh session held for the whole command, and sshd
        # limits the sessions of a connection (MaxSessions): the mutex needs its own.
        leases=endpoint.scheme != "ssh",
    )
    engine.sweep()
    return engine


def _tls_config(tls: TLSFiles | None) -> Any:
    if tls is None:
        return False
    return docker.tls.TLSConfig(
        client_cert=(str(tls.client_cert[0]), str(tls.client_cert[1])) if tls.client_cert else None,
        ca_cert=str(tls.ca_cert) if tls.ca_cert else None,
        verify=tls.verify,
    )


def _check_ssh(endpoint: Endpoint) -> None:
    """A clear error when paramiko (the `ssh` extra), which ssh:// engines need, is missing."""
    try:
        # Optional, and untyped: only ssh:// engines need it.
        importlib.import_module("paramiko")
        ssh_transport()
    except ImportError as err:
        raise EngineError(
            f"Grocker cannot reach {endpoint.describe()} because ssh:// engines need paramiko, which "
            "is not installed. Install Grocker with its ssh extra: `pip install 'grocker[ssh]'`.",
        ) from err


def _negotiated(server: str) -> str:
    """The highest API version both docker-py and the engine speak."""
    ours = docker.constants.DEFAULT_DOCKER_API_VERSION

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split(".")[:2])

    return server if key(server) < key(ours) else ours


def _unreachable(endpoint: Endpoint, err: Exception, timeout: int) -> EngineError:
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
            f"{sentence(described)} did not answer within {timeout:g} s: something "
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
