"""The SBOM collector script (run in the image): what it reads from a wheel and the lock."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit.conftest import load_module

COLLECT_SCRIPT = Path(__file__).parents[2] / "grocker" / "resources" / "sbom" / "collect.py"
CHECK_SCRIPT = Path(__file__).parents[2] / "grocker" / "resources" / "abi" / "check.py"

METADATA = """\
Metadata-Version: 2.4
Name: Demo_Pkg
Version: 1.2
License-Expression: MIT
Classifier: License :: OSI Approved :: MIT License
Classifier: Programming Language :: Python

A description that mentions License: nothing.
"""


def _load(path: Path, name: str) -> ModuleType:
    return load_module(path, name)


@pytest.fixture
def collector() -> ModuleType:
    return _load(COLLECT_SCRIPT, "grocker_sbom_collect")


def _request(volume: Path, lock: str, files: list[str] | None) -> dict[str, object]:
    """The collector's request for a wheel volume at `volume`, as grocker.wire.sbom makes it."""
    return {"lock": lock, "files": files, "wheel_dir": str(volume), "lock_dir": str(volume / ".grocker" / "locks")}


def _wheel(folder: Path, sboms: dict[str, bytes]) -> Path:
    path = folder / "demo_pkg-1.2-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("demo_pkg/__init__.py", "")
        archive.writestr("demo_pkg-1.2.dist-info/METADATA", METADATA)
        for name, content in sboms.items():
            archive.writestr(f"demo_pkg-1.2.dist-info/sboms/{name}", content)
        archive.writestr("demo_pkg-1.2.dist-info/RECORD", "")
    return path


def test_metadata_and_pep770_sboms_are_read_from_the_wheel(collector: ModuleType, tmp_path: Path) -> None:
    nested = {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []}
    path = _wheel(tmp_path, {"a.cdx.json": json.dumps(nested).encode(), "b.txt": b"not json"})

    info = collector.wheel(str(path))

    assert info["name"] == "Demo_Pkg"
    assert info["license_expression"] == "MIT"
    assert info["classifiers"] == ["License :: OSI Approved :: MIT License", "Programming Language :: Python"]
    assert [item["path"] for item in info["sboms"]] == [
        "demo_pkg-1.2.dist-info/sboms/a.cdx.json",
        "demo_pkg-1.2.dist-info/sboms/b.txt",
    ]
    assert info["sboms"][0]["document"] == nested
    assert "document" not in info["sboms"][1]
    assert len(info["sboms"][1]["sha256"]) == 64


def test_lock_is_read_from_the_volume_when_not_given(collector: ModuleType, tmp_path: Path) -> None:
    _wheel(tmp_path, {})
    lock = {
        "application": {"file": "demo_pkg-1.2-py3-none-any.whl", "sha256": "a" * 64},
        "dependencies": [],
        "installer": {"file": "pip-25.0-py3-none-any.whl", "sha256": "b" * 64},
    }
    (tmp_path / ".grocker" / "locks").mkdir(parents=True)
    (tmp_path / ".grocker" / "locks" / "demo-1.json").write_text(json.dumps(lock))
    image = tmp_path / "image"  # an image with no package database
    image.mkdir()

    result = collector.collect(_request(tmp_path, "demo-1", None), root=str(image))

    assert result["packages"] == []
    assert result["lock"] == lock
    assert list(result["wheels"]) == ["demo_pkg-1.2-py3-none-any.whl"]


