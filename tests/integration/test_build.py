"""The build chain on a real engine: images are built, run and inspected."""

from __future__ import annotations

import base64
import re
import textwrap
from pathlib import Path

import docker
import pytest
import yaml

from tests.integration.conftest import MatrixEngine
from tests.integration.helpers import Grocker, manifest_digest, output_of, package_fixture

GROCKER_CONTAINERS = {"label": "grocker.version"}


def _inspect(client: docker.DockerClient, image: str) -> dict:
    return client.api.inspect_image(image)


def _layers(client: docker.DockerClient, image: str) -> list[str]:
    return list(_inspect(client, image)["RootFS"]["Layers"])


def _grocker_containers(client: docker.DockerClient) -> list[str]:
    return [
        c.name for c in client.containers.list(all=True, filters=GROCKER_CONTAINERS) if c.name.startswith("grocker-")
    ]


# The core scenarios run on every engine of the matrix (the `engine` fixture, GROCKER_TEST_ENGINES).


def test_seed_example_ipython_from_pypi(engine: MatrixEngine) -> None:
    grocker = engine.grocker
    result = grocker.build("ipython==8.18.1", "--entrypoint", "ipython", "--no-push")

    assert result.stdout.strip() == "ipython:8.18.1"
    assert grocker.docker_run("ipython:8.18.1", "--version").strip() == "8.18.1"
    labels = _inspect(grocker.client, "ipython:8.18.1")["Config"]["Labels"]
    assert labels["grocker.app.name"] == "ipython"
    assert labels["grocker.app.version"] == "8.18.1"
    assert labels["grocker.image.role"] == "runner"
    assert labels["org.opencontainers.image.base.name"] == "debian:trixie"


RUNNER_AUDIT = textwrap.dedent(
    """
    for tool in gcc cc make; do command -v $tool >/dev/null && echo "compiler $tool"; done
    dpkg-query -W -f '${Package}\\n' | grep -e '-dev$' | sed 's/^/dev-package /'
    find / -xdev -name '*.whl' 2>/dev/null | sed 's/^/wheel-file /'
    for cache in /root/.cache/pip /home/grocker/.cache/pip; do [ -e $cache ] && echo "pip-cache $cache"; done
    ls /home/grocker/app.venv/bin | grep -E '^(pip|easy_install)' | sed 's/^/pip-in-venv /'
    dpkg-query -W -f '${Status}\\n' libyaml-0-2
    echo audit-done
    """
)


def _audit(grocker: Grocker, image: str) -> bytes:
    """RUNNER_AUDIT's output in a container of `image`, whole (it ends with `audit-done`)."""
    return output_of(grocker.client, image, ["/bin/sh", "-c", RUNNER_AUDIT], user="root")


def test_c_extension_linking_a_system_library(engine: MatrixEngine, dist_dir: Path, tmp_path: Path) -> None:
    grocker = engine.grocker
    sdist = package_fixture("cext-app", dist_dir)
    (tmp_path / ".grocker.yml").write_text("dependencies:\n  run: [libyaml-0-2]\n  build: [libyaml-dev]\n")
    name = grocker.name("cext")

    result = grocker.build(str(sdist), "-n", name, "--no-push", "--result-file", "out/result.yml", cwd=tmp_path)

    assert re.match(r"^cextapp ok: libyaml 0\.2\.\d+, six 1\.16\.0$", grocker.docker_run(name).strip())
    audit = _audit(grocker, name)
    assert audit.decode().split("\n")[:2] == ["install ok installed", "audit-done"]
    # The same audit finds the compiler's tools, so it is able to fail.
    results = yaml.safe_load((tmp_path / "out" / "result.yml").read_text())
    compiler_audit = _audit(grocker, results["compiler_image"]).decode()
    assert "compiler gcc" in compiler_audit
    assert "dev-package libyaml-dev" in compiler_audit
    assert set(results) >= {"release", "image", "root_image", "compiler_image", "image_id", "size", "runtime"}
    assert "hash" not in results
    assert results["image"] == name
    assert results["runtime"] == "trixie/3.13"
    assert "wheels of grocker-fixture-cext==1.0.0" in result.stderr


