"""Engine selection as the Docker CLI does it: DOCKER_HOST, DOCKER_CONTEXT, current context, socket.

Contexts are written here in the layout `docker context create` writes (checked against the real
CLI by tests/integration/test_endpoints.py); no engine is reached.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from grocker.engine import connection as engine
from grocker.engine.endpoint import (
    DEFAULT_HOST,
    Endpoint,
    TLSFiles,
    docker_config_dir,
    engine_summary,
    from_environment,
    resolve,
)
from grocker.errors import EngineError


def make_context(
    config_dir: Path,
    name: str,
    host: str | None,
    *,
    skip_tls_verify: bool = False,
    tls_files: tuple[str, ...] = (),
) -> Path:
    """A context as `docker context create NAME --docker host=HOST,...` writes it; returns its TLS folder."""
    context_id = hashlib.sha256(name.encode()).hexdigest()
    endpoint: dict[str, Any] = {"SkipTLSVerify": skip_tls_verify}
    if host is not None:
        endpoint["Host"] = host
    meta = config_dir / "contexts" / "meta" / context_id / "meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}}))
    tls_dir = config_dir / "contexts" / "tls" / context_id / "docker"
    for file in tls_files:
        tls_dir.mkdir(parents=True, exist_ok=True)
        (tls_dir / file).write_text("PEM")
    return tls_dir


def use_context(config_dir: Path, name: str) -> None:
    """What `docker context use NAME` does."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.json").write_text(json.dumps({"auths": {}, "currentContext": name}))


def test_nothing_set_is_the_local_socket(tmp_path: Path) -> None:
    endpoint = resolve({}, tmp_path)

    assert endpoint == Endpoint(DEFAULT_HOST, "default")
    assert endpoint.describe() == (
        "the Docker engine at unix:///var/run/docker.sock "
        "(the default: no DOCKER_HOST, DOCKER_CONTEXT or current context)"
    )


def test_docker_host_wins_over_context_and_current_context(tmp_path: Path) -> None:
    make_context(tmp_path, "ci", "tcp://10.0.0.1:2375")
    use_context(tmp_path, "ci")
    # As the CLI: DOCKER_HOST hides DOCKER_CONTEXT, even one that does not exist, without a word.
    env = {"DOCKER_HOST": "tcp://127.0.0.1:2375", "DOCKER_CONTEXT": "no-such-context"}

    endpoint = resolve(env, tmp_path)

    assert endpoint == Endpoint("tcp://127.0.0.1:2375", "DOCKER_HOST")
    assert endpoint.describe() == "the Docker engine at tcp://127.0.0.1:2375 (from DOCKER_HOST)"


def test_docker_context_names_the_context(tmp_path: Path) -> None:
    make_context(tmp_path, "ci", "tcp://10.0.0.1:2375")
    make_context(tmp_path, "other", "tcp://10.0.0.2:2375")
    use_context(tmp_path, "other")

    endpoint = resolve({"DOCKER_HOST": "", "DOCKER_CONTEXT": "ci"}, tmp_path)

    assert endpoint == Endpoint("tcp://10.0.0.1:2375", "DOCKER_CONTEXT", context="ci")
    assert endpoint.describe() == "the Docker engine at tcp://10.0.0.1:2375 (context `ci`, from DOCKER_CONTEXT)"


def test_the_current_context_of_config_json_is_followed(tmp_path: Path) -> None:
    make_context(tmp_path, "remote", "ssh://builder@build.example.com")
    use_context(tmp_path, "remote")

    endpoint = resolve({"DOCKER_CONTEXT": ""}, tmp_path)

    assert endpoint == Endpoint(
        "ssh://builder@build.example.com", "config", context="remote", config_file=tmp_path / "config.json"
    )
    assert endpoint.scheme == "ssh"
    assert endpoint.describe() == (
        "the Docker engine at ssh://builder@build.example.com "
        f"(context `remote`, the current context in {tmp_path / 'config.json'})"
    )


def test_docker_context_default_is_the_local_socket_whatever_the_current_context(tmp_path: Path) -> None:
    make_context(tmp_path, "ci", "tcp://10.0.0.1:2375")
    use_context(tmp_path, "ci")

    endpoint = resolve({"DOCKER_CONTEXT": "default"}, tmp_path)

    assert endpoint == Endpoint(DEFAULT_HOST, "DOCKER_CONTEXT", context="default")


