"""Which Docker engine to use, chosen the way the Docker CLI chooses it.

In order: ``DOCKER_HOST`` (with ``DOCKER_TLS_VERIFY``, ``DOCKER_TLS`` and ``DOCKER_CERT_PATH``),
else the context named by ``DOCKER_CONTEXT``, else the ``currentContext`` of the CLI's
``config.json``, else the local socket. As with the CLI (checked against docker 28.2), a
``DOCKER_HOST`` hides ``DOCKER_CONTEXT`` entirely, empty variables count as unset, an unknown
context name is an error and an unreadable ``config.json`` is not.

Contexts are read here rather than through docker-py's ``docker.context``: that one finds the
configuration folder from the process environment (not from arguments), looks in ``./contexts``
of the working folder when there is no ``config.json`` (which ``docker context create`` does not
write), and ignores the TLS files of a context unless CA, certificate and key are all there.
This module is pure: it reads files, never reaches an engine and does not import ``docker``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from grocker.errors import ConfigError, EngineError, shown

DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_CONTEXT = "default"
# What docker-py can connect to; a host without a scheme is a TCP address, as for the CLI.
_SCHEMES = ("unix", "tcp", "ssh", "npipe", "http", "https")
_TLS_SCHEMES = ("tcp", "https")

# config.json and a context's meta.json are a few kilobytes; a bigger one is a mistake (or /dev/zero).
MAX_FILE_BYTES = 1 << 20

Source = Literal["DOCKER_HOST", "DOCKER_CONTEXT", "config", "default"]

TIMEOUT_VARIABLE = "GROCKER_ENGINE_TIMEOUT"
DEFAULT_TIMEOUT = 600
"""Seconds Grocker waits for the engine to answer a request (builds and pushes send output as they go)."""
_TIMEOUT_RE = re.compile(r"[0-9]{1,6}")


@dataclass(frozen=True)
class TLSFiles:
    """How to speak TLS to the engine: verify its certificate or not, and which files to use."""

    verify: bool
    ca_cert: Path | None = None
    client_cert: tuple[Path, Path] | None = None  # (certificate, key)


@dataclass(frozen=True)
class Endpoint:
    """The engine to use, and how it was chosen (for messages)."""

    host: str
    source: Source
    tls: TLSFiles | None = None
    context: str | None = None
    config_file: Path | None = None
    timeout: int = DEFAULT_TIMEOUT
    """Seconds to wait for an answer before the engine counts as unresponsive (GROCKER_ENGINE_TIMEOUT)."""

    @property
    def scheme(self) -> str:
        """The scheme of the host (``unix``, ``tcp``, ``ssh``...); ``tcp`` when it has none."""
        return _scheme(self.host)

    def describe(self) -> str:
        """The engine and how it was chosen, as a phrase for messages.

        For example "the Docker engine at tcp://127.0.0.1:2376 (context `ci`, from DOCKER_CONTEXT)".
        """
        if self.source == "DOCKER_HOST":
            how = "from DOCKER_HOST"
        elif self.source == "DOCKER_CONTEXT":
            how = f"context `{self.context}`, from DOCKER_CONTEXT"
        elif self.source == "config":
            how = f"context `{self.context}`, the current context in {self.config_file}"
        else:
            how = "the default: no DOCKER_HOST, DOCKER_CONTEXT or current context"
        return f"the Docker engine at {self.host} ({how})"


def docker_config_dir(env: Mapping[str, str]) -> Path:
    """The Docker CLI's configuration folder: ``DOCKER_CONFIG``, else ``~/.docker`` (HOME from `env`)."""
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"])
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".docker"


def from_environment(env: Mapping[str, str]) -> Endpoint:
    """The engine named by `env` and the Docker CLI configuration folder it points at."""
    return dataclasses.replace(resolve(env, docker_config_dir(env)), timeout=engine_timeout(env))


def engine_timeout(env: Mapping[str, str]) -> int:
    """GROCKER_ENGINE_TIMEOUT: whole seconds, 1 to 86400; the default when unset or empty."""
    text = env.get(TIMEOUT_VARIABLE) or ""
    if not text:
        return DEFAULT_TIMEOUT
    value = int(text) if _TIMEOUT_RE.fullmatch(text) else 0
    if not 1 <= value <= 86400:
        raise ConfigError(
            f"{TIMEOUT_VARIABLE} is {shown(text)}: it must be a whole number of seconds from 1 to 86400 "
            f"(how long Grocker waits for the engine to answer; default {DEFAULT_TIMEOUT}). "
            f"Correct or unset it."
        )
    return value


