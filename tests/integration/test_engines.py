"""Remote engines and the registry as a shared cache of internal images."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import docker
import pytest
import yaml

from tests.integration.engines import PrivateEngine, make_certificates, start_engine
from tests.integration.helpers import Grocker


def _tags(client: docker.DockerClient) -> set[str]:
    return {tag for image in client.images.list() for tag in image.tags}


def test_build_on_a_remote_tls_engine(
    grocker: Grocker, tls_engine: PrivateEngine, pure_wheel: Path, docker_client: docker.DockerClient
) -> None:
    # A prefix of its own makes every image this build creates recognisable on either engine.
    prefix = f"remote-{uuid.uuid4().hex[:8]}"
    name = f"{prefix}/app:1"

    result = grocker.run(
        "build", str(pure_wheel), "--image-prefix", prefix, "-n", name, "--no-push", env=tls_engine.env
    )

    assert result.returncode == 0, result.output
    remote = tls_engine.client()
    output = remote.containers.run(name, remove=True).decode().strip()
    assert output == "pureapp 1.0.0 on python 3.13"
    remote_tags = {tag for tag in _tags(remote) if tag.startswith(f"{prefix}/")}
    assert {tag.split(":")[0] for tag in remote_tags} == {
        f"{prefix}/app",
        f"{prefix}/grocker-trixie-3.13-root",
        f"{prefix}/grocker-trixie-3.13-compiler",
        f"{prefix}/grocker-trixie-3.13-wheel-server",
    }
    assert remote.volumes.list(filters={"label": "grocker.image.role=wheel"})
    assert not [tag for tag in _tags(docker_client) if tag.startswith(f"{prefix}/")], "nothing on the first engine"


def test_wrong_certificate_is_a_clear_error(grocker: Grocker, tls_engine: PrivateEngine, tmp_path: Path) -> None:
    _server, foreign_client = make_certificates(tmp_path / "other-ca")
    env = {**tls_engine.env, "DOCKER_CERT_PATH": str(foreign_client)}

    result = grocker.run("build", "ipython==8.18.1", "--no-push", env=env)

    assert result.returncode == 4, result.output
    assert "TLS" in result.stderr
    assert "DOCKER_CERT_PATH" in result.stderr
    assert "Traceback" not in result.output


def _phases(stderr: str, verb: str) -> set[str]:
    return set(re.findall(rf"^{verb} (root|compiler|wheel-server) image", stderr, re.MULTILINE))


# docker-py leaves the unix sockets of the two private engines' attach streams to the garbage
# collector; they are closed with their engine, so the warning says nothing about Grocker.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_internal_images_are_shared_through_the_registry(
    grocker: Grocker, registry: str, pure_wheel: Path, tmp_path: Path
) -> None:
    prefix = f"{registry}/grocker-cache-{uuid.uuid4().hex[:8]}"
    engine_a, engine_b = start_engine(), start_engine()
    try:
        engine_a.load("debian:trixie")  # engine B gets nothing: everything must come from the registry
        started = time.monotonic()
        first = grocker.run(
            "build", str(pure_wheel), "--image-prefix", prefix, "-n", f"{prefix}/pure:1.0.0", "--push", env=engine_a.env
        )
        first_seconds = time.monotonic() - started
        assert first.returncode == 0, first.output
        assert _phases(first.stderr, "build") == {"root", "compiler", "wheel-server"}
        assert _phases(first.stderr, "push") == {"root", "compiler", "wheel-server"}

        started = time.monotonic()
        second = grocker.run(
            "build",
            "ipython==8.18.1",
            "-e",
            "ipython",
            "--image-prefix",
            prefix,
            "--no-push",
            "--result-file",
            str(tmp_path / "b.yml"),
            env=engine_b.env,
        )
        second_seconds = time.monotonic() - started

        assert second.returncode == 0, second.output
        assert _phases(second.stderr, "build") == set(), second.stderr
        assert re.search(r"^pull root image: [\d.]+s \(pulled from the registry\)", second.stderr, re.MULTILINE)
        assert re.search(r"^pull compiler image: [\d.]+s \(pulled from the registry\)", second.stderr, re.MULTILINE)
        assert re.search(r"^pull wheel-server image: [\d.]+s \(pulled from the registry\)", second.stderr, re.MULTILINE)
        results = yaml.safe_load((tmp_path / "b.yml").read_text())
        assert results["root_image"].startswith(f"{prefix}/grocker-trixie-3.13-root:")
        remote = engine_b.client()
        assert remote.containers.run(results["image"], ["--version"], remove=True).decode().strip() == "8.18.1"
        with pytest.raises(docker.errors.ImageNotFound):
            remote.images.get("debian:trixie")
        print(f"\nengine A, cold: {first_seconds:.1f}s; engine B, internal images pulled: {second_seconds:.1f}s")
    finally:
        engine_a.stop()
        engine_b.stop()


def test_root_and_compiler_are_rebuilt_when_the_base_image_changes(
    grocker: Grocker, docker_client: docker.DockerClient, pure_wheel: Path, tmp_path: Path
) -> None:
    base = f"grocker-test-base-{uuid.uuid4().hex[:8]}:trixie"
    docker_client.images.get("debian:trixie").tag(base)
    grocker.images.append(base)
    config = {
        "runtime": "trixie/test-base",
        "runtimes": {
            "trixie/test-base": {
                "image": base,
                "python_version": "3.13",
                "dependencies": {"run": ["python3"], "build": ["python3-venv"]},
            }
        },
    }
    (tmp_path / ".grocker.yml").write_text(yaml.safe_dump(config))
    args = ("build", str(pure_wheel), "-n", grocker.name("base"), "--no-build-image", "--result-file", "r.yml")

    first = grocker.run(*args, cwd=tmp_path)
    assert first.returncode == 0, first.output
    assert _phases(first.stderr, "build") == {"root", "compiler"}
    unchanged = grocker.run(*args, cwd=tmp_path)
    assert unchanged.returncode == 0, unchanged.output
    assert _phases(unchanged.stderr, "build") == set()

    container = docker_client.containers.run(base, ["sh", "-c", "echo v2 > /etc/grocker-test-base"], detach=True)
    container.wait()
    new_base = container.commit(*base.split(":"))
    container.remove()
    changed = grocker.run(*args, cwd=tmp_path)

    assert changed.returncode == 0, changed.output
    assert _phases(changed.stderr, "build") == {"root", "compiler"}
    assert "built from an older base" in changed.stderr
    results = yaml.safe_load((tmp_path / "r.yml").read_text())
    root = docker_client.images.get(results["root_image"])
    compiler = docker_client.images.get(results["compiler_image"])
    assert root.labels["grocker.base.id"] == new_base.id
    assert compiler.labels["grocker.root.id"] == root.id
    marker = docker_client.containers.run(root.id, ["cat", "/etc/grocker-test-base"], remove=True)
    assert marker.decode().strip() == "v2"
    for image in (root, compiler):
        grocker.images.append(image.id)
