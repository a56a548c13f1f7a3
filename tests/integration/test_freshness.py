"""Freshness is explicit, and an up-to-date rebuild starts no container (issue 15, items 2 and 3).

A private index of the test's own (tests/integration/private_index.py) serves
tests/fixtures/fresh-app, whose one dependency is not pinned, and that
dependency (tests/fixtures/pure-app) in a first version; a second version is published during
the test. Then, on one configuration and wheel volume:

1. a first release of the app is resolved against the index ("resolved now": the first version);
2. once the second version is out, rebuilding that release under its name starts no container
   and says the image is up to date;
3. under another name it is built again, from its wheel lock ("locked on"): still the first
   version, although the index has a newer one;
4. a new release of the app is resolved against the index: the second version, never just what
   the volume held;
5. `--refresh` resolves the first release again: the second version, and a new image.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from grocker import __version__
from grocker.api import load_config
from grocker.config.pipconf import PipSettings
from grocker.naming import internal_names
from tests.integration.helpers import Grocker, package_fixture
from tests.integration.private_index import PrivateIndex, serve

APP = "grocker-fixture-fresh"
DEPENDENCY = "grocker-fixture-pure"
PIP_DOWNLOAD = (sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:")


def _pip_conf(index: PrivateIndex, folder: Path) -> Path:
    path = folder / f"fresh-index-{uuid.uuid4().hex[:8]}.conf"
    path.write_text(f"[global]\nindex-url = {index.url}\ntrusted-host = {index.address}\n")
    return path


@pytest.fixture(scope="module")
def index(grocker: Grocker, dist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateIndex]:
    """Serve six, attrs and the first version of the dependency, behind basic auth."""
    names = internal_names(load_config(cwd=tmp_path_factory.mktemp("no-config")), PipSettings())
    downloads = tmp_path_factory.mktemp("fresh-pypi")
    subprocess.run(
        [*PIP_DOWNLOAD, "--dest", str(downloads), "six==1.16.0", "attrs"],
        check=True,
    )
    projects = {"six": list(downloads.glob("six-*.whl")), "attrs": list(downloads.glob("attrs-*.whl"))}
    with serve(grocker, dist_dir, names, projects, "fresh-index") as index:
        yield index


def _containers_created(client: docker.DockerClient, since_ns: int, until_ns: int) -> list[str]:
    """The names of the Grocker containers the engine created between the two times."""
    events = client.events(
        since=since_ns // 10**9 - 1,
        until=until_ns // 10**9 + 1,
        filters={"type": "container", "event": "create", "label": "grocker.version"},
        decode=True,
    )
    return [
        event["Actor"]["Attributes"].get("name", "")
        for event in events
        if since_ns <= int(event.get("timeNano", 0)) <= until_ns
    ]


def _says(run_output: str, pattern: str) -> bool:
    return re.search(pattern, run_output) is not None


def test_freshness_is_explicit_and_an_up_to_date_rebuild_starts_nothing(
    grocker: Grocker, index: PrivateIndex, dist_dir: Path
) -> None:
    # Versions of this run only: nothing an earlier run left in the volume can answer for them.
    run = uuid.uuid4().int % 10**6
    first_dep, second_dep = f"7.{run}.0", f"7.{run}.1"
    first_app, second_app = f"3.{run}.0", f"3.{run}.1"
    index.publish(DEPENDENCY, package_fixture("pure-app", dist_dir, kind="wheel", version=first_dep))
    index.publish(APP, package_fixture("fresh-app", dist_dir, kind="wheel", version=first_app))
    index.publish(APP, package_fixture("fresh-app", dist_dir, kind="wheel", version=second_app))
    pip_conf = _pip_conf(index, grocker.workdir)
    image = grocker.name("fresh", first_app)
    options = ("-e", "fresh-app", "--no-push", "--pip-conf", str(pip_conf))

    # 1. A first release: resolved against the index.
    built = grocker.build(f"{APP}=={first_app}", "-n", image, *options)
    assert _says(built.stderr, r"done .*; dependencies resolved now"), built.stderr
    assert grocker.docker_run(image).strip() == f"freshapp {first_app} with {DEPENDENCY} {first_dep}"
    first_id = grocker.client.images.get(image).id

    # 2. A newer dependency is published; the same release under the same name: up to date.
    index.publish(DEPENDENCY, package_fixture("pure-app", dist_dir, kind="wheel", version=second_dep))
    before = time.time_ns()
    result_file = grocker.workdir / f"fresh-{run}.yml"
    again = grocker.build(f"{APP}=={first_app}", "-n", image, *options, "--result-file", str(result_file))
    after = time.time_ns()
    assert f"{image} is up to date (built from the same inputs by Grocker {__version__}): nothing to build" in (
        again.stderr
    )
    assert _containers_created(grocker.client, before, after) == []
    assert grocker.client.images.get(image).id == first_id
    assert f"image_id: {first_id}" in result_file.read_text()

    # 3. The same release under another name: built from its lock, not from the newer index.
    copy = grocker.name("fresh-copy", first_app)
    locked = grocker.build(f"{APP}=={first_app}", "-n", copy, *options)
    assert _says(locked.stderr, r"done .*; dependencies locked on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"), locked.stderr
    assert grocker.docker_run(copy).strip() == f"freshapp {first_app} with {DEPENDENCY} {first_dep}"

    # 4. A new release: resolved against the index, so it gets the newer dependency.
    second = grocker.name("fresh", second_app)
    bumped = grocker.build(f"{APP}=={second_app}", "-n", second, *options)
    assert _says(bumped.stderr, r"done .*; dependencies resolved now"), bumped.stderr
    assert grocker.docker_run(second).strip() == f"freshapp {second_app} with {DEPENDENCY} {second_dep}"

    # 5. --refresh: the first release resolved again, into a new image under its name.
    refreshed = grocker.build(f"{APP}=={first_app}", "-n", image, *options, "--refresh")
    assert _says(refreshed.stderr, r"done .*; dependencies resolved now"), refreshed.stderr
    assert grocker.docker_run(image).strip() == f"freshapp {first_app} with {DEPENDENCY} {second_dep}"
    assert grocker.client.images.get(image).id != first_id
    assert index.token not in refreshed.output
    assert index.token not in str(grocker.client.images.get(image).labels)