def resolve(env: Mapping[str, str], config_dir: Path) -> Endpoint:
    """Choose the engine as the Docker CLI does, from `env` and the CLI configuration in `config_dir`."""
    if env.get("DOCKER_HOST"):
        host = env["DOCKER_HOST"]
        _check_host(host, "DOCKER_HOST")
        return Endpoint(host, "DOCKER_HOST", tls=_tls_from_env(host, env, config_dir))
    config_file = config_dir / "config.json"
    source: Source = "DOCKER_CONTEXT"
    name = env.get("DOCKER_CONTEXT") or ""
    if not name:
        source, name = "config", _current_context(config_file)
    if not name:
        return Endpoint(DEFAULT_HOST, "default")
    where = config_file if source == "config" else None
    if name == DEFAULT_CONTEXT:
        # The CLI's "default" context is the DOCKER_HOST-based one, and DOCKER_HOST is unset here.
        return Endpoint(DEFAULT_HOST, source, context=name, config_file=where)
    return _context_endpoint(name, source, config_dir, where)


def known_contexts(config_dir: Path) -> list[str]:
    """The names of the contexts in `config_dir`, ``default`` first, as `docker context ls` lists them."""
    names = []
    for meta in sorted((config_dir / "contexts" / "meta").glob("*/meta.json")):
        try:
            name = json.loads(read_small_file(meta)).get("Name")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(name, str) and name:
            names.append(name)
    return [DEFAULT_CONTEXT, *sorted(names)]


def engine_summary(version: Mapping[str, Any], info: Mapping[str, Any]) -> str:
    """Product, version, API version and image store, from the engine's /version and /info answers.

    For example "Docker Engine 20.10.24, API 1.41, image store overlay2".
    """
    names = [str(component.get("Name", "")) for component in version.get("Components") or []]
    platform = str((version.get("Platform") or {}).get("Name") or "")
    if "Podman Engine" in names:
        product = "Podman Engine"
    elif platform.startswith("Docker Engine"):
        product = platform
    else:
        product = "Docker Engine"
    driver_status = dict(pair for pair in info.get("DriverStatus") or [] if len(pair) == 2)
    if driver_status.get("driver-type") == "io.containerd.snapshotter.v1":
        store = f"containerd (snapshotter {info.get('Driver') or '?'})"
    else:
        store = str(info.get("Driver") or "unknown")
    return f"{product} {version.get('Version', '?')}, API {version.get('ApiVersion', '?')}, image store {store}"


