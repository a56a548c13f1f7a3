"""The minimal runner: its configuration, its base's assembly, its shell-less steps, its chain."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from grocker import api
from grocker.chain import build, render
from grocker.config import ProjectConfig
from grocker.config.pipconf import PipSettings
from grocker.config.release import parse_release
from grocker.errors import ConfigError
from grocker.labels import MINIMAL_BASE, ROLE_LABEL, ROOT_ID_LABEL
from grocker.naming import internal_names
from grocker.wheels import WheelFile, WheelLock
from tests.unit.conftest import load_module
from tests.unit.fakes import FakeEngine, chain_engine

RESOURCES = Path(__file__).resolve().parents[2] / "grocker" / "resources"
LOCK = WheelLock(
    application=WheelFile("myapp-1.0-py3-none-any.whl", "a" * 64),
    dependencies=(WheelFile("six-1.16.0-py2.py3-none-any.whl", "b" * 64),),
    installer=WheelFile("pip-25.0-py3-none-any.whl", "d" * 64),
    installer_compiled=WheelFile("pip-25.0-py3-none-any.cpython313.zip", "f" * 64),
    wheel_installer=WheelFile("installer-1.1.0.cpython313.zip", "e" * 64),
)


def _module(path: Path, name: str) -> ModuleType:
    return load_module(path, name)


@pytest.fixture(scope="module")
def assemble() -> ModuleType:
    return _module(RESOURCES / "minimal" / "assemble.py", "grocker_minimal_assemble")


def load(tmp_path: Path, values: dict[str, object], **overrides: object) -> ProjectConfig:
    path = tmp_path / "grocker.yml"
    path.write_text(yaml.safe_dump(values))
    return api.load_config([path], cwd=tmp_path, overrides=overrides or None)


# Configuration


def test_the_runner_is_full_unless_configured_and_the_option_wins(tmp_path: Path) -> None:
    assert api.load_config([], cwd=tmp_path).runner == "full"
    assert load(tmp_path, {"runner": "minimal"}).runner == "minimal"
    assert load(tmp_path, {"runner": "minimal"}, runner="full").runner == "full"
    assert load(tmp_path, {"runner": "full"}, runner="minimal").runner == "minimal"


def test_the_option_reaches_the_build(grocker, tmp_path: Path) -> None:
    (tmp_path / ".grocker.yml").write_text("runner: full\n")

    run = grocker("build", "--runner", "minimal", "ipython==8.18.1")
    refused = grocker("build", "--runner", "tiny", "ipython==8.18.1")

    assert run.exit_code == 0, run.stderr
    assert run.request.config.runner == "minimal"
    assert refused.exit_code == 2
    assert "'tiny' is not one of 'full', 'minimal'" in refused.stderr


def test_an_unknown_flavour_in_a_file_is_a_configuration_error(grocker, tmp_path: Path) -> None:
    (tmp_path / ".grocker.yml").write_text("runner: distroless\n")

    run = grocker("build", "ipython==8.18.1")

    assert run.exit_code == 3
    assert "runner" in run.stderr
    assert "must be one of full, minimal, got string 'distroless'" in run.stderr


def test_alpine_runtimes_refuse_the_minimal_runner_naming_those_that_have_it(grocker, tmp_path: Path) -> None:
    run = grocker("build", "--runner", "minimal", "-r", "alpine/3.12", "ipython==8.18.1")

    assert run.exit_code == 3
    assert "runner: minimal (command line) is not available on the alpine runtime alpine/3.12" in run.stderr
    for runtime in ("trixie/3.13", "bookworm/3.11", "trixie/3.12", "trixie/3.14"):
        assert runtime in run.stderr
    assert "alpine/3.12)" not in run.stderr.split("supports it", 1)[1]


# Rendering


def test_the_minimal_runner_is_built_from_the_minimal_base_in_exec_form(tmp_path: Path) -> None:
    config = load(tmp_path, {"runner": "minimal"})
    names = internal_names(config, PipSettings())
    release = parse_release("myapp==1.0", tmp_path)

    dockerfile = render.runner_context(release, config, names.runner_base(config), LOCK).dockerfile

    assert dockerfile.splitlines()[1] == f"FROM {names.minimal}"
    runs = [line.removeprefix("RUN ") for line in dockerfile.splitlines() if line.startswith("RUN ")]
    # The dependencies and the application: two layers, as in the full runner.
    assert len(runs) == 2
    for run in runs:
        command = json.loads(run)  # exec form: the builder runs no shell
        assert command[:2] == ["python3", "-c"]
        assert "&&" not in command[2]
    spec = [json.loads(json.loads(run)[3]) for run in runs]
    assert spec[0]["venv"] == render.APP_VENV
    assert spec[1]["venv"] == ""
    assert [part for part in spec[1]["files"] if part.endswith(".whl")] == [
        "http://grocker-wheels/myapp-1.0-py3-none-any.whl",
        "/home/grocker/.grocker-tmp/myapp-1.0-py3-none-any.whl",
    ]


def test_the_full_runner_keeps_its_shell_steps_from_root(tmp_path: Path) -> None:
    config = api.load_config([], cwd=tmp_path)
    names = internal_names(config, PipSettings())
    release = parse_release("myapp==1.0", tmp_path)

    dockerfile = render.runner_context(release, config, names.runner_base(config), LOCK).dockerfile

    assert names.runner_base(config) == names.root
    assert f"FROM {names.root}" in dockerfile
    runs = [line for line in dockerfile.splitlines() if line.startswith("RUN ")]
    assert len(runs) == 2
    assert not any(line.startswith("RUN [") for line in runs)
    assert "\n    && mkdir /home/grocker/.grocker-tmp" in dockerfile


def test_the_minimal_base_is_named_apart_and_assembled_by_the_root_python(tmp_path: Path) -> None:
    config = load(tmp_path, {"runner": "minimal", "dependencies": {"run": ["libpq5"]}})
    names = internal_names(config, PipSettings())

    context = render.minimal_context(config, names.root)

    assert names.minimal.startswith("grocker-trixie-3.13-minimal:")
    assert names.minimal.rsplit("-", 1)[1] != names.root.rsplit("-", 1)[1]
    lines = context.dockerfile.splitlines()
    assert f"FROM {names.root}" in lines
    assert "FROM scratch" in lines
    run = next(line for line in lines if line.startswith("RUN "))
    assert json.loads(run.removeprefix("RUN ")) == [
        "python3",
        "/tmp/grocker/assemble.py",
        "/tmp/grocker/request.json",
        "/tmp/grocker/out",
    ]
    request = json.loads(context.files["request.json"])
    assert request["packages"] == ["python3", "libpq5"]
    assert context.files["assemble.py"] == (RESOURCES / "minimal" / "assemble.py").read_bytes()


# The step program, run here as the builder runs it


def _wheel(path: Path) -> str:
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(zipfile.ZipInfo("a/__init__.py", (2024, 5, 6, 7, 8, 10)), b"")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_exec_step_fetches_creates_the_venv_and_settles_the_times(tmp_path: Path) -> None:
    source = tmp_path / "a-1.0-py3-none-any.whl"
    installer = tmp_path / "installer.zip"
    home = tmp_path / "home"
    home.mkdir()
    temp = home / ".grocker-tmp"
    spec = {
        "host": "grocker-wheels",
        "temp": str(temp),
        "marker": str(temp / ".started"),
        "home": str(home),
        "fetch": render._FETCH.strip(),
        "files": [
            installer.as_uri(),
            _wheel(installer),
            str(temp / "installer.zip"),
            source.as_uri(),
            _wheel(source),
            str(temp / source.name),
        ],
        "epoch": "",
        "venv": str(home / "venv"),
        "install": [],
        "settle": render._SETTLE.strip(),
    }
    other = tmp_path / "other"
    tampered = dict(
        spec,
        files=[*spec["files"][:2], str(other / "installer.zip"), spec["files"][3], "0" * 64, str(other / source.name)],
        temp=str(other),
        marker=str(other / ".started"),
        home=str(tmp_path),
        venv="",
    )

    done = subprocess.run(
        [sys.executable, "-c", render._STEP.strip(), json.dumps(spec)], capture_output=True, text=True
    )
    refused = subprocess.run(
        [sys.executable, "-c", render._STEP.strip(), json.dumps(tampered)],
        capture_output=True,
        text=True,
    )

    assert done.returncode == 0, done.stderr
    assert not temp.exists()
    assert (home / "venv" / "pyvenv.cfg").exists()
    assert (home / "venv" / "pyvenv.cfg").stat().st_mtime == 1714979290  # the wheel's newest time, UTC
    assert refused.returncode != 0
    assert "not the SHA-256 of the lock" in refused.stderr


# The assembly script's decisions

STATUS = """\
Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.41-12
Depends: libgcc-s1

