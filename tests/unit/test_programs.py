"""The runner's programs (resources/install/, resources/entrypoint/) and the assembler's file
lookups, imported by their paths and called with their inputs: nothing of theirs is patched."""

from __future__ import annotations

import calendar
import hashlib
import os
import shutil
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path
from types import ModuleType

import installer
import pytest

from grocker.chain import render
from tests.unit.conftest import load_module

RESOURCES = Path(__file__).resolve().parents[2] / "grocker" / "resources"


def _program(relative: str) -> ModuleType:
    path = RESOURCES / relative
    return load_module(path, f"grocker_program_{path.parent.name}_{path.stem}")


def _zip(path: Path, when: tuple[int, int, int, int, int, int]) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("demo/__init__.py", date_time=when), "")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_checks_each_file_and_returns_the_newest_time_of_the_wheels(tmp_path: Path) -> None:
    fetch = _program("install/fetch.py")
    installer, wheel = tmp_path / "installer.zip", tmp_path / "demo.whl"
    installer_sha, wheel_sha = _zip(installer, (2030, 1, 1, 0, 0, 0)), _zip(wheel, (2020, 5, 17, 10, 30, 0))
    out = tmp_path / "out"
    out.mkdir()
    args = [installer.as_uri(), installer_sha, str(out / "i.zip"), wheel.as_uri(), wheel_sha, str(out / "d.whl")]

    # The installer's time does not count: the layer does not hold it.
    assert fetch.fetch(args) == calendar.timegm((2020, 5, 17, 10, 30, 0))
    assert (out / "d.whl").read_bytes() == wheel.read_bytes()
    assert fetch.fetch(args[:3]) == fetch.MIN_EPOCH
    with pytest.raises(SystemExit, match="not the SHA-256 of the lock"):
        fetch.fetch([wheel.as_uri(), "0" * 64, str(out / "x.whl")])


def test_settle_sets_what_the_step_changed_and_removes_its_downloads(tmp_path: Path) -> None:
    settle = _program("install/settle.py")
    home = tmp_path / "home"
    home.mkdir()
    before = home / "before"
    before.write_text("from a lower layer")
    os.utime(before, (1_000_000_000, 1_000_000_000))
    time.sleep(0.05)  # the layer below was written before the step started
    marker = home / ".tmp" / ".started"
    marker.parent.mkdir()
    marker.write_text("")
    made = home / "made"
    made.write_text("by this step")

    settle.settle(str(home), 1_700_000_000, str(marker))

    assert not marker.parent.exists()
    assert made.stat().st_mtime == 1_700_000_000
    assert before.stat().st_mtime == 1_000_000_000


def test_probe_tells_a_missing_command_from_a_failed_import_check() -> None:
    probe = _program("entrypoint/probe.py")

    assert probe.probe("grocker-no-such-command", "pass") == 1
    assert probe.probe(sys.executable, "import sys; sys.exit(3)") == 2
    assert probe.probe(sys.executable, "pass") == 0


def test_the_assembler_reads_a_packages_list_from_the_info_folder_it_is_given(tmp_path: Path) -> None:
    assemble = _program("minimal/assemble.py")
    (tmp_path / "libfoo1:amd64.list").write_text("/.\n/usr\n/usr/lib/libfoo.so.1\n")
    (tmp_path / "bar.list").write_text("/.\n/usr/bin/bar\n")
    packages = assemble.parse_status(
        "Package: libfoo1\nStatus: install ok installed\nArchitecture: amd64\n\n"
        "Package: bar\nStatus: install ok installed\nArchitecture: all\n"
    )

    assert assemble.package_files("libfoo1", "amd64", str(tmp_path)) == ["/usr", "/usr/lib/libfoo.so.1"]
    assert assemble.package_files("bar", "all", str(tmp_path)) == ["/usr/bin/bar"]
    assert assemble.owner_of("/usr/bin/bar", packages, str(tmp_path)) == "bar"
    assert assemble.owner_of("/usr/bin/none", packages, str(tmp_path)) is None


def _pure_wheel(folder: Path) -> Path:
    """A minimal valid wheel: one module, its metadata, WHEEL and RECORD."""
    path = folder / "demo-1.0-py3-none-any.whl"
    files = {
        "demo/__init__.py": "VALUE = 1\n",
        "demo-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
        "demo-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(
            "demo-1.0.dist-info/RECORD", "".join(f"{name},,\n" for name in files) + "demo-1.0.dist-info/RECORD,,\n"
        )
    return path


def test_install_installs_with_the_given_installer_and_compiles_what_it_installed(tmp_path: Path) -> None:
    """The program's text, run by a venv's Python as the runner's step runs it, with pypa/installer from a folder."""
    archive = tmp_path / "installer-archive"
    shutil.copytree(Path(installer.__file__).parent, archive / "installer")
    env_dir = tmp_path / "app.venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"

    done = subprocess.run(
        [str(python), "-c", render._INSTALL, str(archive), str(_pure_wheel(tmp_path))],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "SOURCE_DATE_EPOCH": "1700000000"},
        check=False,
    )

    assert done.returncode == 0, done.stderr
    site = next(env_dir.glob("lib/python3*/site-packages"))
    assert (site / "demo" / "__init__.py").read_text() == "VALUE = 1\n"
    assert (site / "demo-1.0.dist-info" / "INSTALLER").read_text() == "grocker\n"
    assert list((site / "demo" / "__pycache__").glob("__init__.*.pyc"))
