"""Private Docker engines for tests that must not touch the main one: a second dockerd with its own
data, its own bridge (so its containers reach PyPI and each other) and, optionally, a TLS TCP socket.

A private engine never uses `--bridge=none`: a dockerd started that way deletes the host's docker0
bridge, which breaks the main engine's networking.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker

from tests.integration.helpers import poll_until

_COUNTER = itertools.count(1)


@dataclass
class PrivateEngine:
    """A running private dockerd and the environment that points a client at it."""

    root: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    bridge: str

    _client: docker.DockerClient | None = None

    def client(self) -> docker.DockerClient:
        """A docker-py client of this engine, closed when the engine stops."""
        if self._client is None:
            # As grocker.engine does: REQUESTS_CA_BUNDLE must not replace the engine's CA.
            self._client = docker.from_env(environment=self.env, timeout=600, version="1.41")
            self._client.api.trust_env = False
        return self._client

    def load(self, *images: str) -> None:
        """Copy images from the main engine (`docker save | docker load`)."""
        with subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE, env=_main_env()) as save:
            subprocess.run(
                ["docker", "load", "-q"],
                stdin=save.stdout,
                env={**os.environ, **self.env},
                check=True,
                stdout=subprocess.DEVNULL,
            )
        assert save.returncode == 0

    def stop(self) -> None:
        """Stop the daemon and delete its bridge and folders."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        subprocess.run(["ip", "link", "delete", self.bridge], check=False, capture_output=True)
        remove_firewall_rules(self.bridge)
        subprocess.run(["umount", "-R", str(self.root / "data")], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def remove_firewall_rules(bridge: str) -> None:
    """Delete the iptables rules a stopped dockerd left for its bridge (dockerd does not on exit)."""
    for table in ("filter", "nat"):
        listing = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True, check=False)
        for rule in listing.stdout.splitlines():
            if rule.startswith("-A ") and (f" {bridge} " in f"{rule} " or f"-o {bridge}" in rule):
                subprocess.run(["iptables", "-t", table, "-D", *rule.split()[1:]], capture_output=True, check=False)


def make_certificates(folder: Path, host_ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """A CA, a server certificate for `host_ip` and a client certificate (DOCKER_CERT_PATH layout).

    Returns (server folder, client folder).
    """
    server, client = folder / "server", folder / "client"
    server.mkdir(parents=True)
    client.mkdir(parents=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=grocker-test-ca",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    )
    (folder / "server.ext").write_text(f"subjectAltName=IP:{host_ip},DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, ext in (("server", "server.ext"), ("client", "client.ext")):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}-key.pem",
            "-out",
            f"{name}.csr",
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext,
            "-out",
            f"{name}-cert.pem",
        )
    for target in (server, client):
        shutil.copy(folder / "ca.pem", target / "ca.pem")
    shutil.copy(folder / "server-cert.pem", server / "cert.pem")
    shutil.copy(folder / "server-key.pem", server / "key.pem")
    shutil.copy(folder / "client-cert.pem", client / "cert.pem")
    shutil.copy(folder / "client-key.pem", client / "key.pem")
    return server, client


def start_engine(
    tls: bool = False,
    port: int | None = None,
    bridge_name: str = "grkeng",
    net: str = "10.213",
    parent: Path = Path("/tmp"),
) -> PrivateEngine:
    """Start a private dockerd; with `tls`, on tcp://127.0.0.1:PORT with --tlsverify.

    `bridge_name` and `net` (the first two bytes of its /24) keep a test's engines apart from
    other tests' running at the same time on the machine; its folders (data root included) are
    made in `parent`.
    """
    # A bridge of a number's name may be a leftover of a run that was killed: take the next free
    # one (its subnet, made from the number, is then free too).
    offset = os.getpid() % 50 * 4
    number = next(
        n for n in (count + offset for count in _COUNTER) if not Path(f"/sys/class/net/{bridge_name}{n}").exists()
    )
    parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="grocker-engine-", dir=parent))
    bridge = f"{bridge_name}{number}"
    subnet = f"{net}.{number % 250}.1/24"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True, capture_output=True)
    subprocess.run(["ip", "addr", "add", subnet, "dev", bridge], check=True, capture_output=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True, capture_output=True)
    unix_socket = root / "docker.sock"
    command = [
        "dockerd",
        "--data-root",
        str(root / "data"),
        "--exec-root",
        str(root / "exec"),
        "--pidfile",
        str(root / "docker.pid"),
        "--bridge",
        bridge,
        "-H",
        f"unix://{unix_socket}",
    ]
    env = {"DOCKER_HOST": f"unix://{unix_socket}"}
    if tls:
        server, client = make_certificates(root / "certs")
        port = port or 23760 + number
        command += [
            "-H",
            f"tcp://127.0.0.1:{port}",
            "--tlsverify",
            "--tlscacert",
            str(server / "ca.pem"),
            "--tlscert",
            str(server / "cert.pem"),
            "--tlskey",
            str(server / "key.pem"),
        ]
        env = {"DOCKER_HOST": f"tcp://127.0.0.1:{port}", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(client)}
    with (root / "dockerd.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    engine = PrivateEngine(root, env, process, bridge)

    def listens() -> bool:
        # A raw probe of the unix socket (always served): docker-py leaks the sockets of failed pings.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe, contextlib.suppress(OSError):
            probe.connect(str(unix_socket))
            return True
        return False

    try:
        poll_until(
            listens,
            60,
            "the private dockerd listening",
            interval=0.3,
            stop_if=lambda: process.poll() is not None,
            explain=lambda: (root / "dockerd.log").read_text()[-2000:],
        )
        engine.client().ping()
    except BaseException:
        engine.stop()
        raise
    return engine


def _main_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DOCKER_")}
    return env