def test_a_missing_lock_gives_the_system_facts_alone(collector: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text('ID=debian\nVERSION_ID="13"\n')

    result = collector.collect(_request(tmp_path, "none-1", None), root=str(tmp_path))

    assert result == {"os": {"id": "debian", "version_id": "13"}, "packages": []}


def test_the_script_prints_its_facts_for_the_request_in_its_argument(
    collector: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _wheel(tmp_path, {})

    assert collector.main(["collect.py", json.dumps(_request(tmp_path, "demo-1", [path.name]))]) == 0

    assert list(json.loads(capsys.readouterr().out)["wheels"]) == [path.name]


def test_alpine_packages_are_read_from_the_apk_database(collector: ModuleType, tmp_path: Path) -> None:
    database = tmp_path / "lib" / "apk" / "db" / "installed"
    database.parent.mkdir(parents=True)
    database.write_text("C:Q1abc=\nP:musl\nV:1.2.5-r10\nA:x86_64\nS:1\n\nC:Q1def=\nP:python3\nV:3.12.11-r0\nA:x86_64\n")

    assert collector.packages(str(tmp_path), dpkg_query="") == [
        {"name": "musl", "version": "1.2.5-r10", "architecture": "x86_64"},
        {"name": "python3", "version": "3.12.11-r0", "architecture": "x86_64"},
    ]


def test_the_abi_checker_returns_the_collectors_facts_from_the_wheels_it_opened(
    collector: ModuleType, tmp_path: Path
) -> None:
    nested = {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []}
    path = _wheel(tmp_path, {"a.cdx.json": json.dumps(nested).encode()})
    checker = _load(CHECK_SCRIPT, "grocker_abi_check")
    sbom_request = _request(tmp_path, "demo-1", [path.name])
    request = {"wheels": [path.name], "sbom": sbom_request, "wheel_dir": str(tmp_path), "lock_dir": str(tmp_path)}

    report = checker.check(request, collector.collect)

    assert report["findings"] == []
    # The same facts as the collector's own container would print for that request.
    assert report["sbom"] == collector.collect(sbom_request)
    assert report["sbom"]["wheels"][path.name]["sboms"][0]["document"] == nested


def test_the_abi_checker_gathers_no_sbom_facts_unless_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _wheel(tmp_path, {})
    checker = _load(CHECK_SCRIPT, "grocker_abi_check")
    request = {"wheels": [path.name], "wheel_dir": str(tmp_path), "lock_dir": str(tmp_path)}
    (tmp_path / "request.json").write_text(json.dumps(request))

    assert checker.main(["check.py", str(tmp_path / "request.json")]) == 0

    report = json.loads(capsys.readouterr().out.strip()[len("GROCKER-ABI:") :])
    assert report["checked"] == {"elf_files": 0, "wheels": 1}
    assert "sbom" not in report


def test_package_code_in_the_venv_cannot_run_in_the_collector(tmp_path: Path) -> None:
    """The runner's venv: a .pth file there runs with its python, never with the collector's flags (issue 20)."""
    import subprocess
    import venv

    from grocker.sbom.facts import SYSTEM_PATH

    env_dir = tmp_path / "app.venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    site = next(env_dir.glob("lib/python3*/site-packages"))
    marker = tmp_path / "ran"
    forged = 'print(\'{"os": {"id": "forged"}}\')'
    (site / "evil.pth").write_text(f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x'); {forged}\n")
    python = str(env_dir / "bin" / "python3")
    script = COLLECT_SCRIPT.read_text()
    request = json.dumps(_request(tmp_path, "none", []))

    # The control: the venv's interpreter, as the runner's PATH finds it, runs the .pth file.
    subprocess.run([python, "-c", "pass"], check=True, env={"PATH": f"{env_dir / 'bin'}:{SYSTEM_PATH}"})
    assert marker.exists()
    marker.unlink()

    # The collector's flags: even this very interpreter runs none of it, and its output is its own.
    done = subprocess.run(
        [python, "-I", "-S", "-c", script, request],
        check=True,
        env={"PATH": SYSTEM_PATH, "PYTHONPATH": str(site), "PYTHONSTARTUP": str(site / "evil.pth")},
        capture_output=True,
        text=True,
    )
    assert not marker.exists()
    assert "forged" not in done.stdout
    assert json.loads(done.stdout.splitlines()[-1])["wheels"] == {}
    # And the reset PATH does not lead to the venv's interpreter at all.
    assert str(env_dir) not in SYSTEM_PATH
