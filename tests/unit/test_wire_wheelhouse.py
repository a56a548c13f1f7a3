"""The wheelhouse's scripts agree with the host's shapes and marks (grocker.wire.wheelhouse).

Each script is imported by its path, as the container runs it, without patching anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from grocker.chain.wheel_report import parse_publish, parse_report
from grocker.chain.wheel_steps import publisher_modules, script_path
from grocker.wire import wheelhouse as wire
from tests.unit.conftest import load_module, load_publishing


def _script(name: str) -> ModuleType:
    return load_module(script_path(name), f"grocker_wire_{name[:-3]}")


def test_the_resolve_reads_the_request_and_prints_the_report_the_host_defines(tmp_path: Path) -> None:
    resolve = _script("resolve.py")
    links = tmp_path / "links"
    pip_report = {
        "pip_version": "25.1",
        "install": [
            {
                "metadata": {"name": "six", "version": "1.16.0"},
                "download_info": {"url": f"file://{links}/six-1.16.0-py2.py3-none-any.whl"},
                "requested": False,
            },
            {
                "metadata": {"name": "app", "version": "1.0"},
                "download_info": {"url": "https://files.example/packages/app-1.0.tar.gz"},
                "requested": True,
            },
        ],
    }

    report = resolve.report_of(pip_report, str(links))

    assert resolve.REPORT_MARK == wire.REPORT_MARK
    assert wire.keys(wire.ResolveRequest) == resolve.REQUEST_KEYS
    assert set(report) == wire.keys(wire.Report)
    assert all(set(item) == wire.keys(wire.ReportItem) for item in report["items"])
    assert [(item["filename"], item["in_volume"]) for item in report["items"]] == [
        ("six-1.16.0-py2.py3-none-any.whl", True),
        ("app-1.0.tar.gz", False),
    ]
    # The host reads the line the script prints.
    items = parse_report([resolve.REPORT_MARK + json.dumps(report)])
    assert [(item.name, item.in_volume) for item in items] == [("six", True), ("app", False)]


def test_the_resolve_refuses_a_request_without_its_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    resolve = _script("resolve.py")
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"target": "six", "constraint": None}))

    assert resolve.main(["resolve.py", str(request)]) == 2
    assert "lacks ['candidates', 'links']" in capsys.readouterr().out


def test_the_publisher_runs_isolated_from_the_files_the_host_ships_and_prints_its_result(tmp_path: Path) -> None:
    # As in its container: publish.py and its package in one input folder, run with `python -I`
    # (no script folder on sys.path), its volumes where the request's paths say.
    folder = tmp_path / "input"
    files = {"publish.py": script_path("publish.py").read_bytes(), **publisher_modules()}
    for path, content in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(content)
    paths = wire.PublishPaths(
        wheels=str(tmp_path / "wheels"), candidates=str(tmp_path / "candidates"), sdists=str(tmp_path / "sdists")
    )
    (folder / "publish.json").write_text(json.dumps({"paths": paths, "indexes": ["http://127.0.0.1:9/simple/"]}))

    ran = subprocess.run(
        [sys.executable, "-I", str(folder / "publish.py"), str(folder / "publish.json")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )

    assert ran.returncode == 0, ran.stdout + ran.stderr
    (line,) = [line for line in ran.stdout.splitlines() if line.startswith(wire.PUBLISH_MARK)]
    result = parse_publish([line])
    assert result is not None
    assert set(result) == wire.keys(wire.PublishResult)
    assert (tmp_path / "wheels" / ".grocker" / "locks").is_dir()
    assert (tmp_path / "candidates").is_dir()


def test_the_publisher_agrees_with_the_hosts_marks_and_paths() -> None:
    publish = _script("publish.py")
    publishing = load_publishing("__init__")

    assert publish.PUBLISH_MARK == wire.PUBLISH_MARK
    assert wire.keys(wire.PublishPaths) == publish.PATH_KEYS
    with pytest.raises(publishing.PublishError, match="lacks the paths"):
        publish.Publisher({"paths": {"wheels": "/w"}})
