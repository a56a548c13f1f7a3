"""Package code sees only its own build (issue 20, deliverable 2).

Two projects of one index domain (the same pip settings: PyPI for the build tools, and a private
index of the test's own, tests/integration/private_index.py) on one engine:

1. project A builds a proprietary wheel given as a local RELEASE file (tests/fixtures/pure-app at
   a version of this run only), then the sdist of another such version, whose dependencies (six,
   attrs) come from the private index: the wheel volume then holds A's local wheel, the wheel
   built from its local sdist, their locks, records and origins;
2. project B builds tests/fixtures/snoop-app from the private index: its setup.py, which runs in
   the resolve (metadata) and in its sdist build, walks the whole filesystem for a `.grocker`
   folder or A's file and fails the build listing what it found. It finds none, and B builds;
   its resolve does see six, which an index gave A (the walk would have seen the rest).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from grocker.api import load_config
from grocker.config.pipconf import PipSettings
from grocker.naming import internal_names
from tests.integration.conftest import MatrixEngine
from tests.integration.helpers import Grocker, download_wheels, names_for, output_of, package_fixture
from tests.integration.private_index import PrivateIndex, serve

SNOOP = "grocker-fixture-snoop"
# A's proprietary release: a version of this run only, never on any index.
_RUN = uuid.uuid4().int % 10**6
SECRET_VERSION, SECRET_SDIST_VERSION = f"6.{_RUN}.0", f"6.{_RUN}.1"


@pytest.fixture(scope="module")
def index(engine: MatrixEngine, dist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateIndex]:
    """The private index: the snooping sdist, six and attrs (A's dependencies)."""
    names = internal_names(load_config(cwd=tmp_path_factory.mktemp("no-config")), PipSettings())
    downloads = tmp_path_factory.mktemp("isolation-pypi")
    download_wheels(downloads, "six==1.16.0", "attrs")
    projects = {
        SNOOP: [package_fixture("snoop-app", dist_dir, kind="sdist")],
        "six": list(downloads.glob("six-1.16.0-*.whl")),
        "attrs": list(downloads.glob("attrs-*.whl")),
    }
    with serve(engine.grocker, dist_dir, names, projects, "isolation-index") as served:
        yield served


def _volume_paths(grocker: Grocker, image: str, volume: str) -> list[str]:
    """Every path in `volume`, relative to its root."""
    output = output_of(
        grocker.client,
        image,
        ["find", ".", "-mindepth", "1"],
        volumes={volume: {"bind": "/v", "mode": "ro"}},
        working_dir="/v",
    )
    return sorted(line.removeprefix("./") for line in output.decode().splitlines())


def test_package_code_never_reads_another_builds_files(
    engine: MatrixEngine, index: PrivateIndex, dist_dir: Path
) -> None:
    grocker = engine.grocker
    pip_conf = grocker.workdir / f"isolation-{uuid.uuid4().hex[:8]}.conf"
    index.pip_conf_beside_pypi(pip_conf)
    names = names_for(pip_conf, grocker.workdir)
    secret = package_fixture("pure-app", dist_dir, kind="wheel", version=SECRET_VERSION)

    # 1. Project A: its proprietary wheel, given on the command line.
    first = grocker.name("isolation-secret")
    grocker.build(str(secret), "-n", first, "--no-push", "--pip-conf", str(pip_conf))
    assert grocker.docker_run(first).strip().startswith(f"pureapp {SECRET_VERSION} ")
    # And its proprietary sdist: the wheel built from it is A's too.
    secret_sdist = package_fixture("pure-app", dist_dir, kind="sdist", version=SECRET_SDIST_VERSION)
    built = grocker.name("isolation-secret-sdist")
    grocker.build(str(secret_sdist), "-n", built, "--no-push", "--pip-conf", str(pip_conf))
    assert grocker.docker_run(built).strip().startswith(f"pureapp {SECRET_SDIST_VERSION} ")
    # What B's package code must not see is in the domain's wheel volume...
    state = _volume_paths(grocker, names.root, names.volume)
    assert secret.name in state, state
    assert f"grocker_fixture_pure-{SECRET_SDIST_VERSION}-py3-none-any.whl" in state, state
    assert [path for path in state if path.startswith(".grocker/locks/")], state
    assert f".grocker/origins/{secret.name}" in state, state
    # ...and only the index's wheels are in its candidates volume (the index is this run's own
    # domain, see private_index.PrivateIndex): none of A's, nor any other wheel of the fixture.
    candidates = _volume_paths(grocker, names.root, names.candidates)
    wheels = [path for path in candidates if not path.startswith(".")]
    assert index.projects["six"][0].name in wheels, candidates
    assert all(path.endswith(".whl") and not path.startswith("grocker_fixture_pure-") for path in wheels), candidates

    # 2. Project B, same index domain: its setup.py snoops in the resolve and in its build.
    second = grocker.name("isolation-snoop")
    snooped = grocker.run("-v", "build", f"{SNOOP}==1.0.0", "-n", second, "--no-push", "--pip-conf", str(pip_conf))

    assert snooped.returncode == 0, snooped.output
    grocker.images.append(second)
    assert "SNOOPED" not in snooped.output
    assert "SNOOP-BLIND" not in snooped.output
    assert grocker.docker_run(second).strip() == "snoopapp runs"
