"""The programs that run in containers agree with the host on the marks and shapes in grocker/wire/.

They run without Grocker (on the image's Python), so they spell these themselves: each is
imported here by its path and compared with the host's definition.
"""

from __future__ import annotations

import ast
import json
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from grocker.chain import abi as chain_abi
from grocker.chain import render
from grocker.chain import runner as chain_runner
from grocker.wheels import WheelFile, WheelLock
from grocker.wire import abi, minimal, runner, sbom
from tests.unit.conftest import load_module

RESOURCES = Path(__file__).resolve().parents[2] / "grocker" / "resources"
PROGRAMS = sorted(
    path for path in RESOURCES.rglob("*.py") if path.parent.name != "wheelhouse"
)  # the wheelhouse's have their own test (test_wheelhouse.py)


def _program(relative: str) -> ModuleType:
    path = RESOURCES / relative
    return load_module(path, f"grocker_program_{path.parent.name}_{path.stem}")


def _keys(shape: Any) -> tuple[set[str], set[str]]:
    """A TypedDict's keys and its required keys."""
    return set(shape.__annotations__), set(shape.__required_keys__)


def test_the_abi_checker_has_the_hosts_mark_and_request() -> None:
    check = _program("abi/check.py")

    assert check.RESULT_MARK == abi.RESULT_MARK
    assert _keys(check.AbiRequest) == _keys(abi.AbiRequest)
    assert _keys(check.AbiFolders) == _keys(abi.AbiFolders)


def test_the_sbom_collector_has_the_hosts_request() -> None:
    collect = _program("sbom/collect.py")

    assert _keys(collect.CollectRequest) == _keys(sbom.CollectRequest)


def test_the_assembler_has_the_hosts_request() -> None:
    assemble = _program("minimal/assemble.py")

    assert _keys(assemble.MinimalRequest) == _keys(minimal.MinimalRequest)


def test_the_runners_programs_have_the_hosts_bounds_and_marks() -> None:
    fetch, load = _program("install/fetch.py"), _program("entrypoint/load.py")

    assert (fetch.MIN_EPOCH, fetch.MAX_EPOCH) == (runner.MIN_EPOCH, runner.MAX_EPOCH)
    assert (load.MISSING_MODULE_MARK, load.SETUPTOOLS_MARK) == (runner.MISSING_MODULE_MARK, runner.SETUPTOOLS_MARK)
    # The host runs exactly these files' texts.
    assert (RESOURCES / "install" / "fetch.py").read_text() == render._FETCH
    assert (RESOURCES / "entrypoint" / "load.py").read_text() == chain_runner._IMPORT_CHECK


def _wheel(folder: Path, project: str, version: str) -> str:
    name = f"{project}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(folder / name, "w") as archive:
        archive.writestr(f"{project}/__init__.py", "")
        metadata = f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
        archive.writestr(f"{project}-{version}.dist-info/METADATA", metadata)
    return name


@pytest.mark.parametrize("locked", [True, False], ids=["lock-given", "lock-in-volume"])
def test_the_checker_answers_the_hosts_request_with_the_hosts_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, locked: bool
) -> None:
    """The request the host makes, its folders moved to a temporary volume, gives a report the host reads."""
    check = _program("abi/check.py")
    # The checker imports the collector from its own folder, where the host copies it.
    monkeypatch.syspath_prepend(str(RESOURCES / "sbom"))
    name, pip = _wheel(tmp_path, "demo", "1.0"), _wheel(tmp_path, "pip", "25.0")
    lock = WheelLock(application=WheelFile(name, "a" * 64), dependencies=(), installer=WheelFile(pip, "b" * 64))
    request = chain_abi.checker_request("demo-1", lock if locked else None, sbom=True)
    locks = tmp_path / ".grocker" / "locks"
    locks.mkdir(parents=True)
    (locks / "demo-1.json").write_text(
        json.dumps({"application": {"file": name}, "dependencies": [], "installer": {"file": pip}})
    )
    moved: dict[str, Any] = {**request, "wheel_dir": str(tmp_path), "lock_dir": str(locks)}
    moved["sbom"] = {**request["sbom"], "wheel_dir": str(tmp_path), "lock_dir": str(locks)}
    (tmp_path / "request.json").write_text(json.dumps(moved))

    try:
        assert check.main(["check.py", str(tmp_path / "request.json")]) == 0
    finally:
        sys.modules.pop("collect", None)

    report = chain_abi.parse_result(capsys.readouterr().out.splitlines())
    assert report is not None
    assert set(report) <= set(abi.AbiReport.__annotations__)
    assert report["findings"] == []
    assert set(report["sbom"]) <= set(sbom.CollectFacts.__annotations__)
    assert list(report["sbom"]["wheels"]) == [name]


def test_the_host_sends_the_assembler_its_request_shape(tmp_path: Path) -> None:
    from grocker import api

    (tmp_path / "grocker.yml").write_text("runner: minimal\n")
    config = api.load_config([tmp_path / "grocker.yml"], cwd=tmp_path)
    request = json.loads(render.minimal_context(config, "root:1").files["request.json"])

    assert set(request) == set(minimal.MinimalRequest.__annotations__)


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda path: path.relative_to(RESOURCES).as_posix())
def test_no_program_imports_grocker_where_it_runs(path: Path) -> None:
    """Only type checking may name Grocker's modules: the images have no Grocker."""
    tree = ast.parse(path.read_text(), str(path))
    guarded = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for node in ast.walk(ast.Module(body=block.body, type_ignores=[]))
    }
    imported = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        and id(node) not in guarded
        and any(
            name.startswith("grocker")
            for name in ([node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names])
        )
    ]

    assert imported == []
