"""The ABI gate on real images: wheels that would not load in the runner fail the build with exit 5,
before any runner image exists, naming the wheel, the file and what is missing."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import textwrap
import zipfile
from pathlib import Path

import docker
import pytest
import yaml

from tests.integration.conftest import ENGINE_HOSTS, MatrixEngine
from tests.integration.helpers import Grocker, Run, names_for, package_fixture


def _record_hash(content: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()


def _make_wheel(folder: Path, name: str, tag: str, files: dict[str, bytes]) -> Path:
    """A valid wheel of distribution `name` 1.0 with `files`, tagged `tag`, with its RECORD."""
    info = f"{name}-1.0.dist-info"
    members = dict(files)
    members[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()
    members[f"{info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: grocker-tests\nRoot-Is-Purelib: false\nTag: {tag}\n".encode()
    )
    members[f"{info}/entry_points.txt"] = f"[console_scripts]\ngrocker-runner = {name}:main\n".encode()
    record = [f"{path},{_record_hash(content)},{len(content)}" for path, content in members.items()]
    members[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    path = folder / f"{name}-1.0-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    return path


def _assert_gate_failed(grocker: Grocker, result: Run, image: str) -> None:
    """Exit 5 from the gate, and nothing of the runner: no image, no container, no network left."""
    assert result.returncode == 5, result.output
    assert "The ABI check failed before the runner image was built" in result.stderr
    assert f"build image {image}" not in result.stderr
    with pytest.raises(docker.errors.ImageNotFound):
        grocker.client.images.get(image)
    # The wheel server, started while the wheels were compiled and checked, is gone with the checker.
    for role in ("abi-check", "wheel-server"):
        leftovers = grocker.client.containers.list(all=True, filters={"label": f"grocker.image.role={role}"})
        assert leftovers == [], role
    assert grocker.client.networks.list(filters={"label": "grocker.image.role=network"}) == []


@pytest.fixture(scope="module")
def trixie_images(grocker: Grocker, pure_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The default trixie/3.13 configuration's root and compiler images (a passing build makes them)."""
    out = tmp_path_factory.mktemp("abi-trixie") / "result.yml"
    grocker.build(str(pure_wheel), "-n", grocker.name("abi-pure"), "--no-push", "--result-file", str(out))
    return yaml.safe_load(out.read_text())


def test_undeclared_runtime_package_is_named_then_declared_builds(
    grocker: Grocker, dist_dir: Path, tmp_path: Path
) -> None:
    sdist = package_fixture("cext-app", dist_dir)
    (tmp_path / ".grocker.yml").write_text("dependencies:\n  build: [libyaml-dev]\n")
    name = grocker.name("abi-cext")

    failed = grocker.run("build", str(sdist), "-n", name, "--no-push", cwd=tmp_path)

    _assert_gate_failed(grocker, failed, name)
    assert "cextapp/_yamlversion." in failed.stderr
    assert "needs libyaml-0.so.2" in failed.stderr
    assert "libyaml-0-2 provides it: add it to dependencies.run" in failed.stderr

    (tmp_path / ".grocker.yml").write_text("dependencies:\n  run: [libyaml-0-2]\n  build: [libyaml-dev]\n")
    passed = grocker.build(str(sdist), "-n", name, "--no-push", cwd=tmp_path)

    assert "check wheels against the runtime" in passed.stderr
    assert grocker.docker_run(name).startswith("cextapp ok: libyaml 0.2.")


def test_wheel_needing_a_newer_glibc_than_bookworm_is_refused(
    grocker: Grocker, trixie_images: dict[str, str], tmp_path: Path
) -> None:
    # strlcpy is GLIBC_2.38: trixie has it (2.41), bookworm does not (2.36).
    (tmp_path / "strl.c").write_text(
        "#include <string.h>\n"
        "size_t copy(char *to, const char *from, size_t size) { return strlcpy(to, from, size); }\n"
    )
    grocker.client.containers.run(
        trixie_images["compiler_image"],
        ["-shared", "-fPIC", "-o", "/work/_strl.so", "/work/strl.c"],
        entrypoint=["gcc"],
        user="root",
        volumes={str(tmp_path): {"bind": "/work", "mode": "rw"}},
        remove=True,
    )
    wheel = _make_wheel(
        tmp_path,
        "abinewglibc",
        "py3-none-linux_x86_64",
        {
            "abinewglibc/__init__.py": b"def main():\n    pass\n",
            "abinewglibc/_strl.so": (tmp_path / "_strl.so").read_bytes(),
        },
    )
    name = grocker.name("abi-glibc")

    result = grocker.run("build", str(wheel), "-n", name, "-r", "bookworm/3.11", "--no-push")

    _assert_gate_failed(grocker, result, name)
    assert "abinewglibc/_strl.so needs strlcpy@GLIBC_2.38 from libc.so.6" in result.stderr
    assert "(its newest is GLIBC_2.36)" in result.stderr


