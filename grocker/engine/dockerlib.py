"""docker-py, imported without its ssh transport unless the engine is reached over ssh.

docker-py imports its ssh transport, and so paramiko, whenever paramiko is installed (the `ssh`
extra): about 0.2 s of every command's start, for nothing when the engine is at a unix socket
or a tcp address. Unless the environment names an ssh:// engine, paramiko is hidden while
docker-py is imported (a None in sys.modules fails that optional import as if paramiko were
absent) and visible again right after, for whoever imports it later. `ssh_transport` brings
the transport in when a connection to an ssh:// engine needs it after all.
"""

from __future__ import annotations

import os
import sys

from grocker.engine import endpoint


def _ssh_engine() -> bool:
    try:
        return endpoint.from_environment(os.environ).scheme == "ssh"
    except Exception:  # a bad endpoint is reported when Grocker connects
        return False


_hidden = "paramiko" not in sys.modules and not _ssh_engine()
if _hidden:
    sys.modules["paramiko"] = None  # type: ignore[assignment]
try:
    import docker
    import docker.api.client
    import docker.constants
    import docker.errors
    import docker.tls
    import docker.transport
    import docker.types.daemon
    import docker.utils.socket
finally:
    if _hidden and "paramiko" in sys.modules and sys.modules["paramiko"] is None:
        del sys.modules["paramiko"]

__all__ = ["docker", "ssh_transport"]


def ssh_transport() -> None:
    """Import docker-py's ssh transport if its import skipped it; ImportError without paramiko."""
    if hasattr(docker.transport, "SSHHTTPAdapter"):
        return
    from docker.transport.sshconn import SSHHTTPAdapter

    # Where docker-py looks the adapter up when a client connects to an ssh:// address.
    docker.transport.SSHHTTPAdapter = SSHHTTPAdapter  # type: ignore[misc]
    docker.api.client.SSHHTTPAdapter = SSHHTTPAdapter  # type: ignore[attr-defined]
