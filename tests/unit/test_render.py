"""Rendered build contexts of the four images, for each runtime family."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from grocker import api
from grocker.chain import render
from grocker.chain.wheel_report import check_lock
from grocker.config import ProjectConfig
from grocker.config.release import parse_release
from grocker.errors import BuildError, ConfigError
from grocker.wheels import WheelFile, WheelLock

ROOT = "registry.example.com/grocker-trixie-3.13-root:7-abc"
PGP_KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBE50MmIBCAD+FPYK\n=A015\n-----END PGP PUBLIC KEY BLOCK-----\n"
OLD_KEYRING = "/usr/share/keyrings/old.gpg"
COMPILERS = ("build-essential", "build-base", "gcc", "python3-dev", "libpq-dev")
LOCK = WheelLock(
    application=WheelFile("myapp-1.0-py3-none-any.whl", "a" * 64),
    dependencies=(
        WheelFile("six-1.16.0-py2.py3-none-any.whl", "b" * 64),
        WheelFile("psycopg-3.2.0-cp313-cp313-manylinux_2_17_x86_64.whl", "c" * 64),
    ),
    installer=WheelFile("pip-25.0-py3-none-any.whl", "d" * 64),
)


def load(tmp_path: Path, values: dict[str, object]) -> ProjectConfig:
    path = tmp_path / "grocker.yml"
    path.write_text(yaml.safe_dump(values))
    return api.load_config([path], cwd=tmp_path)


@pytest.fixture
def debian(tmp_path: Path) -> ProjectConfig:
    return load(
        tmp_path,
        {
            "dependencies": {"run": ["libpq5"], "build": ["libpq-dev"]},
            "repositories": {
                "nginx": {"uri": "deb http://nginx.org/packages/debian/ trixie nginx", "key": PGP_KEY},
                "pgdg": {
                    "uri": f"deb [arch=amd64 signed-by={OLD_KEYRING}] https://apt.example.com/ trixie main",
                    "key": PGP_KEY,
                },
            },
        },
    )


@pytest.fixture
def alpine(tmp_path: Path) -> ProjectConfig:
    return load(tmp_path, {"runtime": "alpine/3.12", "dependencies": {"run": ["libpq"], "build": ["postgresql-dev"]}})


def instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = dockerfile.replace("\\\n", " ")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def docker_env(instruction: str) -> dict[str, str]:
    """Parse `ENV K="v" K2=v2` as the Docker builder does (double quotes, `\\` escapes)."""
    assert instruction.startswith("ENV ")
    values: dict[str, str] = {}
    rest = instruction[4:]
    while rest.strip():
        match = re.match(r'\s*([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)', rest)
        assert match, rest
        raw = match.group(2)
        if raw.startswith('"'):
            # In double quotes the builder drops a backslash before `"`, `$` and `\` only.
            raw = re.sub(r'\\([\\"$])', r"\1", raw[1:-1])
        values[match.group(1)] = raw
        rest = rest[match.end() :]
    return values


def test_debian_root(debian: ProjectConfig) -> None:
    context = render.root_context(debian)
    provision = context.files["provision.sh"].decode()

    assert instructions(context.dockerfile)[0] == "FROM debian:trixie"
    assert 'GROCKER_RUNTIME="trixie/3.13"' in context.dockerfile
    assert "useradd --create-home --shell /bin/bash --uid 1000 grocker" in provision
    assert "apt-get install -y -q ca-certificates python3 libpq5\n" in provision
    assert "rm -rf /var/lib/apt/lists/*" in provision
    assert "apt-get clean" in provision
    for package in COMPILERS:
        assert package not in provision
    assert "pip" not in provision


def test_debian_root_keys_repositories_with_signed_by(debian: ProjectConfig) -> None:
    provision = render.root_context(debian).files["provision.sh"].decode()

    assert "apt-key" not in provision
    assert 'mkdir -p "$(dirname /etc/apt/keyrings/grocker-nginx.asc)"' in provision
    encoded = base64.b64encode(PGP_KEY.encode()).decode()
    assert f"echo {encoded} | base64 -d > /etc/apt/keyrings/grocker-nginx.asc\n" in provision
    assert (
        "echo 'deb [signed-by=/etc/apt/keyrings/grocker-nginx.asc] http://nginx.org/packages/debian/ trixie nginx'"
        " >> /etc/apt/sources.list.d/grocker-nginx.list"
    ) in provision
    # Existing options are kept, an existing signed-by is replaced by Grocker's keyring.
    assert (
        "echo 'deb [arch=amd64 signed-by=/etc/apt/keyrings/grocker-pgdg.asc] https://apt.example.com/ trixie main'"
    ) in provision
    assert "/usr/share/keyrings/old.gpg" not in provision
    # https sources need the CA bundle before apt reads them; keys go in before the update.
    assert provision.index("apt-get install -y -q ca-certificates") < provision.index("grocker-pgdg.list")
    assert provision.index("grocker-pgdg.list") < provision.rindex("apt-get update")
    assert provision.rindex("apt-get update") < provision.index("apt-get install -y -q ca-certificates python3 libpq5")


def test_debian_root_without_repositories(tmp_path: Path) -> None:
    provision = render.root_context(api.load_config([], cwd=tmp_path)).files["provision.sh"].decode()

    assert "keyrings" not in provision
    # Only as a run package (Debian's pip wheel, the runner's installer, reads the system CA
    # bundle), not installed early for https sources.
    assert "apt-get install -y -q ca-certificates\n" not in provision
    assert "sources.list.d" not in provision


def test_alpine_root(alpine: ProjectConfig) -> None:
    context = render.root_context(alpine)
    provision = context.files["provision.sh"].decode()

    assert instructions(context.dockerfile)[0] == "FROM alpine:3.22"
    assert "adduser -D -s /bin/sh -u 1000 grocker" in provision
    assert "apk add --no-cache python3 libpq\n" in provision
    assert "apt" not in provision
    for package in (*COMPILERS, "postgresql-dev"):
        assert package not in provision


@pytest.mark.parametrize(
    ("fixture", "install"),
    [
        ("debian", "apt-get install -y -q build-essential python3-dev python3-venv libpq-dev\n"),
        ("alpine", "apk add --no-cache build-base python3-dev py3-pip postgresql-dev\n"),
    ],
)
def test_compiler_adds_build_packages(request: pytest.FixtureRequest, fixture: str, install: str) -> None:
    config: ProjectConfig = request.getfixturevalue(fixture)

    context = render.compiler_context(config, ROOT)
    provision = context.files["provision.sh"].decode()

    assert instructions(context.dockerfile)[0] == f"FROM {ROOT}"
    assert install in provision
    # The wheelhouse's scripts are given to its containers when they run, never baked in.
    assert set(context.files) == {"Dockerfile", "provision.sh"}
    assert "COPY provision.sh /tmp/grocker/" in context.dockerfile
    assert "USER grocker" in instructions(context.dockerfile)


@pytest.mark.parametrize(
    ("fixture", "install"), [("debian", "apt-get install -y -q nginx"), ("alpine", "apk add --no-cache nginx")]
)
def test_wheel_server_installs_the_distribution_nginx_from_root(
    request: pytest.FixtureRequest, fixture: str, install: str
) -> None:
    config: ProjectConfig = request.getfixturevalue(fixture)

    context = render.wheel_server_context(config, ROOT)

    assert [line for line in instructions(context.dockerfile) if line.startswith("FROM ")] == [f"FROM {ROOT}"]
    assert install in context.files["provision.sh"].decode()
    assert "nginx -t -c /etc/grocker/nginx.conf" in context.files["provision.sh"].decode()
    assert b"root /wheels;" in context.files["nginx.conf"]
    assert 'ENTRYPOINT ["nginx", "-c", "/etc/grocker/nginx.conf"]' in context.dockerfile


def test_the_wheel_server_configuration_serves_only_allowed_files(debian: ProjectConfig) -> None:
    baked = render.wheel_server_context(debian, ROOT).files["nginx.conf"]
    config = render.wheel_server_config()

    # The same for every build, baked or written by the build: a file is served only when the
    # build allowed its name; anything else is a 404.
    assert baked == config
    text = " ".join(config.decode().split())
    assert "location / { if (!-f /tmp/grocker-served$uri) { return 404; } }" in text
    assert "root /wheels;" in text
    assert "autoindex off;" in text
    assert "disable_symlinks on;" in text
    assert text.count("location") == 1


def test_the_wheel_server_allows_the_lock_files_and_nothing_else() -> None:
    assert render.served_files(LOCK) == [
        "pip-25.0-py3-none-any.whl",
        "six-1.16.0-py2.py3-none-any.whl",
        "psycopg-3.2.0-cp313-cp313-manylinux_2_17_x86_64.whl",
        "myapp-1.0-py3-none-any.whl",
    ]


def test_the_wheel_server_allows_a_file_once() -> None:
    # An application that depends on pip: the installer's file is in the lock twice.
    lock = WheelLock(LOCK.application, (*LOCK.dependencies, LOCK.installer), LOCK.installer)

    assert render.served_files(lock).count("pip-25.0-py3-none-any.whl") == 1


@pytest.mark.parametrize(
    "hostile",
    [
        'evil-1.0-py3-none-any.whl"; } location / { root /; } location = "/x',
        "evil-1.0-py3-none-any.whl\nlocation / {",
        "../.grocker/locks/other.json",
        "evil-1.0-py3-none-any.whl;",
        "evil-1.0-py3-none-any.whl\n",
        "sub/evil-1.0-py3-none-any.whl",
    ],
)
def test_the_wheel_server_refuses_to_allow_a_name_that_is_not_a_wheel_file(hostile: str) -> None:
    lock = WheelLock(LOCK.application, (WheelFile(hostile, "b" * 64),), LOCK.installer)

    with pytest.raises(BuildError, match=r"is not a wheel file name and hash\. The wheel volume may have"):
        render.served_files(lock)


@pytest.mark.parametrize("fixture", ["debian", "alpine"])
def test_runner(request: pytest.FixtureRequest, tmp_path: Path, fixture: str) -> None:
    config: ProjectConfig = request.getfixturevalue(fixture)
    release = parse_release("MyApp[web]==1.0", tmp_path)

    context = render.runner_context(release, config, ROOT, LOCK)
    lines = instructions(context.dockerfile)

    assert list(context.files) == ["Dockerfile"]
    assert lines[0] == f"FROM {ROOT}"
    assert sum(line.startswith("FROM ") for line in lines) == 1
    assert "USER grocker" in lines
    assert "WORKDIR /home/grocker" in lines
    runs = [line for line in lines if line.startswith("RUN ")]
    # The entrypoint before the layers: a version bump finds that step in the build cache.
    assert lines.index('ENTRYPOINT ["grocker-runner"]') < lines.index(runs[0])
    assert len(runs) == 2
    dependencies, application = runs
    # Dependencies first, in their own layer, then the application in another.
    assert "http://grocker-wheels/six-1.16.0-py2.py3-none-any.whl " + "b" * 64 in dependencies
    assert "psycopg-3.2.0" in dependencies
    assert "myapp-1.0" not in dependencies
    assert "http://grocker-wheels/myapp-1.0-py3-none-any.whl " + "a" * 64 in application
    assert "six-" not in application
    assert f"{config.runtime.python} -m venv --without-pip /home/grocker/app.venv" in dependencies
    for run in runs:
        assert "--no-index" in run
        assert "--no-cache-dir" in run
        assert "http://grocker-wheels/" in run
        assert "/tmp" not in run
    # No app metadata before the dependency layer, so a new app version reuses that layer.
    app_env = lines.index(next(line for line in lines if line.startswith("ENV GROCKER_APP=")))
    assert lines.index(dependencies) < app_env < lines.index(application)
    assert docker_env(lines[app_env]) == {
        "GROCKER_APP": "myapp",
        "GROCKER_APP_EXTRAS": "web",
        "GROCKER_APP_VERSION": "1.0",
    }
    assert not any(line.startswith(("EXPOSE", "VOLUME")) for line in lines)
    for package in COMPILERS:
        assert package not in context.dockerfile


def test_runner_path_is_led_by_the_venv(debian: ProjectConfig, tmp_path: Path) -> None:
    lines = instructions(render.runner_context(parse_release("app==1.0", tmp_path), debian, ROOT, LOCK).dockerfile)

    first_env = next(line for line in lines if line.startswith("ENV "))
    assert docker_env(first_env)["PATH"] == "/home/grocker/app.venv/bin:$PATH"


def test_runner_env_ports_volumes_entrypoint(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        {
            "env": {
                "QUOTED": 'say "hi"',
                "DOLLAR": "$HOME/${USER}",
                "SPACED": "a b  c",
                "BACKSLASH": "C:\\dir\\",
                "EMPTY": "",
                "NUMBER": 45,
            },
            "ports": [8080, "53/udp"],
            "volumes": ["/data", "/cache dir"],
            "entrypoint_name": "my-runner",
        },
    )

    dockerfile = render.runner_context(parse_release("app==1.0", tmp_path), config, ROOT, LOCK).dockerfile
    lines = instructions(dockerfile)

    env_line = next(line for line in lines if line.startswith("ENV PATH="))
    assert docker_env(env_line) == {
        "PATH": "/home/grocker/app.venv/bin:$PATH",
        "QUOTED": 'say "hi"',
        "DOLLAR": "$HOME/${USER}",
        "SPACED": "a b  c",
        "BACKSLASH": "C:\\dir\\",
        "EMPTY": "",
        "NUMBER": "45",
    }
    # Set before the install, so the builds can see it.
    assert lines.index(env_line) < min(lines.index(line) for line in lines if line.startswith("RUN "))
    first_run = min(lines.index(line) for line in lines if line.startswith("RUN "))
    last_run = max(lines.index(line) for line in lines if line.startswith("RUN "))
    # Before the layers, so a version bump finds them in the build cache; the volumes after, since
    # a step's changes under a declared volume are discarded.
    assert lines.index("EXPOSE 8080 53/udp") < first_run
    assert lines.index('VOLUME ["/data", "/cache dir"]') > last_run
    entrypoint = next(line for line in lines if line.startswith("ENTRYPOINT "))
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["my-runner"]
    assert lines.index(entrypoint) < first_run


def test_runner_for_a_python_org_runtime_uses_its_interpreter(tmp_path: Path) -> None:
    config = api.load_config([], cwd=tmp_path, overrides={"runtime": "trixie/3.14"})

    dockerfile = render.runner_context(parse_release("app==1.0", tmp_path), config, ROOT, LOCK).dockerfile

    assert "/usr/local/bin/python3 -m venv --without-pip /home/grocker/app.venv" in dockerfile


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("$HOME", '"\\$HOME"'),
        ("a b", '"a b"'),
        ("back\\slash", '"back\\\\slash"'),
    ],
)
def test_envquote(value: str, quoted: str) -> None:
    assert render.envquote(value) == quoted
    assert docker_env(f"ENV X={quoted}") == {"X": value}


def test_placeholder_lock_renders_for_dry_run(debian: ProjectConfig, tmp_path: Path) -> None:
    release = parse_release("my-app==2.0", tmp_path)

    dockerfile = render.runner_context(release, debian, ROOT, render.placeholder_lock(release)).dockerfile

    assert "my_app-2.0-py3-none-any.whl" in dockerfile
    assert 'ENTRYPOINT ["grocker-runner"]' in dockerfile


def _runs(dockerfile: str) -> list[str]:
    return [line for line in instructions(dockerfile) if line.startswith("RUN ")]


def test_runner_layers_are_made_reproducible(debian: ProjectConfig, tmp_path: Path) -> None:
    release = parse_release("app==1.0", tmp_path)

    runs = _runs(render.runner_context(release, debian, ROOT, LOCK).dockerfile)

    for run in runs:
        steps = re.split(r"\s+&&\s+", run.removeprefix("RUN "))
        # Temporary files (the wheels, pip's) under the home only, removed before the times are set.
        assert steps[1:4] == [
            "mkdir /home/grocker/.grocker-tmp",
            ": > /home/grocker/.grocker-tmp/.started",
            "export TMPDIR=/home/grocker/.grocker-tmp",
        ]
        # pip compiles hash-based .pyc files (PEP 552) when SOURCE_DATE_EPOCH is set.
        assert "export SOURCE_DATE_EPOCH=$newest" in steps
        assert steps.index("export SOURCE_DATE_EPOCH=$newest") < next(
            index for index, step in enumerate(steps) if " install " in step
        )
        assert steps[-1].endswith(' /home/grocker "$SOURCE_DATE_EPOCH" /home/grocker/.grocker-tmp/.started')
        assert "/tmp" not in run


def test_runner_takes_the_given_source_date_epoch(debian: ProjectConfig, tmp_path: Path) -> None:
    release = parse_release("app==1.0", tmp_path)

    runs = _runs(render.runner_context(release, debian, ROOT, LOCK, source_date_epoch=1700000000).dockerfile)

    assert len(runs) == 2
    for run in runs:
        assert "export SOURCE_DATE_EPOCH=1700000000" in re.split(r"\s+&&\s+", run)
        assert "$newest" not in run.split("SOURCE_DATE_EPOCH=", 1)[1]


@pytest.mark.parametrize("epoch", [0, 315532799, 253402300800])
def test_runner_refuses_an_epoch_no_file_can_record(debian: ProjectConfig, tmp_path: Path, epoch: int) -> None:
    release = parse_release("app==1.0", tmp_path)

    with pytest.raises(ConfigError, match=r"SOURCE_DATE_EPOCH .* from 315532800 \(1980-01-01\)"):
        render.runner_context(release, debian, ROOT, LOCK, source_date_epoch=epoch)


def _wheel(path: Path, when: tuple[int, int, int, int, int, int]) -> str:
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(zipfile.ZipInfo("a/__init__.py", (1980, 1, 1, 0, 0, 0)), b"")
        wheel.writestr(zipfile.ZipInfo("a-1.0.dist-info/RECORD", when), b"")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a runner step's script the way the RUN line does: `python -c 'exec(...)' ARGS`."""
    script = shlex.split(render._script(code))[0]
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=False)


