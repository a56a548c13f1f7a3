"""The shared wheel volume cannot be poisoned, and the runner's pip needs no index.

A private index of ours (basic auth, in a container on the default bridge) serves a hostile
sdist, grocker-fixture-evil, whose setup.py tries to plant a forged six 1.16.0 wheel and files
with hostile names into the wheel volume and into its own output folder, every time pip runs
it. An application depending on it is built; then another project that needs six==1.16.0 is
built on the same configuration, and must get PyPI's six, with no planted name anywhere.

A second scenario: a fresh wheel volume and an index that serves only the application and its
dependencies (no pip): the build succeeds, with the pip wheel of the compiler's Python.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from grocker.api import load_config
from grocker.config.pipconf import PipSettings
from grocker.naming import InternalNames, internal_names
from tests.integration.helpers import Grocker, download_wheels, names_for, output_of, package_fixture
from tests.integration.private_index import PrivateIndex, serve

EVIL = "grocker-fixture-evil"
EVIL_APP = "grocker-fixture-evil-app"
PURE = "grocker-fixture-pure"
# In a file name of the volume (the hostile names the evil package plants)...
# The planted names: "99.0" alone would also match a fixture version such as 5.156599.0.
HOSTILE_MARKS = (";", "\n", "$(", "pwned", "pip-99.0", "-9.9.9")
# ...and in the runner's history, where ";" and "$(" also belong to Grocker's own install step.
PLANTED_NAMES = ("touch x", "touch pwned", "pip-99.0", "9.9.9")


PURE_VERSION = f"5.{uuid.uuid4().int % 10**6}.0"


def _six_sha256(index: PrivateIndex) -> str:
    return hashlib.sha256(index.projects["six"][0].read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> InternalNames:
    """The images of the default configuration (each test's wheel volume is its index settings')."""
    return internal_names(load_config(cwd=tmp_path_factory.mktemp("no-config")), PipSettings())


@pytest.fixture(scope="module")
def index(
    grocker: Grocker, dist_dir: Path, names: InternalNames, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrivateIndex]:
    """Serve the hostile sdist, the app depending on it, a new pure app, six and attrs behind basic auth."""
    downloads = tmp_path_factory.mktemp("pypi")
    # pip checks these against PyPI's hashes: six's is the reference the runner must match.
    download_wheels(downloads, "six==1.16.0", "attrs")
    six = next(downloads.glob("six-1.16.0-*.whl"))
    attrs = next(downloads.glob("attrs-*.whl"))
    pure = package_fixture("pure-app", dist_dir, kind="wheel", version=PURE_VERSION)
    projects = {
        EVIL: [package_fixture("evil-dep", dist_dir, kind="sdist")],
        EVIL_APP: [package_fixture("evil-app", dist_dir, kind="wheel")],
        PURE: [pure],
        "six": [six],
        "attrs": [attrs],
    }
    with serve(grocker, dist_dir, names, projects, "poison-index") as served:
        yield served


def _volume_listing(grocker: Grocker, names: InternalNames) -> list[str]:
    """Every file name at the top of the wheel volume, exactly (newlines included)."""
    output = output_of(
        grocker.client,
        names.root,
        ["python3", "-c", "import json, os; print(json.dumps(sorted(os.listdir('/wheels'))))"],
        volumes={names.volume: {"bind": "/wheels", "mode": "ro"}},
    )
    return list(json.loads(output.decode()))


def _volume_sha256(grocker: Grocker, names: InternalNames, filename: str) -> str:
    output = output_of(
        grocker.client,
        names.root,
        ["sha256sum", f"/wheels/{filename}"],
        volumes={names.volume: {"bind": "/wheels", "mode": "ro"}},
    )
    return output.decode().split()[0]


def _history(image: str) -> str:
    return subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_private_index_without_pip_and_a_fresh_volume(
    grocker: Grocker, index: PrivateIndex, names: InternalNames
) -> None:
    pip_conf = grocker.workdir / "only-private.conf"
    pip_conf.write_text(f"[global]\nindex-url = {index.url}\ntrusted-host = {index.address}\n")
    # The wheel volume of these index settings (grocker.trust).
    names = names_for(pip_conf, grocker.workdir)
    # A fresh volume: nothing an earlier build left (such as a pip wheel) can help.
    with contextlib.suppress(docker.errors.NotFound):
        grocker.client.volumes.get(names.volume).remove()
    image = grocker.name("private-only")

    result = grocker.build(f"{PURE}=={PURE_VERSION}", "-n", image, "--no-push", "--pip-conf", str(pip_conf))

    assert grocker.docker_run(image).strip() == f"pureapp {PURE_VERSION} on python 3.13"
    assert index.token not in result.output
    listing = _volume_listing(grocker, names)
    pips = [entry for entry in listing if re.fullmatch(r"pip-[0-9.]+-py3-none-any\.whl", entry)]
    assert len(pips) == 1, listing
    compiled = [entry for entry in listing if entry == pips[0].removesuffix(".whl") + ".cpython313.zip"]
    assert len(compiled) == 1, listing
    # The runner's steps run pypa/installer, from Grocker's installation, compiled for the
    # runtime's Python by the publisher, checked by hash: no index had to host it.
    tools = [entry for entry in listing if re.fullmatch(r"installer-[0-9.]+\.cpython313\.zip", entry)]
    assert len(tools) == 1, listing
    assert _volume_sha256(grocker, names, tools[0]) in _history(image)


def test_a_package_cannot_poison_the_wheel_volume(grocker: Grocker, index: PrivateIndex, names: InternalNames) -> None:
    pip_conf = grocker.workdir / "with-private.conf"
    index.pip_conf_beside_pypi(pip_conf)
    evil_image = grocker.name("evil")
    names = names_for(pip_conf, grocker.workdir)

    evil = grocker.run("-v", "build", f"{EVIL_APP}==1.0.0", "-n", evil_image, "--no-push", "--pip-conf", str(pip_conf))

    assert evil.returncode == 0, evil.output
    assert grocker.docker_run(evil_image).strip() == "evilapp runs"
    # Its setup.py ran when built and planted into its outbox: the forged six and the hostile
    # names were left there, reported (the forgery loudly), never published.
    assert "ignored in an sdist build's output: grocker-fixture-evil 1.0.0: 'pip-99.0-py3-none-any.whl;touch x'" in (
        evil.stderr
    )
    assert "TAMPERING" in evil.stderr
    assert "six-1.16.0-py2.py3-none-any.whl" in evil.stderr
    listing = _volume_listing(grocker, names)
    assert not [entry for entry in listing if any(mark in entry for mark in HOSTILE_MARKS)], listing
    assert "grocker_fixture_evil-1.0.0-py3-none-any.whl" in listing, listing

    # Another project needing six==1.16.0, on the same configuration and volume.
    pure_image = grocker.name("after-evil")
    pure = grocker.build(f"{PURE}=={PURE_VERSION}", "-n", pure_image, "--no-push", "--pip-conf", str(pip_conf))

    assert index.token not in pure.output
    assert _volume_sha256(grocker, names, "six-1.16.0-py2.py3-none-any.whl") == _six_sha256(index)
    history = _history(pure_image)
    # The runner's install step fetches six from the wheel server and checks it against that hash.
    assert f"/six-1.16.0-py2.py3-none-any.whl {_six_sha256(index)} " in history
    assert not [name for name in PLANTED_NAMES if name in history], history
    planted = grocker.docker_run(
        pure_image,
        "-c",
        "import six; print(getattr(six, 'PLANTED', 'clean'))",
        entrypoint="/home/grocker/app.venv/bin/python",
    )
    assert planted.strip() == "clean"