def test_shared_object_for_another_architecture_is_refused(grocker: Grocker, tmp_path: Path) -> None:
    compiler = shutil.which("aarch64-linux-gnu-gcc")
    assert compiler, "aarch64-linux-gnu-gcc is missing: scripts/setup-machine.sh installs gcc-aarch64-linux-gnu"
    (tmp_path / "arm.c").write_text("int answer(void) { return 42; }\n")
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", str(tmp_path / "_arm.so"), str(tmp_path / "arm.c")],
        check=True,
        capture_output=True,
    )
    wheel = _make_wheel(
        tmp_path,
        "abiforeign",
        "py3-none-linux_x86_64",
        {
            "abiforeign/__init__.py": b"def main():\n    pass\n",
            "abiforeign/_arm.so": (tmp_path / "_arm.so").read_bytes(),
        },
    )
    name = grocker.name("abi-arch")

    result = grocker.run("build", str(wheel), "-n", name, "--no-push")

    _assert_gate_failed(grocker, result, name)
    assert "abiforeign/_arm.so is built for aarch64 (64-bit), but the runtime runs x86_64 (64-bit)" in result.stderr


INJECT = textwrap.dedent(
    """
    import json, pathlib, shutil, sys
    locks = pathlib.Path("/home/grocker/wheels/.grocker/locks")
    wheel = pathlib.Path(sys.argv[1])
    shutil.copy(wheel, "/home/grocker/wheels/" + wheel.name)
    for path in locks.glob("*.json"):
        lock = json.loads(path.read_text())
        if lock["application"]["file"].startswith(sys.argv[2]):
            lock["dependencies"].append({"file": wheel.name, "sha256": "0" * 64})
            path.write_text(json.dumps(lock))
            print("injected", path.name)
    """
)


def test_wheel_for_another_python_abi_in_a_reused_lock_is_refused(
    grocker: Grocker, trixie_images: dict[str, str], dist_dir: Path, tmp_path: Path
) -> None:
    # pip never picks a cp312 wheel for python 3.13, and a local cp312 RELEASE is refused up front:
    # such a wheel reaches a lock only from outside (a volume shared or edited), so put it there.
    app = package_fixture("pure-app", dist_dir, kind="wheel", version="4.0.0")
    grocker.build(str(app), "-n", grocker.name("abi-lock"), "--no-push")
    foreign = _make_wheel(tmp_path, "abioldabi", "cp312-cp312-linux_x86_64", {"abioldabi/__init__.py": b""})
    root = grocker.client.images.get(trixie_images["root_image"])
    # The wheel volume of this configuration and of the environment's pip settings (grocker.trust).
    volume = grocker.client.volumes.get(names_for(None, grocker.workdir).volume)
    assert volume.attrs["Labels"]["grocker.config.hash"] == root.labels["grocker.config.hash"]
    injected = grocker.client.containers.run(
        trixie_images["root_image"],
        ["python3", "-c", INJECT, f"/input/{foreign.name}", "grocker_fixture_pure-4.0.0-"],
        user="root",
        volumes={volume.name: {"bind": "/home/grocker/wheels", "mode": "rw"}, str(tmp_path): {"bind": "/input"}},
        remove=True,
    )
    assert b"injected" in injected
    name = grocker.name("abi-tags")

    result = grocker.run("build", str(app), "-n", name, "--no-build-dependencies", "--no-push")

    _assert_gate_failed(grocker, result, name)
    assert "abioldabi-1.0-cp312-cp312-linux_x86_64.whl: its tags (cp312-cp312-linux_x86_64) match none" in result.stderr
    assert "the most specific it accepts is cp313-cp313-" in result.stderr


def test_the_memo_is_read_only_from_an_image_carrying_every_label(engine: MatrixEngine) -> None:
    """Issue 20: the engine's label filter must require the runner's role, version and runtime with the memo."""
    from grocker.engine import endpoint
    from grocker.engine.connection import connect

    host = ENGINE_HOSTS[engine.name]
    chosen = endpoint.from_environment(os.environ) if host is None else endpoint.Endpoint(host, "DOCKER_HOST")
    docker_engine = connect(chosen)
    memo = hashlib.sha256(engine.grocker.name("memo").encode()).hexdigest()
    runner = {"grocker.abi.checked": memo, "grocker.image.role": "runner", "grocker.version": "0.0.0-test"}
    forged = {"grocker.abi.checked": memo, "grocker.image.role": "root", "grocker.version": "0.0.0-test"}
    made = []
    try:
        for labels in (forged, runner):
            made.append(
                docker_engine.build(
                    {"Dockerfile": b"FROM debian:trixie\n"}, labels=labels, what="memo test image", on_line=print
                )
            )
        assert docker_engine.labelled_image(runner) == made[1]
        assert docker_engine.labelled_image(forged) == made[0]
        assert docker_engine.labelled_image({**runner, "grocker.runtime": "trixie/3.13"}) is None
        assert docker_engine.labelled_image({"grocker.abi.checked": memo, "grocker.version": "0.0.1"}) is None
    finally:
        for image_id in reversed(made):
            engine.client.images.remove(image_id)
