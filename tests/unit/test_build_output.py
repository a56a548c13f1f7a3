"""What a build says: the version a range resolved to, counts in the right number, and the truth
about pkg_resources when the entrypoint check misses it (through the in-memory engine)."""

from __future__ import annotations

import json
import logging
import subprocess
import venv
from dataclasses import replace
from pathlib import Path

import pytest

from grocker import api
from grocker.chain import build, runner
from grocker.chain.build import BuildRequest
from grocker.chain.runner import MISSING_MODULE_MARK, SETUPTOOLS_MARK
from grocker.errors import BuildError
from grocker.log import counted
from tests.unit.fakes import APP, SIX, FakeEngine, chain_engine, publish_line, report_line


@pytest.fixture
def engine() -> FakeEngine:
    return chain_engine()


def _request(tmp_path: Path, release: str, name: str) -> BuildRequest:
    config = api.load_config([], cwd=tmp_path)
    return api.prepare_build(release, config, image_name=name, cwd=tmp_path, env={"HOME": str(tmp_path)})


def _said(caplog: pytest.LogCaptureFixture, start: str) -> str:
    (line,) = [message for message in caplog.messages if message.startswith(start)]
    return line


@pytest.mark.parametrize(
    ("count", "noun", "expected"),
    [
        (0, "wheel", "0 wheels"),
        (1, "wheel", "1 wheel"),
        (2, "new wheel", "2 new wheels"),
        (1, "ELF file", "1 ELF file"),
    ],
)
def test_counted_is_singular_for_one_only(count: int, noun: str, expected: str) -> None:
    assert counted(count, noun) == expected


def test_a_range_build_names_the_version_it_built(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="grocker"):
        result = build.build(_request(tmp_path, "app>=1.0,<2", "app:latest"), engine)

    compiled = _said(caplog, "compile wheels of app<2,>=1.0: ")
    assert compiled.endswith("s (resolved to app==1.0, 1 new wheel, 0 reused)"), compiled
    assert _said(caplog, "done app:latest").startswith("done app:latest (app==1.0) in ")
    assert result.release == "app==1.0"