def _armored(keyring: Path) -> str:
    """ASCII-armor a binary OpenPGP keyring (RFC 4880 section 6), as `gpg --armor --export` does."""
    data = keyring.read_bytes()
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    body = base64.b64encode(data).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    checksum = base64.b64encode((crc & 0xFFFFFF).to_bytes(3, "big")).decode()
    return "\n".join(
        ["-----BEGIN PGP PUBLIC KEY BLOCK-----", "", *lines, f"={checksum}", "-----END PGP PUBLIC KEY BLOCK-----"]
    )


def _debian_mirror() -> str:
    for sources in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        match = re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.MULTILINE)
        if match and "security" not in match.group(1):
            return match.group(1)
    match = re.search(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", Path("/etc/apt/sources.list").read_text(), re.MULTILINE)
    assert match, "no Debian mirror in this machine's apt configuration"
    return match.group(1)


def test_options_reach_the_image(grocker: Grocker, pure_wheel: Path, tmp_path: Path) -> None:
    (tmp_path / "constraints.txt").write_text("attrs==23.1.0\ncolorama==0.4.5\n")
    config = {
        "pip_constraint": "constraints.txt",
        "env": {"GREETING": "hello world", "TRICKY": 'a "quoted" $HOME value'},
        "ports": [8080, "9090/udp"],
        "volumes": ["/data"],
        "entrypoint_name": "pure-other",
        "repositories": {
            "debian-updates": {
                "uri": f"deb {_debian_mirror()} trixie-updates main",
                "key": _armored(Path("/usr/share/keyrings/debian-archive-keyring.gpg")),
            }
        },
    }
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    (config_dir / "grocker.yml").write_text(yaml.safe_dump(config))
    (config_dir / "constraints.txt").write_text((tmp_path / "constraints.txt").read_text())
    name = grocker.name("options")

    grocker.build(f"{pure_wheel}[color]", "-n", name, "-c", str(config_dir / "grocker.yml"), "--no-push")

    attrs = _inspect(grocker.client, name)["Config"]
    assert attrs["Entrypoint"] == ["pure-other"]
    assert set(attrs["ExposedPorts"]) == {"8080/tcp", "9090/udp"}
    assert set(attrs["Volumes"]) == {"/data"}
    assert "GREETING=hello world" in attrs["Env"]
    assert 'TRICKY=a "quoted" $HOME value' in attrs["Env"]
    assert attrs["User"] == "grocker"
    assert attrs["WorkingDir"] == "/home/grocker"
    assert attrs["Labels"]["grocker.app.extras"] == "color"
    assert grocker.docker_run(name).strip() == "pure-other in /home/grocker as uid 1000"
    inside = grocker.docker_run(name, "GREETING", "TRICKY", "GROCKER_APP_EXTRAS", entrypoint="grocker-runner")
    assert inside.splitlines()[1:] == [
        "GREETING=hello world",
        'TRICKY=a "quoted" $HOME value',
        "GROCKER_APP_EXTRAS=color",
    ]
    versions = grocker.docker_run(
        name,
        "-c",
        "import importlib.metadata as m; print(m.version('attrs'), m.version('colorama'))",
        entrypoint="python3",
    )
    assert versions.strip() == "23.1.0 0.4.5"
    sources = grocker.docker_run(name, "/etc/apt/sources.list.d/grocker-debian-updates.list", entrypoint="cat")
    assert "[signed-by=/etc/apt/keyrings/grocker-debian-updates.asc]" in sources
    assert "trixie-updates main" in sources


def test_bookworm_runtime(grocker: Grocker, pure_wheel: Path) -> None:
    name = grocker.name("bookworm")

    grocker.build(str(pure_wheel), "-n", name, "-r", "bookworm/3.11", "--no-push")

    assert grocker.docker_run(name).strip() == "pureapp 1.0.0 on python 3.11"
    assert _inspect(grocker.client, name)["Config"]["Labels"]["grocker.runtime"] == "bookworm/3.11"


def test_local_wheel_as_release(grocker: Grocker, pure_wheel: Path) -> None:
    name = grocker.name("wheel")

    grocker.build(str(pure_wheel), "-n", name, "--no-push")

    assert grocker.docker_run(name).strip() == "pureapp 1.0.0 on python 3.13"


def test_second_build_compiles_nothing(grocker: Grocker, dist_dir: Path) -> None:
    wheel = package_fixture("pure-app", dist_dir, kind="wheel", version="1.0.1")
    first, second = grocker.name("again"), grocker.name("again")

    grocker.build(str(wheel), "-n", first, "--no-push")
    result = grocker.build(str(wheel), "-n", second, "--no-push")

    # The release has a wheel lock: it is reused as it is (no pip, no publisher), and said so.
    assert re.search(
        r"compile wheels of grocker-fixture-pure==1\.0\.1: [\d.]+s \(\d+ wheels of the lock of \d{4}-", result.stderr
    )
    assert "; dependencies locked on " in result.stderr
    assert _layers(grocker.client, first) == _layers(grocker.client, second)


def test_new_version_reuses_the_dependency_layer(engine: MatrixEngine, dist_dir: Path) -> None:
    grocker = engine.grocker
    old = package_fixture("pure-app", dist_dir, kind="wheel", version="2.0.0")
    new = package_fixture("pure-app", dist_dir, kind="wheel", version="2.1.0")
    old_name, new_name = grocker.name("bump", "2.0.0"), grocker.name("bump", "2.1.0")

    grocker.build(str(old), "-n", old_name, "--no-push")
    result = grocker.build(str(new), "-n", new_name, "--no-push")

    old_layers, new_layers = _layers(grocker.client, old_name), _layers(grocker.client, new_name)
    assert len(old_layers) == len(new_layers)
    assert new_layers[:-1] == old_layers[:-1], "root and dependency layers must be shared"
    assert new_layers[-1] != old_layers[-1], "the application layer must differ"
    assert "cached layers" in result.stderr
    assert grocker.docker_run(new_name).strip() == "pureapp 2.1.0 on python 3.13"


def test_push_digest_and_split_phases(engine: MatrixEngine, registry: str, pure_wheel: Path, tmp_path: Path) -> None:
    grocker = engine.grocker
    pushed = f"{registry}/{grocker.name('pushed')}"
    grocker.build(str(pure_wheel), "-n", pushed, "--result-file", str(tmp_path / "pushed.yml"))
    results = yaml.safe_load((tmp_path / "pushed.yml").read_text())
    assert results["hash"] == manifest_digest(pushed)
    assert results["hash"].startswith("sha256:")

    local = grocker.name("local")
    grocker.build(str(pure_wheel), "-n", local, "--no-push", "--result-file", str(tmp_path / "local.yml"))
    assert "hash" not in yaml.safe_load((tmp_path / "local.yml").read_text())

    split = f"{registry}/{grocker.name('split')}"
    grocker.build(str(pure_wheel), "-n", split, "--no-build-image", "--result-file", str(tmp_path / "deps.yml"))
    deps = yaml.safe_load((tmp_path / "deps.yml").read_text())
    assert "compiler_image" in deps
    assert {"hash", "image_id"}.isdisjoint(deps)
    with pytest.raises(docker.errors.ImageNotFound):
        grocker.client.images.get(split)
    grocker.build(
        str(pure_wheel), "-n", split, "--no-build-dependencies", "--push", "--result-file", str(tmp_path / "img.yml")
    )
    image = yaml.safe_load((tmp_path / "img.yml").read_text())
    assert "compiler_image" not in image
    assert image["hash"] == manifest_digest(split)
    assert _layers(grocker.client, split) == _layers(grocker.client, pushed) == _layers(grocker.client, local)


def test_missing_entrypoint_fails_the_build(grocker: Grocker, pure_wheel: Path) -> None:
    name = grocker.name("noentry")

    result = grocker.run("build", str(pure_wheel), "-n", name, "-e", "no-such-command", "--no-push")

    assert result.returncode == 5, result.output
    assert "entrypoint 'no-such-command' does not exist" in result.stderr
    assert "Traceback" not in result.output
    with pytest.raises(docker.errors.ImageNotFound):
        grocker.client.images.get(name)
    assert _grocker_containers(grocker.client) == []


def test_entrypoint_importing_pkg_resources_says_to_declare_setuptools(grocker: Grocker, dist_dir: Path) -> None:
    wheel = package_fixture("pkgres-app", dist_dir, kind="wheel")
    name = grocker.name("pkgres")

    result = grocker.run("build", str(wheel), "-n", name, "--no-push")

    assert result.returncode == 5, result.output
    assert "importing it fails with \"No module named 'pkg_resources'\"" in result.stderr
    assert "The runner image has no setuptools and no pip" in result.stderr
    assert "Declare setuptools as a dependency of the application grocker-fixture-pkgres" in result.stderr
    assert "Traceback" not in result.output
    with pytest.raises(docker.errors.ImageNotFound):
        grocker.client.images.get(name)
    assert _grocker_containers(grocker.client) == []


def test_entrypoint_importing_pkg_resources_names_the_setuptools_without_it(
    grocker: Grocker, dist_dir: Path, tmp_path: Path
) -> None:
    """Declared setuptools, unpinned (as datasette 0.65.1): the newest has no pkg_resources; the fix works."""
    wheel = package_fixture("pkgres-setuptools-app", dist_dir, kind="wheel")
    name = grocker.name("pkgres-setuptools")

    result = grocker.run("build", str(wheel), "-n", name, "--no-push", cwd=tmp_path)

    assert result.returncode == 5, result.output
    assert "importing it fails with \"No module named 'pkg_resources'\"" in result.stderr
    found = re.search(
        r"The image has setuptools (\d+)\.[\d.]+, and setuptools 82 and later no longer ship", result.stderr
    )
    assert found is not None, result.stderr
    assert int(found.group(1)) >= 82
    assert "a line `setuptools<82` in a pip constraints file named by pip_constraint" in result.stderr
    assert "no setuptools" not in result.stderr
    assert "Traceback" not in result.output
    with pytest.raises(docker.errors.ImageNotFound):
        grocker.client.images.get(name)
    assert _grocker_containers(grocker.client) == []

    # The fix the message gives: the constraint, through pip_constraint.
    (tmp_path / "constraints.txt").write_text("setuptools<82\n")
    (tmp_path / ".grocker.yml").write_text("pip_constraint: constraints.txt\n")
    grocker.build(str(wheel), "-n", name, "--no-push", cwd=tmp_path)
    assert grocker.docker_run(name).strip().splitlines()[-1] == "1.0.0"


def test_a_version_range_names_the_version_it_built(grocker: Grocker) -> None:
    name = grocker.name("range", "latest")

    result = grocker.build("six>=1.15,<1.17", "-e", "python", "-n", name, "--no-push")

    # six 1.16.0 may already be in the volume (another test's dependency), and the reused count
    # includes the runner's installer (the pip wheel): new or reused, in the right number.
    counts = r"(1 new wheel|[02-9]\d* new wheels), \d+ reused"
    compiled = rf"compile wheels of six<1\.17,>=1\.15: [\d.]+s \(resolved to six==1\.16\.0, {counts}\)"
    assert re.search(rf"^{compiled}$", result.stderr, re.MULTILINE), result.stderr
    assert re.search(rf"^done {re.escape(name)} \(six==1\.16\.0\) in [\d.]+s", result.stderr, re.MULTILINE), (
        result.stderr
    )
    assert _inspect(grocker.client, name)["Config"]["Labels"]["grocker.app.version"] == "1.16.0"


def test_result_file_is_sorted_yaml(grocker: Grocker, pure_wheel: Path, tmp_path: Path) -> None:
    name = grocker.name("result")
    target = tmp_path / "deep" / "folder" / "result.yml"

    grocker.build(str(pure_wheel), "-n", name, "--no-push", "--result-file", str(target))

    text = target.read_text()
    keys = [line.split(":")[0] for line in text.splitlines() if not line.startswith(" ")]
    assert keys == sorted(keys)
    values = yaml.safe_load(text)
    assert values["image_id"] == _inspect(grocker.client, name)["Id"]
    assert values["size"] == _inspect(grocker.client, name)["Size"]