def read_small_file(path: Path) -> str:
    """The text of a regular file of at most MAX_FILE_BYTES; OSError or ValueError otherwise.

    Opened without blocking, so that a FIFO in its place never hangs the run (and a signal is
    not waited on in `open`); a device (`/dev/zero`) or a huge file is refused, not read whole.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise ValueError(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB")
    return data.decode("utf-8")


def _check_host(host: str, origin: str) -> None:
    scheme = _scheme(host)
    if scheme not in _SCHEMES:
        raise EngineError(
            f"Grocker cannot use the Docker engine at {host} ({origin}) because `{scheme}://` is not an "
            "engine address it knows. Use unix:///PATH/docker.sock, tcp://HOST:PORT or "
            "ssh://[USER@]HOST[:PORT] (ssh needs `pip install 'grocker[ssh]'`)."
        )
    if scheme in ("tcp", "http", "https", "ssh"):
        try:
            port = urlsplit(host if "://" in host else f"tcp://{host}").port  # ValueError when out of range
        except ValueError as err:
            raise EngineError(
                f"Grocker cannot use the Docker engine at {host} ({origin}) because its address is not "
                f"HOST:PORT with a port from 1 to 65535 ({err}). Fix {origin}, e.g. tcp://127.0.0.1:2375."
            ) from None
        if port == 0:
            raise EngineError(
                f"Grocker cannot use the Docker engine at {host} ({origin}) because its address is not "
                f"HOST:PORT with a port from 1 to 65535 (port 0). Fix {origin}, e.g. tcp://127.0.0.1:2375."
            )


def _tls_from_env(host: str, env: Mapping[str, str], config_dir: Path) -> TLSFiles | None:
    """TLS as the CLI sets it from the environment: on with DOCKER_TLS_VERIFY or DOCKER_TLS."""
    verify = bool(env.get("DOCKER_TLS_VERIFY"))
    if _scheme(host) not in _TLS_SCHEMES or not (verify or env.get("DOCKER_TLS")):
        return None
    # The CLI's default certificate folder is its configuration folder; files that are absent are
    # simply not used (no CA: the system's authorities; no certificate: no client authentication).
    folder = Path(env["DOCKER_CERT_PATH"]) if env.get("DOCKER_CERT_PATH") else config_dir
    return _tls_files(folder, verify)


def _tls_files(folder: Path, verify: bool) -> TLSFiles:
    ca, cert, key = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    return TLSFiles(
        verify=verify,
        ca_cert=ca if ca.is_file() else None,
        client_cert=(cert, key) if cert.is_file() and key.is_file() else None,
    )


def _current_context(config_file: Path) -> str:
    """The `currentContext` of config.json; like the CLI, a missing or unreadable file means none."""
    try:
        data = json.loads(read_small_file(config_file))
    except (OSError, ValueError):
        return ""
    value = data.get("currentContext") if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def _context_endpoint(name: str, source: Source, config_dir: Path, config_file: Path | None) -> Endpoint:
    context_id = hashlib.sha256(name.encode("utf-8")).hexdigest()
    meta_file = config_dir / "contexts" / "meta" / context_id / "meta.json"
    named_by = "DOCKER_CONTEXT" if source == "DOCKER_CONTEXT" else f"the current context in {config_file}"
    try:
        meta = json.loads(read_small_file(meta_file))
    except FileNotFoundError:
        known = ", ".join(f"`{known}`" for known in known_contexts(config_dir))
        remedy = (
            "Set DOCKER_CONTEXT to one of them, or unset it"
            if source == "DOCKER_CONTEXT"
            else "Choose one of them with `docker context use NAME`"
        )
        raise EngineError(
            f"Grocker cannot choose the Docker engine because the context `{name}` ({named_by}) does "
            f"not exist in {config_dir / 'contexts'}. The known contexts are {known} "
            f"(`docker context ls` lists them). {remedy}, or create it with `docker context create`."
        ) from None
    except (OSError, ValueError) as err:
        raise EngineError(
            f"Grocker cannot read the Docker context `{name}` ({named_by}) because {meta_file} is not "
            f"readable JSON ({err}). Recreate the context (`docker context rm` then `docker context create`)."
        ) from err
    endpoint = (meta.get("Endpoints") or {}).get("docker") if isinstance(meta, dict) else None
    if not isinstance(endpoint, dict):
        raise EngineError(
            f"Grocker cannot use the Docker context `{name}` ({named_by}) because {meta_file} has no "
            "docker endpoint. Recreate it with `docker context create NAME --docker host=...`."
        )
    host = endpoint.get("Host") or DEFAULT_HOST
    origin = f"context `{name}`"
    if not isinstance(host, str):
        raise EngineError(
            f"Grocker cannot use the Docker context `{name}` ({named_by}) because the Host of its docker "
            f"endpoint in {meta_file} is not a string. Recreate the context with `docker context create`."
        )
    _check_host(host, origin)
    skip_verify = endpoint.get("SkipTLSVerify") is True
    tls_dir = config_dir / "contexts" / "tls" / context_id / "docker"
    has_material = any((tls_dir / file).is_file() for file in ("ca.pem", "cert.pem", "key.pem"))
    # The CLI speaks TLS to a context's engine when the context has TLS files or skips verification.
    tls = _tls_files(tls_dir, not skip_verify) if has_material or skip_verify else None
    return Endpoint(
        host,
        source,
        tls=tls if _scheme(host) in _TLS_SCHEMES else None,
        context=name,
        config_file=config_file,
    )


def _scheme(host: str) -> str:
    return host.split("://", 1)[0] if "://" in host else "tcp"