def test_fetch_checks_each_file_and_prints_the_newest_time_of_the_wheels(tmp_path: Path) -> None:
    installer = tmp_path / "pip-25.1-py3-none-any.cpython313.zip"
    installer_sha256 = _wheel(installer, (2030, 1, 2, 3, 4, 6))
    source = tmp_path / "a-1.0-py3-none-any.whl"
    sha256 = _wheel(source, (2024, 5, 6, 7, 8, 10))
    first = (installer.as_uri(), installer_sha256, str(tmp_path / "pip.zip"))
    target = tmp_path / "fetched.whl"

    fetched = _python(render._FETCH, *first, source.as_uri(), sha256, str(target))
    installer_only = _python(render._FETCH, *first)
    tampered = _python(render._FETCH, *first, source.as_uri(), "0" * 64, str(tmp_path / "other.whl"))
    tampered_installer = _python(render._FETCH, installer.as_uri(), "0" * 64, str(tmp_path / "pip2.zip"))

    assert fetched.returncode == 0, fetched.stderr
    # ZIP times are read as UTC: the same wheel gives the same epoch on every machine. The
    # installer's times do not count: the layer does not hold it.
    assert int(fetched.stdout) == int(datetime.datetime(2024, 5, 6, 7, 8, 10, tzinfo=datetime.timezone.utc).timestamp())
    assert target.read_bytes() == source.read_bytes()
    assert (tmp_path / "pip.zip").read_bytes() == installer.read_bytes()
    assert int(installer_only.stdout) == render.MIN_EPOCH
    for refused in (tampered, tampered_installer):
        assert refused.returncode != 0
        assert "not the SHA-256 of the lock" in refused.stderr


