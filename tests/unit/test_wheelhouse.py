"""The pure parts of the wheel cache's trust: file names, the resolve report, the lock, the index pages."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import installer
import pytest

from grocker import api
from grocker.chain import render, wheel_steps
from grocker.chain.wheel_report import (
    check_lock,
    is_sdist_of,
    is_wheel_of,
    parse_publish,
    parse_report,
    publisher_settings,
)
from grocker.chain.wheel_steps import script_path
from grocker.config.pipconf import PipSettings
from grocker.config.release import Release
from grocker.errors import BuildError
from grocker.wheels import COMPILED_INSTALLER_RE, WHEEL_INSTALLER_RE, WheelFile, WheelLock
from grocker.wire.wheelhouse import REPORT_MARK
from tests.unit.conftest import PublisherKit, load_module, load_publishing

SHA = "a" * 64
HOSTILE = (
    "pip-99.0-py3-none-any.whl;touch x",
    "evil\n$(touch pwned)-1.0-py3-none-any.whl",
    "six-1.16.0-py2.py3-none-any.whl x",
    "../six-1.16.0-py2.py3-none-any.whl",
    "six-1.16.0-py2.py3-none-any.whl'",
    "$(id)-1.0-py3-none-any.whl",
)


def _publisher() -> ModuleType:
    return load_module(script_path("publish.py"), "grocker_publish")


def _report(*items: dict[str, object]) -> list[str]:
    return ["Collecting six", REPORT_MARK + json.dumps({"pip": "25.1.1", "items": list(items)})]


def _item(name: str, version: str, filename: str, in_volume: bool = False) -> dict[str, object]:
    return {"name": name, "version": version, "filename": filename, "in_volume": in_volume, "requested": False}


def test_wheel_and_sdist_names_must_be_of_the_project_and_version() -> None:
    assert is_wheel_of("six-1.16.0-py2.py3-none-any.whl", "six", "1.16.0")
    assert is_wheel_of("zope.interface-7.0-cp313-cp313-manylinux_2_17_x86_64.whl", "Zope.Interface", "7.0")
    assert is_wheel_of("grocker_fixture_pure-1.0-py3-none-any.whl", "grocker-fixture-pure", "1.0.0")
    assert not is_wheel_of("six-1.16.0-py2.py3-none-any.whl", "attrs", "1.16.0")
    assert not is_wheel_of("six-1.16.0-py2.py3-none-any.whl", "six", "1.17.0")
    assert is_sdist_of("grocker-fixture-evil-1.0.0.tar.gz", "grocker_fixture_evil", "1.0.0")
    assert not is_sdist_of("grocker-fixture-evil-1.0.0.tar.gz", "grocker-fixture", "evil-1.0.0")
    for name in HOSTILE:
        assert not is_wheel_of(name, "six", "1.16.0"), name
        assert not is_wheel_of(name, "pip", "99.0"), name
        assert not _publisher().wheel_of(name, "six", "1.16.0"), name


def test_report_gives_the_chosen_files() -> None:
    lines = _report(
        _item("six", "1.16.0", "six-1.16.0-py2.py3-none-any.whl", in_volume=True),
        _item("grocker-fixture-evil", "1.0.0", "grocker-fixture-evil-1.0.0.tar.gz"),
    )

    items = parse_report(lines)

    assert [(i.name, i.filename, i.in_volume, i.is_wheel) for i in items] == [
        ("six", "six-1.16.0-py2.py3-none-any.whl", True, True),
        ("grocker-fixture-evil", "grocker-fixture-evil-1.0.0.tar.gz", False, False),
    ]


@pytest.mark.parametrize("filename", [*HOSTILE, "attrs-1.16.0-py3-none-any.whl", "six-1.16.0.tar.gz.whl"])
def test_report_with_a_file_not_of_its_project_fails(filename: str) -> None:
    with pytest.raises(BuildError, match="not a wheel or sdist of that project and version") as caught:
        parse_report(_report(_item("six", "1.16.0", filename)))
    assert caught.value.exit_code == 5


def test_report_missing_or_malformed_fails() -> None:
    with pytest.raises(BuildError, match="printed no report"):
        parse_report(["pip said nothing useful"])
    with pytest.raises(BuildError, match="malformed"):
        parse_report([REPORT_MARK + json.dumps({"items": [{"name": "six"}]})])
    assert parse_publish(["GROCKER-PUBLISH:not json"]) is None


def _lock(
    application: str = "app-1.0-py3-none-any.whl", dependency: str = "six-1.16.0-py2.py3-none-any.whl"
) -> WheelLock:
    return WheelLock(
        application=WheelFile(application, SHA),
        dependencies=(WheelFile(dependency, SHA),),
        installer=WheelFile("pip-25.1.1-py3-none-any.whl", SHA),
    )


def test_lock_with_a_hostile_name_fails() -> None:
    assert check_lock(_lock(), "app") == _lock()
    for name in HOSTILE:
        with pytest.raises(BuildError, match="not a wheel file name"):
            check_lock(_lock(dependency=name), "app")
    with pytest.raises(BuildError, match="as the application"):
        check_lock(_lock(), "other-app")
    with pytest.raises(BuildError, match="not one"):
        check_lock(WheelLock(WheelFile("app-1.0-py3-none-any.whl", "sha"), (), _lock().installer), "app")


def test_runner_refuses_a_hostile_name_and_checks_the_installer(tmp_path: Path) -> None:
    config = api.load_config([], cwd=tmp_path)
    release = Release("app==1.0", "app", version="1.0")
    compiled = WheelFile("pip-25.1.1-py3-none-any.cpython313.zip", "c" * 64)

    plain = render.runner_context(release, config, "root:1", _lock()).dockerfile
    dockerfile = render.runner_context(
        release, config, "root:1", dataclasses.replace(_lock(), installer_compiled=compiled)
    ).dockerfile

    # A lock written before the compiled installer existed: pip runs from its wheel.
    pip_wheel = "/home/grocker/.grocker-tmp/pip-25.1.1-py3-none-any.whl"
    assert f"http://grocker-wheels/pip-25.1.1-py3-none-any.whl {SHA} {pip_wheel} " in plain
    assert f"{pip_wheel}/pip install" in plain
    # Otherwise from the compiled installer, fetched and checked first, like the wheels.
    pip_zip = "/home/grocker/.grocker-tmp/pip-25.1.1-py3-none-any.cpython313.zip"
    assert f"http://grocker-wheels/pip-25.1.1-py3-none-any.cpython313.zip {'c' * 64} {pip_zip} " in dockerfile
    assert f"{pip_zip}/pip install" in dockerfile
    assert "pip-25.1.1-py3-none-any.whl" not in dockerfile
    assert "if digest.hexdigest() != sha256" in dockerfile
    for name in HOSTILE:
        with pytest.raises(BuildError, match="tampered"):
            render.runner_context(release, config, "root:1", _lock(dependency=name))
        installer = WheelLock(_lock().application, (), WheelFile(name, SHA))
        with pytest.raises(BuildError, match="tampered"):
            render.runner_context(release, config, "root:1", installer)
        hostile = dataclasses.replace(_lock(), installer_compiled=WheelFile(name, SHA))
        with pytest.raises(BuildError, match="tampered"):
            render.runner_context(release, config, "root:1", hostile)


def test_lock_names_the_compiled_form_of_its_own_installer() -> None:
    compiled = WheelFile("pip-25.1.1-py3-none-any.cpython313.zip", SHA)
    lock = dataclasses.replace(_lock(), installer_compiled=compiled)

    assert check_lock(lock, "app") == lock
    assert lock.runner_installer == compiled
    assert _lock().runner_installer == _lock().installer
    other_pip = WheelFile("pip-24.0-py3-none-any.cpython313.zip", SHA)
    for wrong in (other_pip, WheelFile(compiled.file, "sha"), *(WheelFile(name, SHA) for name in HOSTILE)):
        with pytest.raises(BuildError, match="compiled form"):
            check_lock(dataclasses.replace(_lock(), installer_compiled=wrong), "app")


def test_publisher_reads_json_and_html_index_pages() -> None:
    publish = load_publishing("indexes")
    page = json.dumps(
        {
            "meta": {"api-version": "1.1"},
            "files": [
                {
                    "filename": "six-1.16.0-py2.py3-none-any.whl",
                    "url": "../../packages/six.whl",
                    "hashes": {"sha256": SHA},
                },
                {"filename": "six-1.16.0.tar.gz", "url": "https://files.example/six.tar.gz", "hashes": {}},
            ],
        }
    ).encode()

    files = publish.parse_project_page(page, "application/vnd.pypi.simple.v1+json", "https://index.example/simple/six/")

    assert files == {
        "six-1.16.0-py2.py3-none-any.whl": ("https://index.example/packages/six.whl", SHA),
        "six-1.16.0.tar.gz": ("https://files.example/six.tar.gz", None),
    }
    html = (
        b"<html><body>"
        b'<a href="../../packages/six-1.16.0-py2.py3-none-any.whl#sha256='
        + SHA.encode()
        + b'">six-1.16.0-py2.py3-none-any.whl</a>'
        b'<a href="/p/six-1.16.0.tar.gz#md5=00">six-1.16.0.tar.gz</a>'
        b"</body></html>"
    )

    files = publish.parse_project_page(html, "text/html; charset=utf-8", "http://10.0.0.2:8080/simple/six/")

    assert files == {
        "six-1.16.0-py2.py3-none-any.whl": ("http://10.0.0.2:8080/packages/six-1.16.0-py2.py3-none-any.whl", SHA),
        "six-1.16.0.tar.gz": ("http://10.0.0.2:8080/p/six-1.16.0.tar.gz", None),
    }


def test_publisher_index_keeps_credentials_out_of_its_url() -> None:
    index = load_publishing("indexes").Index("http://reader:s3cret@10.0.0.2:8080/simple", None, None, ["10.0.0.2"], 5)

    assert index.url == "http://10.0.0.2:8080/simple/"
    assert index.authorization == "Basic cmVhZGVyOnMzY3JldA=="


def test_publisher_settings_from_pip_settings() -> None:
    pip = PipSettings(
        extra_index_urls=("https://t@private.example/simple/",),
        trusted_hosts=("private.example",),
        timeout="30",
        find_links=("https://links.example/", "/local/dir"),
    )

    settings = publisher_settings(pip, "/tmp/grocker-input/cert.pem", None)

    assert settings == {
        "indexes": ["https://pypi.org/simple/", "https://t@private.example/simple/"],
        "find_links": ["https://links.example/"],
        "trusted_hosts": ["private.example"],
        "timeout": 30.0,
        "cert": "/tmp/grocker-input/cert.pem",
        "client_cert": None,
    }


def _script_module(name: str) -> ModuleType:
    return load_module(script_path(name), f"grocker_layout_{name[:-3]}")


def test_the_publishers_name_patterns_are_the_ones_check_lock_applies() -> None:
    # The publisher imports nothing of Grocker (it runs with the compiler image's Python): its
    # copy of the compiled installers' name patterns must stay check_lock's.
    names = load_publishing("names")
    assert names.COMPILED_RE.pattern == COMPILED_INSTALLER_RE.pattern
    assert names.INSTALLER_RE.pattern == WHEEL_INSTALLER_RE.pattern


def _pip_wheel(path: Path) -> None:
    """A stand-in pip wheel: a package whose __main__ says where its code came from."""
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("pip/__init__.py", "VERSION = '25.1'\n")
        # As pip's own: run as ARCHIVE/pip, it puts ARCHIVE on the path.
        main = "import os, sys\nsys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))\nimport pip\n"
        wheel.writestr("pip/__main__.py", main + "print(pip.VERSION, os.path.basename(pip.__file__))\n")
        wheel.writestr("pip-25.1.dist-info/RECORD", "")


def test_publisher_compiles_the_installer_once_beside_its_sources(publisher: PublisherKit, tmp_path: Path) -> None:
    wheel = "pip-25.1-py3-none-any.whl"
    _pip_wheel(tmp_path / wheel)
    job = publisher.job({})

    name = publisher.compiled_installer(job, wheel)
    content = (tmp_path / name).read_bytes()
    (tmp_path / name).unlink()
    (tmp_path / ".grocker" / "sha256" / name).unlink()
    again = publisher.job({})
    assert publisher.compiled_installer(again, wheel) == name
    reused = publisher.job({})
    assert publisher.compiled_installer(reused, wheel) == name

    tag = f"{sys.implementation.name}{sys.version_info[0]}{sys.version_info[1]}"
    assert name == f"pip-25.1-py3-none-any.{tag}.zip"
    assert COMPILED_INSTALLER_RE.fullmatch(name)
    # The same wheel gives the same bytes (no temporary path, no time), and it is recorded.
    assert (tmp_path / name).read_bytes() == content
    assert publisher.volume.record_of(name) == hashlib.sha256(content).hexdigest()
    assert (job.added, reused.reused) == ([name], [name])
    with zipfile.ZipFile(tmp_path / name) as archive:
        names = archive.namelist()
        code = archive.read("pip/__main__.pyc")
    assert {"pip/__init__.pyc", "pip/__main__.pyc", "pip/__init__.py"} <= set(names)
    assert code[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(code[4:8], "little") == 0b01  # hash-based, not checked against the source
    # Python runs pip from it as the runner's steps do, its modules from the bytecode.
    ran = subprocess.run([sys.executable, f"{tmp_path / name}/pip"], capture_output=True, text=True, check=True)
    assert ran.stdout.split() == ["25.1", "__init__.pyc"]


def _installer_folder(tmp_path: Path) -> Path:
    """pypa/installer's modules as the host puts them in the publisher's container."""
    folder = tmp_path / "input"
    for path, content in wheel_steps.wheel_installer_files()[1].items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(content)
    return folder / "wheel-installer"


def _app_wheel(path: Path) -> None:
    """A small wheel: a package with two modules, a console script, and a data file."""
    info = "demo_app-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("demo_app/__init__.py", "def main():\n    print('demo ran')\n")
        wheel.writestr("demo_app/broken.py", "def (:\n")
        wheel.writestr("demo_app/data.txt", "data\n")
        wheel.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: demo-app\nVersion: 1.0\n")
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{info}/entry_points.txt", "[console_scripts]\ndemo-app = demo_app:main\n")
        wheel.writestr(f"{info}/RECORD", "")


def test_publisher_compiles_the_wheel_installer_once_from_grockers_own(publisher: PublisherKit, tmp_path: Path) -> None:
    request = {"wheel_installer": {"version": installer.__version__, "folder": str(_installer_folder(tmp_path))}}

    name = publisher.wheel_installer(publisher.job(request))
    content = (tmp_path / name).read_bytes()
    reused = publisher.job(request)
    assert publisher.wheel_installer(reused) == name

    tag = f"{sys.implementation.name}{sys.version_info[0]}{sys.version_info[1]}"
    assert name == f"installer-{installer.__version__}.{tag}.zip"
    assert WHEEL_INSTALLER_RE.fullmatch(name)
    assert reused.reused == [name]
    assert publisher.volume.record_of(name) == hashlib.sha256(content).hexdigest()
    with zipfile.ZipFile(tmp_path / name) as archive:
        assert {"installer/__init__.py", "installer/__init__.pyc", "installer/destinations.pyc"} <= set(
            archive.namelist()
        )
    # Without the folder (an older host), or with a version that is not one: no wheel installer.
    assert publisher.wheel_installer(publisher.job({})) is None
    with pytest.raises(publisher.error, match="not a version"):
        publisher.wheel_installer(publisher.job({"wheel_installer": {"version": "1.0/../x", "folder": "/x"}}))


def test_the_runner_steps_install_wheels_with_the_wheel_installer_as_pip_would(
    publisher: PublisherKit, tmp_path: Path
) -> None:
    request = {"wheel_installer": {"version": installer.__version__, "folder": str(_installer_folder(tmp_path))}}
    archive = tmp_path / publisher.wheel_installer(publisher.job(request))
    wheel = tmp_path / "demo_app-1.0-py3-none-any.whl"
    _app_wheel(wheel)
    venv = tmp_path / "app.venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    script = render._INSTALL.strip()
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}

    subprocess.run([str(python), "-c", script, str(archive), str(wheel)], check=True, env=env)

    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    assert (site / "demo_app" / "data.txt").read_text() == "data\n"
    assert (site / "demo_app-1.0.dist-info" / "INSTALLER").read_text() == "grocker\n"
    assert "demo_app/__init__.py," in (site / "demo_app-1.0.dist-info" / "RECORD").read_text()
    # The console script runs with the venv's interpreter, as pip writes it.
    launcher = venv / "bin" / "demo-app"
    assert launcher.read_text().startswith(f"#!{python}\n")
    assert subprocess.run([str(launcher)], capture_output=True, text=True, check=True).stdout == "demo ran\n"
    # Hash-based bytecode, checked against the source (SOURCE_DATE_EPOCH); none for a file that
    # does not compile, which does not fail the install.
    cached = list((site / "demo_app" / "__pycache__").iterdir())
    assert [path.name.split(".")[0] for path in cached] == ["__init__"]
    assert int.from_bytes(cached[0].read_bytes()[4:8], "little") == 0b11