def test_a_current_context_named_default_is_the_local_socket(tmp_path: Path) -> None:
    use_context(tmp_path, "default")

    assert resolve({}, tmp_path).host == DEFAULT_HOST


def test_an_unknown_docker_context_is_an_error_listing_the_known_ones(tmp_path: Path) -> None:
    make_context(tmp_path, "ci", "tcp://10.0.0.1:2375")
    make_context(tmp_path, "build", "tcp://10.0.0.2:2375")

    with pytest.raises(EngineError) as raised:
        resolve({"DOCKER_CONTEXT": "cl"}, tmp_path)

    assert raised.value.exit_code == 4
    assert str(raised.value) == (
        "Grocker cannot choose the Docker engine because the context `cl` (DOCKER_CONTEXT) does not "
        f"exist in {tmp_path / 'contexts'}. The known contexts are `default`, `build`, `ci` "
        "(`docker context ls` lists them). Set DOCKER_CONTEXT to one of them, or unset it, or create "
        "it with `docker context create`."
    )


def test_an_unknown_current_context_is_an_error_naming_config_json(tmp_path: Path) -> None:
    use_context(tmp_path, "gone")

    with pytest.raises(EngineError) as raised:
        resolve({}, tmp_path)

    message = str(raised.value)
    assert raised.value.exit_code == 4
    assert f"the context `gone` (the current context in {tmp_path / 'config.json'}) does not exist" in message
    assert "The known contexts are `default` (`docker context ls` lists them)" in message
    assert "`docker context use NAME`" in message


@pytest.mark.parametrize("content", ["{not json", "[]", '{"currentContext": 3}', '{"currentContext": ""}'])
def test_an_unreadable_config_json_is_no_current_context(tmp_path: Path, content: str) -> None:
    # As the CLI, which only warns about a config.json it cannot parse.
    (tmp_path / "config.json").write_text(content)

    assert resolve({}, tmp_path) == Endpoint(DEFAULT_HOST, "default")


def test_a_corrupt_context_is_an_error_naming_its_file(tmp_path: Path) -> None:
    make_context(tmp_path, "ci", "tcp://10.0.0.1:2375")
    meta = next((tmp_path / "contexts" / "meta").glob("*/meta.json"))
    meta.write_text("{truncated")

    with pytest.raises(EngineError) as raised:
        resolve({"DOCKER_CONTEXT": "ci"}, tmp_path)

    assert str(meta) in str(raised.value)
    assert "Recreate the context" in str(raised.value)


def test_a_context_without_docker_endpoint_is_an_error(tmp_path: Path) -> None:
    make_context(tmp_path, "k8s", "tcp://10.0.0.1:2375")
    meta = next((tmp_path / "contexts" / "meta").glob("*/meta.json"))
    meta.write_text(json.dumps({"Name": "k8s", "Metadata": {}, "Endpoints": {"kubernetes": {}}}))

    with pytest.raises(EngineError, match="has no docker endpoint"):
        resolve({"DOCKER_CONTEXT": "k8s"}, tmp_path)


def test_a_context_without_host_is_the_local_socket(tmp_path: Path) -> None:
    make_context(tmp_path, "local", None)

    assert resolve({"DOCKER_CONTEXT": "local"}, tmp_path).host == DEFAULT_HOST


def test_a_context_with_tls_files_verifies_with_them(tmp_path: Path) -> None:
    tls_dir = make_context(tmp_path, "tls", "tcp://10.0.0.1:2376", tls_files=("ca.pem", "cert.pem", "key.pem"))

    endpoint = resolve({"DOCKER_CONTEXT": "tls"}, tmp_path)

    assert endpoint.tls == TLSFiles(
        verify=True, ca_cert=tls_dir / "ca.pem", client_cert=(tls_dir / "cert.pem", tls_dir / "key.pem")
    )


