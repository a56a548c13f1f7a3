"""Engine selection on real engines: Docker CLI contexts, and ssh:// through a real sshd.

Contexts are made with the real `docker context create`, in a DOCKER_CONFIG folder of the test,
pointing at a private TLS engine (tests/integration/engines.py). The sshd runs on 127.0.0.1 only,
with keys made here, and is stopped at the end of the module; Grocker reaches the main engine
through it (`docker system dial-stdio` on the "remote" side, which is this machine).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.integration.engines import PrivateEngine
from tests.integration.helpers import Grocker, poll_until

# Empty is unset, for Grocker as for the CLI: the machine's own settings must not leak in.
NO_ENGINE_ENV = {"DOCKER_HOST": "", "DOCKER_CONTEXT": "", "DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": ""}


@pytest.fixture
def docker_config(tmp_path: Path, tls_engine: PrivateEngine) -> tuple[Path, str]:
    """A Docker CLI configuration folder with one context, made by `docker context create`, for the TLS engine."""
    config_dir = tmp_path / "docker-config"
    name = f"grocker-test-{uuid.uuid4().hex[:8]}"
    certs = Path(tls_engine.env["DOCKER_CERT_PATH"])
    endpoint = (
        f"host={tls_engine.env['DOCKER_HOST']},ca={certs / 'ca.pem'},cert={certs / 'cert.pem'},key={certs / 'key.pem'}"
    )
    subprocess.run(
        ["docker", "context", "create", name, "--docker", endpoint],
        env={**os.environ, **NO_ENGINE_ENV, "DOCKER_CONFIG": str(config_dir)},
        check=True,
        capture_output=True,
    )
    return config_dir, name


def _has_image(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def test_docker_context_and_current_context_choose_the_engine(
    grocker: Grocker,
    tls_engine: PrivateEngine,
    docker_config: tuple[Path, str],
    pure_wheel: Path,
    docker_client: docker.DockerClient,
) -> None:
    config_dir, context = docker_config
    prefix = f"context-{uuid.uuid4().hex[:8]}"
    env = {**NO_ENGINE_ENV, "DOCKER_CONFIG": str(config_dir), "DOCKER_CONTEXT": context}

    by_variable = grocker.run("-v", "build", str(pure_wheel), "-n", f"{prefix}/app:1", "--no-push", env=env)

    assert by_variable.returncode == 0, by_variable.output
    remote = tls_engine.client()
    assert remote.containers.run(f"{prefix}/app:1", remove=True).decode().strip() == "pureapp 1.0.0 on python 3.13"
    assert not _has_image(docker_client, f"{prefix}/app:1"), "built on the main engine instead"
    # -v says once which engine it is, what it is, and how it was chosen.
    summaries = re.findall(r"^engine: .*$", by_variable.stderr, re.MULTILINE)
    assert summaries == [
        f"engine: Docker Engine {remote.version()['Version']}, API 1.41, image store overlay2; the Docker engine "
        f"at {tls_engine.env['DOCKER_HOST']} (context `{context}`, from DOCKER_CONTEXT)"
    ], by_variable.stderr

    # `docker context use` writes currentContext into config.json; Grocker follows it too.
    subprocess.run(
        ["docker", "context", "use", context],
        env={**os.environ, **NO_ENGINE_ENV, "DOCKER_CONFIG": str(config_dir)},
        check=True,
        capture_output=True,
    )
    by_config = grocker.run(
        "build", str(pure_wheel), "-n", f"{prefix}/app:2", "--no-push", env={**env, "DOCKER_CONTEXT": ""}
    )

    assert by_config.returncode == 0, by_config.output
    assert _has_image(remote, f"{prefix}/app:2")
    assert not _has_image(docker_client, f"{prefix}/app:2"), "built on the main engine instead"


def test_docker_host_wins_over_docker_context(grocker: Grocker, docker_config: tuple[Path, str]) -> None:
    config_dir, context = docker_config
    closed = _free_port()
    env = {**NO_ENGINE_ENV, "DOCKER_CONFIG": str(config_dir), "DOCKER_CONTEXT": context}

    result = grocker.run(
        "build", "ipython==8.18.1", "--no-push", env={**env, "DOCKER_HOST": f"tcp://127.0.0.1:{closed}"}
    )

    assert result.returncode == 4, result.output
    assert f"cannot reach the Docker engine at tcp://127.0.0.1:{closed} (from DOCKER_HOST)" in result.stderr


def test_an_unknown_context_is_an_engine_error_listing_the_known_ones(
    grocker: Grocker, docker_config: tuple[Path, str]
) -> None:
    config_dir, context = docker_config
    env = {**NO_ENGINE_ENV, "DOCKER_CONFIG": str(config_dir), "DOCKER_CONTEXT": "no-such-context"}

    result = grocker.run("build", "ipython==8.18.1", "--no-push", env=env)

    assert result.returncode == 4, result.output
    message = " ".join(result.stderr.split())
    assert "the context `no-such-context` (DOCKER_CONTEXT) does not exist" in message
    assert f"The known contexts are `default`, `{context}` (`docker context ls` lists them)" in message
    assert "Traceback" not in result.output


# ssh://


@dataclass
class SSHServer:
    """An sshd on 127.0.0.1 that lets root in with one key, and a HOME whose ~/.ssh reaches it."""

    port: int
    home: Path

    @property
    def env(self) -> dict[str, str]:
        """What points Grocker at the main engine through this sshd."""
        return {**NO_ENGINE_ENV, "DOCKER_HOST": f"ssh://root@127.0.0.1:{self.port}", "HOME": str(self.home)}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def sshd(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """Debian's sshd (scripts/setup-machine.sh installs it), on loopback, with keys made here."""
    binary = Path("/usr/sbin/sshd")
    if not binary.exists():
        pytest.fail("no /usr/sbin/sshd: run scripts/setup-machine.sh (it installs openssh-server)")
    root = tmp_path_factory.mktemp("sshd")
    for key in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"grocker-test-{key}", "-f", str(root / key)],
            check=True,
            capture_output=True,
        )
    shutil.copy(root / "client.pub", root / "authorized_keys")
    port = _free_port()
    # The remote side runs `docker system dial-stdio`: point it at the engine the tests use.
    main_engine = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    (root / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:{port}\n"
        f"HostKey {root / 'host'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        f"PidFile {root / 'sshd.pid'}\n"
        "AllowUsers root\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "X11Forwarding no\n"
        "AllowTcpForwarding no\n"
        # docker-py's paramiko transport opens one ssh session per HTTP connection and sshd frees a
        # closed one asynchronously: on a loaded machine a build passed the default of 10 (seen in
        # CI). Grocker's error names MaxSessions as the remedy; the test applies it.
        "MaxSessions 30\n"
        f"SetEnv DOCKER_HOST={main_engine}\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    log = root / "sshd.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(binary), "-D", "-e", "-f", str(root / "sshd_config")], stdout=output, stderr=subprocess.STDOUT
        )
    try:

        def listens() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
            return False

        poll_until(
            listens,
            20,
            f"sshd listening on 127.0.0.1:{port}",
            interval=0.1,
            stop_if=lambda: process.poll() is not None,
            explain=lambda: log.read_text()[-2000:],
        )
        home = root / "home"
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(parents=True, mode=0o700)
        shutil.copy(root / "client", ssh_dir / "id_ed25519")
        (ssh_dir / "id_ed25519").chmod(0o600)
        # docker-py (paramiko) reads ~/.ssh/config and ~/.ssh/known_hosts and refuses unknown hosts.
        (ssh_dir / "config").write_text(f"Host 127.0.0.1\n  IdentityFile {ssh_dir / 'id_ed25519'}\n")
        host_key = (root / "host.pub").read_text().split()
        (ssh_dir / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        yield SSHServer(port, home)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_build_through_an_ssh_engine(
    grocker: Grocker, sshd: SSHServer, pure_wheel: Path, docker_client: docker.DockerClient
) -> None:
    name = grocker.name("ssh")

    result = grocker.run("-v", "build", str(pure_wheel), "-n", name, "--no-push", env=sshd.env)

    assert result.returncode == 0, result.output
    # The log hides the user-info of every URL, as it does for index URLs that carry tokens.
    assert f"the Docker engine at ssh://****@127.0.0.1:{sshd.port} (from DOCKER_HOST)" in result.stderr
    assert grocker.docker_run(name).strip() == "pureapp 1.0.0 on python 3.13"
    assert _has_image(docker_client, name)


def test_an_unknown_ssh_host_key_is_a_clear_error(grocker: Grocker, sshd: SSHServer) -> None:
    (sshd.home / ".ssh" / "known_hosts").rename(sshd.home / ".ssh" / "known_hosts.saved")
    try:
        result = grocker.run("build", "ipython==8.18.1", "--no-push", env=sshd.env)
    finally:
        (sshd.home / ".ssh" / "known_hosts.saved").rename(sshd.home / ".ssh" / "known_hosts")

    assert result.returncode == 4, result.output
    message = " ".join(result.stderr.split())
    assert f"cannot reach the Docker engine at ssh://****@127.0.0.1:{sshd.port} (from DOCKER_HOST) over ssh" in message
    assert f"`ssh -p {sshd.port} root@127.0.0.1 docker system dial-stdio` must work without a prompt" in message
    assert "Traceback" not in result.output
