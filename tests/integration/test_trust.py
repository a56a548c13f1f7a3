"""One project's index settings never decide what another installs (issue 20, deliverable 1).

Two private indexes of the test's own (tests/integration/private_index.py) on one engine: a
curated one serves tests/fixtures/fresh-app in two releases, its dependency (tests/fixtures/
pure-app) in one version, six and attrs; an extra one serves a higher version of that
dependency only. Two projects of the same runtime configuration:

1. one with the extra index gets the higher version (pip chooses it across its indexes);
2. one that pins the curated index alone never gets it, although the first build put its wheel
   in a wheel volume of the same configuration: the wheel volume, its records and its locks
   belong to the index settings (grocker.trust), and the second project's resolve never sees
   that wheel as a candidate.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from grocker.api import load_config
from grocker.config.pipconf import PipSettings
from grocker.naming import internal_names
from tests.integration.helpers import Grocker, download_wheels, names_for, output_of, package_fixture
from tests.integration.private_index import PrivateIndex, serve

APP = "grocker-fixture-fresh"
DEPENDENCY = "grocker-fixture-pure"
_RUN = uuid.uuid4().int % 10**6
# Versions of this run only: nothing an earlier run left in a volume can answer for them.
CURATED_DEP, EXTRA_DEP = f"8.{_RUN}.0", f"8.{_RUN}.1"
FIRST_APP, SECOND_APP = f"4.{_RUN}.0", f"4.{_RUN}.1"


@pytest.fixture(scope="module")
def indexes(
    grocker: Grocker, dist_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PrivateIndex, PrivateIndex]]:
    """The curated index (the app, the dependency's lower version, six, attrs) and the extra one."""
    names = internal_names(load_config(cwd=tmp_path_factory.mktemp("no-config")), PipSettings())
    downloads = tmp_path_factory.mktemp("trust-pypi")
    download_wheels(downloads, "six==1.16.0", "attrs")
    curated = {
        "six": list(downloads.glob("six-*.whl")),
        "attrs": list(downloads.glob("attrs-*.whl")),
        DEPENDENCY: [package_fixture("pure-app", dist_dir, kind="wheel", version=CURATED_DEP)],
        APP: [package_fixture("fresh-app", dist_dir, kind="wheel", version=v) for v in (FIRST_APP, SECOND_APP)],
    }
    extra = {DEPENDENCY: [package_fixture("pure-app", dist_dir, kind="wheel", version=EXTRA_DEP)]}
    with (
        serve(grocker, dist_dir, names, curated, "trust-curated") as curated_index,
        serve(grocker, dist_dir, names, extra, "trust-extra") as extra_index,
    ):
        yield curated_index, extra_index


def _pip_conf(folder: Path, name: str, *indexes: PrivateIndex) -> Path:
    main, *extra = indexes
    path = folder / f"{name}-{uuid.uuid4().hex[:8]}.conf"
    lines = ["[global]", f"index-url = {main.url}", f"trusted-host = {' '.join(i.address for i in indexes)}"]
    if extra:
        lines.append(f"extra-index-url = {' '.join(i.url for i in extra)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_curated_index_never_gets_what_only_another_projects_index_offered(
    grocker: Grocker, indexes: tuple[PrivateIndex, PrivateIndex]
) -> None:
    curated, extra = indexes
    with_extra = _pip_conf(grocker.workdir, "with-extra", curated, extra)
    curated_only = _pip_conf(grocker.workdir, "curated-only", curated)

    # 1. The project with the extra index: the higher version, from the extra index.
    first = grocker.name("trust-extra", FIRST_APP)
    grocker.build(f"{APP}=={FIRST_APP}", "-n", first, "-e", "fresh-app", "--no-push", "--pip-conf", str(with_extra))
    assert grocker.docker_run(first).strip() == f"freshapp {FIRST_APP} with {DEPENDENCY} {EXTRA_DEP}"

    # 2. The project pinned to the curated index, same runtime configuration, same engine.
    second = grocker.name("trust-curated", SECOND_APP)
    built = grocker.build(
        f"{APP}=={SECOND_APP}", "-n", second, "-e", "fresh-app", "--no-push", "--pip-conf", str(curated_only)
    )
    assert grocker.docker_run(second).strip() == f"freshapp {SECOND_APP} with {DEPENDENCY} {CURATED_DEP}"
    assert EXTRA_DEP not in built.output

    # Each project's wheels are in the volume of its own index settings; the images are shared.
    names = [names_for(conf, grocker.workdir) for conf in (with_extra, curated_only)]
    assert names[0].volume != names[1].volume
    assert names[0].compiler == names[1].compiler
    listings = [_listing(grocker, name.root, name.volume) for name in names]
    extra_wheel = f"grocker_fixture_pure-{EXTRA_DEP}-py3-none-any.whl"
    assert extra_wheel in listings[0], listings[0]
    assert extra_wheel not in listings[1], listings[1]


def _listing(grocker: Grocker, image: str, volume: str) -> list[str]:
    output = output_of(
        grocker.client, image, ["ls", "-1", "/wheels"], volumes={volume: {"bind": "/wheels", "mode": "ro"}}
    )
    return output.decode().split()