Package: libgcc-s1
Status: install ok installed
Architecture: amd64
Version: 14.2.0-19
Depends: libc6 (>= 2.35)

Package: dash
Essential: yes
Status: install ok installed
Architecture: amd64
Version: 0.5.12-12
Pre-Depends: libc6 (>= 2.38)

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2025b-4
Depends: debconf (>= 0.5) | debconf-2.0

Package: debconf
Status: install ok installed
Architecture: all
Version: 1.5.91
Provides: debconf-2.0
Depends: perl-base

Package: python3.13
Status: install ok installed
Architecture: amd64
Version: 3.13.5-2
Depends: libc6 (>= 2.38), media-types | mime-support, tzdata, dash
Description: an interpreter
 with a continuation line: Package: not-a-package

Package: media-types
Status: install ok installed
Architecture: all
Version: 13.0.0

Package: removed
Status: deinstall ok config-files
Architecture: all
Version: 1
"""


def test_the_closure_follows_depends_and_never_enters_the_cut(assemble: ModuleType) -> None:
    packages = assemble.parse_status(STATUS)
    essential = {name for name, (fields, _text) in packages.items() if fields.get("Essential") == "yes"}
    cut = (essential | set(assemble.CUT)) - set(assemble.KEEP)

    kept = assemble.closure(packages, ["python3.13", "not-installed"], cut)

    assert "removed" not in packages
    assert "not-a-package" not in packages
    assert kept == ["libc6", "libgcc-s1", "media-types", "python3.13", "tzdata"]
    assert packages["python3.13"][1].startswith("Package: python3.13\n")
    assert packages["python3.13"][1].endswith("Package: not-a-package\n")


@pytest.mark.parametrize("package", ["libpq5", "libpq5=17.6-0+deb13u1", "libpq5:amd64", "libpq5/trixie-backports"])
def test_a_run_package_is_kept_by_its_name_whatever_apt_was_told(assemble: ModuleType, package: str) -> None:
    assert assemble.bare_name(package) == "libpq5"


def test_the_cut_holds_the_package_manager_and_keeps_what_scanners_read(assemble: ModuleType) -> None:
    assert {"apt", "debconf", "openssl", "mawk", "busybox"} <= set(assemble.CUT)
    assert {"base-files", "ca-certificates", "tzdata"} <= set(assemble.KEEP)
    assert not set(assemble.CUT) & set(assemble.KEEP)


def test_accounts_keep_the_named_users_without_a_login_shell(assemble: ModuleType, tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text(
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n"
        "grocker:x:1000:1000::/home/grocker:/bin/bash\n"
    )

    text = assemble.accounts(str(passwd), ("root", "grocker"))

    assert text == "root:x:0:0:root:/root:/usr/sbin/nologin\ngrocker:x:1000:1000::/home/grocker:/usr/sbin/nologin\n"


def test_the_sbom_collector_reads_a_status_folder(tmp_path: Path) -> None:
    collect = _module(RESOURCES / "sbom" / "collect.py", "grocker_collect_minimal")
    folder = tmp_path / "status.d"
    folder.mkdir()
    packages = {
        name: text
        for name, (_fields, text) in _module(RESOURCES / "minimal" / "assemble.py", "grocker_minimal_assemble2")
        .parse_status(STATUS)
        .items()
    }
    for name, text in packages.items():
        (folder / name).write_text(text)
    (folder / "libc6.md5sums").write_text("0123  usr/lib/libc.so.6\n")

    found = collect.status_packages(str(folder))

    assert {item["name"]: item["version"] for item in found} == {
        "libc6": "2.41-12",
        "libgcc-s1": "14.2.0-19",
        "dash": "0.5.12-12",
        "tzdata": "2025b-4",
        "debconf": "1.5.91",
        "python3.13": "3.13.5-2",
        "media-types": "13.0.0",
    }
    assert {item["architecture"] for item in found} == {"amd64", "all"}


# The chain


@pytest.fixture
def engine() -> FakeEngine:
    return chain_engine()


def test_a_minimal_build_makes_the_base_from_root_and_gates_the_wheels_against_it(
    engine: FakeEngine, tmp_path: Path
) -> None:
    config = load(tmp_path, {"runner": "minimal"})
    request = api.prepare_build("app==1.0", config, image_name="app:1.0", cwd=tmp_path, env={"HOME": str(tmp_path)})
    names = internal_names(config, PipSettings())

    build.build(request, engine)

    assert engine.did("build") == [
        "root image",
        "wheel-server image",
        "compiler image",
        "minimal-base image",
        "runner image",
    ]
    base = engine.image(names.minimal)
    root = engine.image(names.root)
    assert base is not None
    assert root is not None
    assert base.labels[ROLE_LABEL] == MINIMAL_BASE
    assert base.labels[ROOT_ID_LABEL] == root.id
    images = {made["role"]: made["image"] for made in engine.containers_made}
    assert images["abi-check"] == names.minimal
    # The entrypoint check runs the venv's python: the minimal runner has no shell.
    checks = [made for made in engine.containers_made if made["role"] == "check"]
    assert checks[0]["entrypoint"][0] == f"{render.APP_VENV}/bin/python"
    assert engine.live == []


def test_the_dry_run_shows_the_minimal_base(tmp_path: Path) -> None:
    config = load(tmp_path, {"runner": "minimal"})
    request = api.prepare_build("app==1.0", config, image_name="app:1.0", cwd=tmp_path, env={"HOME": str(tmp_path)})

    text = api.dry_run(request)

    assert f"minimal base image: {internal_names(config, PipSettings()).minimal}" in text
    assert re.search(r"^# ---- minimal-base image: Dockerfile$", text, re.MULTILINE)


def test_alpine_minimal_is_refused_before_any_engine_call(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not available on the alpine runtime"):
        load(tmp_path, {"runner": "minimal", "runtime": "alpine/3.12"})


def test_the_minimal_base_is_shared_through_the_prefix_with_the_other_internal_images(
    engine: FakeEngine, tmp_path: Path
) -> None:
    config = load(tmp_path, {"runner": "minimal", "docker_image_prefix": "registry.example.com/team"})
    request = api.prepare_build("app==1.0", config, image_name="app:1.0", cwd=tmp_path, env={"HOME": str(tmp_path)})
    names = internal_names(config, PipSettings())

    build.build(request, engine)

    assert engine.did("push") == [names.root, names.compiler, names.wheel_server, names.minimal]
    assert names.minimal.startswith("registry.example.com/team/grocker-trixie-3.13-minimal:")