def test_a_pinned_build_says_its_version_once(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine.outputs["publish"] = (0, [publish_line(added=(APP, "six-1.16.0-py2.py3-none-any.whl"))])

    with caplog.at_level(logging.INFO, logger="grocker"):
        build.build(_request(tmp_path, "app==1.0", "app:1.0"), engine)

    assert _said(caplog, "compile wheels of app==1.0: ").endswith("s (2 new wheels, 0 reused)")
    assert _said(caplog, "done app:1.0").startswith("done app:1.0 in ")


def test_the_compile_line_counts_the_release_wheels_as_the_sources_line_does(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The publisher also reports the pip wheel it reuses as the runner's installer: not a wheel
    # of the release (yamllint 1.35.1 said "2 new wheels, 2 reused" then "3 wheels: 2 downloaded, 1 reused").
    engine.outputs["publish"] = (0, [publish_line(added=(APP,), reused=(SIX, "pip-25.0-py3-none-any.whl"))])

    with caplog.at_level(logging.INFO, logger="grocker"):
        result = build.build(_request(tmp_path, "app==1.0", "app:1.0"), engine)

    assert _said(caplog, "compile wheels of app==1.0: ").endswith("s (1 new wheel, 1 reused)")
    assert _said(caplog, "2 wheels: ") == "2 wheels: 1 downloaded, 1 reused from the wheel volume"
    assert "1 wheel" in result.reused


def test_one_reused_wheel_and_one_cached_layer_are_singular(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build.build(_request(tmp_path, "app==1.0", "app:1.0"), engine)
    engine.outputs["compile"] = (0, [report_line(app_in_volume=True)])
    engine.outputs["publish"] = (0, [publish_line(added=(), reused=(APP,))])
    engine.build_lines["runner image"] = ["Step 1/9", " ---> Using cache"]

    with caplog.at_level(logging.INFO, logger="grocker"):
        # --refresh: resolved again (an unchanged rebuild would be skipped, see test_freshness.py).
        result = build.build(replace(_request(tmp_path, "app==1.0", "app:1.0"), refresh=True), engine)

    assert result.reused[-2:] == ["1 wheel", "1 cached layer"]
    assert _said(caplog, "build image app:1.0: ").endswith("s (1 cached layer)")
    assert _said(caplog, "compile wheels of app==1.0: ").endswith("s (0 new wheels, 1 reused)")


def _check_fails(engine: FakeEngine, tmp_path: Path, *lines: str) -> str:
    engine.outputs["check"] = (0, ["starting", MISSING_MODULE_MARK + '"pkg_resources"', *lines])
    with pytest.raises(BuildError) as raised:
        build.build(_request(tmp_path, "app==1.0", "app:1.0"), engine)
    assert raised.value.exit_code == 5
    assert "app:1.0" not in engine.tags
    message = str(raised.value)
    assert "importing it fails with \"No module named 'pkg_resources'\"" in message
    assert "bug" not in message
    return message


def test_pkg_resources_with_a_setuptools_that_has_none_names_it_and_the_constraint(
    engine: FakeEngine, tmp_path: Path
) -> None:
    message = _check_fails(engine, tmp_path, SETUPTOOLS_MARK + '"84.2.1"')

    assert "The image has setuptools 84.2.1, and setuptools 82 and later no longer ship pkg_resources" in message
    assert "a line `setuptools<82` in a pip constraints file named by pip_constraint" in message
    assert "no setuptools" not in message
    assert "Declare setuptools" not in message


def test_pkg_resources_with_an_older_setuptools_does_not_blame_its_version(engine: FakeEngine, tmp_path: Path) -> None:
    message = _check_fails(engine, tmp_path, SETUPTOOLS_MARK + '"80.9.0"')

    assert "The image has setuptools 80.9.0, but no pkg_resources" in message
    assert "no setuptools" not in message
    assert "82 and later" not in message


@pytest.mark.parametrize("lines", [(), (SETUPTOOLS_MARK + '"84; rm -rf /"',), (SETUPTOOLS_MARK + "{",)])
def test_pkg_resources_with_no_clear_answer_claims_nothing_about_setuptools(
    engine: FakeEngine, tmp_path: Path, lines: tuple[str, ...]
) -> None:
    message = _check_fails(engine, tmp_path, *lines)

    assert "no setuptools" not in message
    assert "The image has setuptools" not in message
    assert "rm -rf" not in message
    assert "pkg_resources is part of setuptools before version 82" in message


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv of this Python with nothing installed (no pip, no setuptools), as in a runner image."""
    folder = tmp_path_factory.mktemp("bare")
    venv.create(folder, with_pip=False)
    return folder / "bin" / "python"


def _distribution(folder: Path, name: str, version: str) -> None:
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


@pytest.mark.parametrize("setuptools", [None, "84.2.1"], ids=["no-setuptools", "setuptools-84"])
def test_the_check_script_reports_which_setuptools_lacks_pkg_resources(
    bare_python: Path, tmp_path: Path, setuptools: str | None
) -> None:
    """The check's script, run by a Python without setuptools on a real installed distribution."""
    _distribution(tmp_path, "fakeapp", "1.0")
    (tmp_path / "fakeapp-1.0.dist-info" / "entry_points.txt").write_text("[console_scripts]\nfake-cmd = fakemod:main\n")
    (tmp_path / "fakemod.py").write_text("import pkg_resources\ndef main(): pass\n")
    if setuptools is not None:
        _distribution(tmp_path, "setuptools", setuptools)  # its metadata, without pkg_resources

    completed = subprocess.run(
        [str(bare_python), "-c", runner._IMPORT_CHECK, "fake-cmd"],
        env={"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines == [MISSING_MODULE_MARK + '"pkg_resources"', SETUPTOOLS_MARK + json.dumps(setuptools)]