def test_settle_sets_the_times_of_what_the_step_changed_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "venv" / "lib").mkdir(parents=True)
    below = home / "venv" / "lib" / "six.py"
    below.write_text("# from the layer below")
    os.utime(below, (1_600_000_000, 1_600_000_000))
    time.sleep(0.05)  # the layer below was written before the step started
    temporary = home / ".grocker-tmp"
    temporary.mkdir()
    marker = temporary / ".started"
    marker.write_text("")
    (home / "venv" / "lib" / "app.py").write_text("# made by the step")
    (home / "venv" / "bin").mkdir()
    (home / "venv" / "bin" / "python").symlink_to("/nonexistent/python3")

    settled = _python(render._SETTLE, str(home), "1700000000", str(marker))

    assert settled.returncode == 0, settled.stderr
    assert not temporary.exists()
    assert below.stat().st_mtime == 1_600_000_000
    for changed in (home, home / "venv" / "lib", home / "venv" / "lib" / "app.py", home / "venv" / "bin"):
        assert changed.stat().st_mtime == 1_700_000_000, changed
    assert (home / "venv" / "bin" / "python").lstat().st_mtime == 1_700_000_000


TOOL = WheelFile("installer-1.1.0.cpython313.zip", "e" * 64)


def test_the_runner_installs_with_the_wheel_installer_when_the_lock_has_it(debian: ProjectConfig) -> None:
    compiled = WheelFile("pip-25.0-py3-none-any.cpython313.zip", "f" * 64)
    lock = replace(LOCK, installer_compiled=compiled, wheel_installer=TOOL)
    dockerfile = render.runner_context(parse_release("myapp==1.0", Path.cwd()), debian, ROOT, lock).dockerfile

    runs = [line for line in dockerfile.replace(" \\\n", " ").splitlines() if line.startswith("RUN ")]
    assert len(runs) == 2
    for run in runs:
        # The installer is fetched (and checked) first, then run from its archive by the venv's
        # Python: pip is neither fetched nor run.
        assert "http://grocker-wheels/installer-1.1.0.cpython313.zip " + "e" * 64 in run
        assert "/home/grocker/app.venv/bin/python -c " in run
        assert "/home/grocker/.grocker-tmp/installer-1.1.0.cpython313.zip /home/grocker/.grocker-tmp/" in run
        # (The programs' own text may mention pip: no pip file is fetched, no pip command runs.)
        assert not re.search(r"/pip-[^ ]*\.(?:whl|zip) |/pip\b[^-]| -m pip\b", run)
    assert render.served_files(lock)[0] == TOOL.file
    assert lock.runner_installer == TOOL


@pytest.mark.parametrize(
    "hostile", ["installer-1.1.0.cpython313.zip; rm -rf /", "installer-x.cpython313.zip", "../x.zip"]
)
def test_a_wheel_installer_name_that_is_not_one_is_refused(debian: ProjectConfig, hostile: str) -> None:
    lock = replace(LOCK, wheel_installer=WheelFile(hostile, "e" * 64))

    with pytest.raises(BuildError, match=r"is not a wheel file name and hash"):
        render.runner_context(parse_release("myapp==1.0", Path.cwd()), debian, ROOT, lock)
    with pytest.raises(BuildError, match=r"as the runner's wheel installer, which is not one"):
        check_lock(lock, "myapp")


def test_the_wheel_server_mount_point_belongs_to_grocker(debian: ProjectConfig) -> None:
    provision = render.wheel_server_context(debian, ROOT).files["provision.sh"].decode()

    # The wheel server may be the first container to mount a new wheel volume (it starts while
    # the compile does): the volume takes its mount point's owner, and the publisher is grocker.
    assert "chown grocker:grocker /wheels\n" in provision