def test_a_context_with_only_a_ca_speaks_tls(tmp_path: Path) -> None:
    # docker-py's own context reader would drop the CA and speak plain HTTP here; the CLI does not.
    tls_dir = make_context(tmp_path, "ca-only", "tcp://10.0.0.1:2376", tls_files=("ca.pem",))

    assert resolve({"DOCKER_CONTEXT": "ca-only"}, tmp_path).tls == TLSFiles(verify=True, ca_cert=tls_dir / "ca.pem")


def test_a_context_that_skips_verification_speaks_tls_without_verifying(tmp_path: Path) -> None:
    make_context(tmp_path, "insecure", "tcp://10.0.0.1:2376", skip_tls_verify=True)

    assert resolve({"DOCKER_CONTEXT": "insecure"}, tmp_path).tls == TLSFiles(verify=False)


def test_a_tcp_context_without_tls_files_speaks_plain_http(tmp_path: Path) -> None:
    make_context(tmp_path, "plain", "tcp://10.0.0.1:2375")

    assert resolve({"DOCKER_CONTEXT": "plain"}, tmp_path).tls is None


def test_the_tls_variables_do_not_apply_to_a_context(tmp_path: Path) -> None:
    make_context(tmp_path, "plain", "tcp://10.0.0.1:2375")
    env = {"DOCKER_CONTEXT": "plain", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)}

    assert resolve(env, tmp_path).tls is None


