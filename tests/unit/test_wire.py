"""The wheelhouse's scripts agree with the host's shapes and marks (grocker.wire.wheelhouse).

Each script is imported by its path, as the container runs it, without patching anything.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from grocker.chain.wheelhouse import parse_report, script_path
from grocker.wire import wheelhouse as wire


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"grocker_wire_{name[:-3]}", script_path(name))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_the_publisher_prints_the_result_the_host_defines(publisher: ModuleType) -> None:
    result = publisher.Publisher({}).run()

    assert publisher.PUBLISH_MARK == wire.PUBLISH_MARK
    assert set(result) == wire.keys(wire.PublishResult)