def test_docker_tls_verify_uses_the_cert_path(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    for file in ("ca.pem", "cert.pem", "key.pem"):
        (certs / file).write_text("PEM")
    env = {"DOCKER_HOST": "tcp://10.0.0.1:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}

    assert resolve(env, tmp_path / "config").tls == TLSFiles(
        verify=True, ca_cert=certs / "ca.pem", client_cert=(certs / "cert.pem", certs / "key.pem")
    )


def test_the_default_cert_path_is_the_cli_config_dir(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("PEM")
    env = {"DOCKER_HOST": "tcp://10.0.0.1:2376", "DOCKER_TLS_VERIFY": "1"}

    assert resolve(env, tmp_path).tls == TLSFiles(verify=True, ca_cert=tmp_path / "ca.pem")


def test_docker_tls_without_verify_speaks_tls_without_verifying(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": "tcp://10.0.0.1:2376", "DOCKER_TLS": "1"}

    assert resolve(env, tmp_path).tls == TLSFiles(verify=False)


@pytest.mark.parametrize(
    "env",
    [
        {"DOCKER_HOST": "tcp://10.0.0.1:2375"},
        # As the CLI: a cert path alone does not turn TLS on, and an empty DOCKER_TLS_VERIFY is unset.
        {"DOCKER_HOST": "tcp://10.0.0.1:2375", "DOCKER_CERT_PATH": "/certs", "DOCKER_TLS_VERIFY": ""},
        {"DOCKER_HOST": "unix:///run/user/1000/docker.sock", "DOCKER_TLS_VERIFY": "1"},
        {"DOCKER_HOST": "ssh://me@host", "DOCKER_TLS_VERIFY": "1"},
    ],
)
def test_no_tls_unless_asked_for_a_tcp_engine(tmp_path: Path, env: dict[str, str]) -> None:
    assert resolve(env, tmp_path).tls is None


@pytest.mark.parametrize("host", ["ftp://10.0.0.1", "fd://", "docker.sock://x"])
def test_an_unknown_scheme_is_a_clear_error(tmp_path: Path, host: str) -> None:
    with pytest.raises(EngineError) as raised:
        resolve({"DOCKER_HOST": host}, tmp_path)

    assert raised.value.exit_code == 4
    assert f"Grocker cannot use the Docker engine at {host} (DOCKER_HOST) because" in str(raised.value)
    assert "ssh://[USER@]HOST[:PORT]" in str(raised.value)


def test_an_unknown_scheme_in_a_context_names_the_context(tmp_path: Path) -> None:
    make_context(tmp_path, "odd", "ftp://10.0.0.1")

    with pytest.raises(EngineError, match=r"at ftp://10\.0\.0\.1 \(context `odd`\)"):
        resolve({"DOCKER_CONTEXT": "odd"}, tmp_path)


def test_a_host_without_scheme_is_tcp(tmp_path: Path) -> None:
    assert resolve({"DOCKER_HOST": "10.0.0.1:2375"}, tmp_path).scheme == "tcp"


def test_the_config_dir_is_docker_config_else_home(tmp_path: Path) -> None:
    assert docker_config_dir({"DOCKER_CONFIG": "/etc/ci/docker", "HOME": "/home/me"}) == Path("/etc/ci/docker")
    assert docker_config_dir({"DOCKER_CONFIG": "", "HOME": "/home/me"}) == Path("/home/me/.docker")


def test_from_environment_reads_contexts_from_docker_config(tmp_path: Path) -> None:
    make_context(tmp_path / "cfg", "ci", "tcp://10.0.0.1:2375")
    use_context(tmp_path / "cfg", "ci")

    endpoint = from_environment({"DOCKER_CONFIG": str(tmp_path / "cfg"), "HOME": str(tmp_path / "home")})

    assert endpoint.host == "tcp://10.0.0.1:2375"
    assert endpoint.context == "ci"


DOCKER_20_VERSION = {
    "Platform": {"Name": ""},
    "Components": [{"Name": "Engine", "Version": "20.10.24+dfsg1"}, {"Name": "containerd"}],
    "Version": "20.10.24+dfsg1",
    "ApiVersion": "1.41",
}
DOCKER_CE_VERSION = {
    "Platform": {"Name": "Docker Engine - Community"},
    "Components": [{"Name": "Engine", "Version": "26.1.5"}],
    "Version": "26.1.5",
    "ApiVersion": "1.45",
}
PODMAN_VERSION = {
    "Platform": {"Name": "linux/amd64/debian-13"},
    "Components": [{"Name": "Podman Engine", "Version": "5.4.2"}, {"Name": "Conmon"}],
    "Version": "5.4.2",
    "ApiVersion": "1.41",
}


@pytest.mark.parametrize(
    ("version", "info", "expected"),
    [
        (DOCKER_20_VERSION, {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]},
         "Docker Engine 20.10.24+dfsg1, API 1.41, image store overlay2"),
        (DOCKER_CE_VERSION, {"Driver": "overlayfs", "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]},
         "Docker Engine - Community 26.1.5, API 1.45, image store containerd (snapshotter overlayfs)"),
        (PODMAN_VERSION, {"Driver": "overlay", "DriverStatus": None},
         "Podman Engine 5.4.2, API 1.41, image store overlay"),
    ],
)  # fmt: skip
def test_engine_summary_names_product_version_api_and_image_store(
    version: dict[str, Any], info: dict[str, Any], expected: str
) -> None:
    assert engine_summary(version, info) == expected


def test_an_ssh_engine_without_paramiko_names_the_ssh_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "paramiko", None)  # what `import paramiko` sees when it is not installed

    with pytest.raises(EngineError) as raised:
        engine.connect(Endpoint("ssh://builder@build.example.com", "DOCKER_HOST"))

    assert raised.value.exit_code == 4
    assert str(raised.value) == (
        "Grocker cannot reach the Docker engine at ssh://builder@build.example.com (from DOCKER_HOST) "
        "because ssh:// engines need paramiko, which is not installed. Install Grocker with its ssh "
        "extra: `pip install 'grocker[ssh]'`."
    )


def test_the_ssh_advice_gives_the_command_to_try() -> None:
    assert engine._ssh_command("ssh://root@127.0.0.1:2222") == "ssh -p 2222 root@127.0.0.1"
    assert engine._ssh_command("ssh://build.example.com") == "ssh build.example.com"


def test_tls_files_become_docker_py_settings(tmp_path: Path) -> None:
    for file in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / file).write_text("PEM")
    files = TLSFiles(
        verify=True, ca_cert=tmp_path / "ca.pem", client_cert=(tmp_path / "cert.pem", tmp_path / "key.pem")
    )

    verified = engine._tls_config(files)
    unverified = engine._tls_config(TLSFiles(verify=False))

    assert not isinstance(verified, bool)
    assert (verified.verify, verified.ca_cert, verified.cert) == (
        True,
        str(tmp_path / "ca.pem"),
        (str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")),
    )
    assert not isinstance(unverified, bool)
    assert (unverified.verify, unverified.ca_cert, unverified.cert) == (False, None, None)
    assert engine._tls_config(None) is False


_IMPORTS = """
import sys
import grocker.engine.docker
print("paramiko" in sys.modules)
import paramiko, docker.transport
from grocker.engine.dockerlib import ssh_transport
ssh_transport()
print(docker.transport.SSHHTTPAdapter.__name__)
"""


@pytest.mark.parametrize(("host", "imported"), [("tcp://127.0.0.1:2375", "False"), ("ssh://me@engine", "True")])
def test_docker_py_imports_paramiko_for_ssh_engines_only(tmp_path: Path, host: str, imported: str) -> None:
    env = {**os.environ, "DOCKER_HOST": host, "HOME": str(tmp_path)}

    ran = subprocess.run([sys.executable, "-c", _IMPORTS], capture_output=True, text=True, env=env, check=True)

    # Hidden only while docker-py was imported: paramiko and the ssh transport import later.
    assert ran.stdout.split() == [imported, "SSHHTTPAdapter"]


def _resolve_in_child(config_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """resolve() in a child process, so that a hang fails the test instead of stopping the suite."""
    code = (
        "import sys; from pathlib import Path; from grocker.engine.endpoint import resolve; from grocker.errors import "
        "EngineError\ntry:\n    env = dict(arg.split('=', 1) for arg in sys.argv[2:])\n"
        "    print(resolve(env, Path(sys.argv[1])).host)\n"
        "except EngineError as err:\n    print('EngineError:', err)\n"
    )
    args = [sys.executable, "-c", code, str(config_dir), *(f"{key}={value}" for key, value in env.items())]
    return subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_config_json_that_is_a_fifo_or_a_device_is_no_current_context(tmp_path: Path, kind: str) -> None:
    """Issue 20: reading it hung (FIFO) or ran out of memory (/dev/zero)."""
    if kind == "fifo":
        os.mkfifo(tmp_path / "config.json")
    else:
        (tmp_path / "config.json").symlink_to(kind)

    done = _resolve_in_child(tmp_path, {})

    assert (done.returncode, done.stdout.strip()) == (0, DEFAULT_HOST), done.stderr


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_context_meta_json_that_is_a_fifo_or_a_device_is_an_error(tmp_path: Path, kind: str) -> None:
    make_context(tmp_path, "ci", "tcp://10.0.0.1:2375")
    meta = next((tmp_path / "contexts" / "meta").glob("*/meta.json"))
    meta.unlink()
    if kind == "fifo":
        os.mkfifo(meta)
    else:
        meta.symlink_to(kind)

    done = _resolve_in_child(tmp_path, {"DOCKER_CONTEXT": "ci"})

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("EngineError: Grocker cannot read the Docker context `ci`")
    assert "not a regular file" in done.stdout
    assert "Recreate the context" in done.stdout


def test_a_fifo_meta_json_ends_the_command_at_once_with_exit_4(tmp_path: Path) -> None:
    """Issue 20: the command waited on the FIFO, and the first SIGTERM went unanswered there."""
    make_context(tmp_path / "docker", "ci", "tcp://10.0.0.1:2375")
    meta = next((tmp_path / "docker" / "contexts" / "meta").glob("*/meta.json"))
    meta.unlink()
    os.mkfifo(meta)
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker"), "DOCKER_CONTEXT": "ci"}
    env.pop("DOCKER_HOST", None)

    done = subprocess.run(
        [sys.executable, "-m", "grocker", "build", "--no-push", "demo==1.0"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=tmp_path,
        check=False,
    )

    assert done.returncode == 4, done.stderr
    assert "not a regular file" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("host", ["tcp://127.0.0.1:99999", "127.0.0.1:70000", "ssh://me@host:123456", "tcp://[::1"])
def test_a_port_out_of_range_is_an_engine_error_not_a_traceback(tmp_path: Path, host: str) -> None:
    with pytest.raises(EngineError) as raised:
        resolve({"DOCKER_HOST": host}, tmp_path)

    assert "port from 1 to 65535" in str(raised.value)
    assert "DOCKER_HOST" in str(raised.value)


def test_a_port_out_of_range_ends_the_command_with_exit_4(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": "tcp://127.0.0.1:99999"}
    done = subprocess.run(
        [sys.executable, "-m", "grocker", "build", "--no-push", "demo==1.0"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )

    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr
    assert "bug in Grocker" not in done.stderr
