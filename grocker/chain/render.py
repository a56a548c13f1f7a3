"""Build contexts of the four images, rendered from package templates. Pure: no engine, no I/O
besides reading the templates."""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from urllib.parse import quote

import jinja2

from grocker import layout
from grocker._version import __version__
from grocker.config import ProjectConfig, Repository
from grocker.config.families import Family, family_of
from grocker.config.release import Release
from grocker.errors import BuildError, ConfigError
from grocker.labels import COMPILER, MINIMAL_BASE, ROOT, RUNNER, WHEEL_SERVER, ImageRole
from grocker.wheels import (
    COMPILED_INSTALLER_RE,
    SHA256_RE,
    WHEEL_INSTALLER_RE,
    WHEEL_NAME_RE,
    WheelFile,
    WheelLock,
)
from grocker.wire.minimal import MinimalRequest
from grocker.wire.runner import MAX_EPOCH, MIN_EPOCH

WHEEL_SERVER_HOST = "grocker-wheels"
WHEEL_SERVER_URL = f"http://{WHEEL_SERVER_HOST}"
WHEEL_SERVER_ALLOWED = "/tmp/grocker-served"
"""In the wheel server's container: an empty file per name of the volume it serves (see `served_files`)."""
HOME = "/home/grocker"
APP_VENV = f"{HOME}/app.venv"
TEMP_DIR = f"{HOME}/.grocker-tmp"
"""Where a runner step downloads its wheels and pip keeps its temporary files: removed at its end."""
MARKER = f"{TEMP_DIR}/.started"
GROCKER_UID = 1000


@dataclass(frozen=True)
class BuildContext:
    """The files of one image's build context; `Dockerfile` among them."""

    role: ImageRole
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def dockerfile(self) -> str:
        """The rendered Dockerfile, as text."""
        return self.files["Dockerfile"].decode("utf-8")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("grocker", "resources"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - Dockerfiles and shell scripts, not HTML
    )
    env.filters["shquote"] = shlex.quote
    env.filters["envquote"] = envquote
    env.filters["tojson"] = lambda value: json.dumps(value)
    return env


def envquote(value: str) -> str:
    """Quote a value for a Dockerfile ENV instruction: no expansion, no word splitting."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("\n", "\\n")
    return f'"{escaped}"'


_ENV = _environment()


def _render(template: str, **context: object) -> bytes:
    return _ENV.get_template(template).render(version=__version__, **context).encode("utf-8")


def _provision(template: str, config: ProjectConfig, **context: object) -> bytes:
    """A provisioning script: the family's commands around what `template` adds."""
    return _render(template, runtime=config.runtime, family=family_of(config.runtime.family), **context)


def root_context(config: ProjectConfig) -> BuildContext:
    """The root image: base image, repositories, run packages, user grocker."""
    family = family_of(config.runtime.family)
    repositories = [_repository_view(family, repo) for repo in config.repositories]
    https = any(" https://" in f" {repo.uri}" for repo in config.repositories)
    return BuildContext(
        ROOT,
        {
            "Dockerfile": _render("root/Dockerfile.j2", runtime=config.runtime),
            "provision.sh": _provision(
                "root/provision.sh.j2",
                config,
                repositories=repositories,
                https_packages=list(family.https_packages) if https else [],
                packages=list(dict.fromkeys(family.root_packages + config.all_run_packages)),
                add_user=family.add_user.format(uid=GROCKER_UID),
            ),
        },
    )


def compiler_context(config: ProjectConfig, root_image: str) -> BuildContext:
    """The compiler image: root plus build packages and the compile script."""
    return BuildContext(
        COMPILER,
        {
            "Dockerfile": _render("compiler/Dockerfile.j2", runtime=config.runtime, root_image=root_image),
            "provision.sh": _provision(
                "compiler/provision.sh.j2", config, packages=list(config.all_build_packages), layout=layout
            ),
        },
    )


def minimal_context(config: ProjectConfig, root_image: str) -> BuildContext:
    """The minimal base: stage 1 FROM root assembles the kept packages' files, stage 2 FROM scratch copies them."""
    request: MinimalRequest = {
        "packages": list(config.all_run_packages),
        "python": config.runtime.python,
        "home": HOME,
    }
    return BuildContext(
        MINIMAL_BASE,
        {
            "Dockerfile": _render("minimal/Dockerfile.j2", runtime=config.runtime, root_image=root_image),
            "assemble.py": resources.files("grocker").joinpath("resources/minimal/assemble.py").read_bytes(),
            "request.json": json.dumps(request, sort_keys=True, indent=1).encode("utf-8") + b"\n",
        },
    )


def wheel_server_context(config: ProjectConfig, root_image: str) -> BuildContext:
    """The wheel server: root plus the distribution's nginx, its configuration serving nothing yet.

    Each build allows the files of its own lock (`served_files`).
    """
    return BuildContext(
        WHEEL_SERVER,
        {
            "Dockerfile": _render("wheel-server/Dockerfile.j2", runtime=config.runtime, root_image=root_image),
            "provision.sh": _provision("wheel-server/provision.sh.j2", config, layout=layout),
            "nginx.conf": wheel_server_config(),
        },
    )


def wheel_server_config() -> bytes:
    """The wheel server's nginx configuration: a file of the volume is served only once it is allowed.

    The same for every build (each one writes it into its server, so that an image baked by an
    older Grocker serves the same way): a file is allowed by an empty file of its name in
    WHEEL_SERVER_ALLOWED (see `served_files`); anything else is a 404.
    """
    return _render("wheel-server/nginx.conf.j2", layout=layout, allowed_dir=WHEEL_SERVER_ALLOWED)


def served_files(lock: WheelLock) -> list[str]:
    """The names of the files the wheel server allows for `lock`: what the runner's steps fetch.

    Every name is checked as a wheel file name (or the compiled installer's) before it becomes a
    file name in the server.
    """
    files = [_checked_installer(lock.runner_installer).file]
    files += [_checked(wheel).file for wheel in (*lock.dependencies, lock.application)]
    return list(dict.fromkeys(files))


def runner_context(
    release: Release,
    config: ProjectConfig,
    root_image: str,
    lock: WheelLock,
    labels: Mapping[str, str] | None = None,
    source_date_epoch: int | None = None,
) -> BuildContext:
    """The final image: root plus a venv installed from the wheel server, in two layers, then its labels.

    Both layers are reproducible: their files' times are set to `source_date_epoch` or, without
    it, to the newest time recorded in the wheels each layer installs (see `_install_command`).
    """
    python = config.runtime.python
    if source_date_epoch is not None:
        check_source_date_epoch(source_date_epoch)
    # The minimal base has no shell: its steps are one Python program each, in exec form.
    command = _install_exec if config.runner == "minimal" else _install_command

    def install(wheels: Sequence[WheelFile], create_venv: bool) -> str:
        return command(python, lock.runner_installer, wheels, create_venv, source_date_epoch)

    return BuildContext(
        RUNNER,
        {
            "Dockerfile": _render(
                "runner/Dockerfile.j2",
                home=HOME,
                app_venv=APP_VENV,
                runtime=config.runtime,
                root_image=root_image,
                release=release,
                app_version=lock.app_version,
                lock=lock,
                install=install,
                env=list(config.env),
                ports=list(config.ports),
                volumes=list(config.volumes),
                entrypoint=config.entrypoint_name,
                labels=sorted((labels or {}).items()),
            )
        },
    )


def placeholder_lock(release: Release) -> WheelLock:
    """A stand-in lock for --dry-run, where the compile step has not resolved anything."""
    version = release.version or "VERSION"
    return WheelLock(
        application=WheelFile(f"{re.sub(r'[-_.]+', '_', release.name)}-{version}-py3-none-any.whl", "0" * 64),
        dependencies=(WheelFile("each_dependency_resolved_by_the_compile_step-VERSION-py3-none-any.whl", "0" * 64),),
        installer=WheelFile("pip-VERSION-py3-none-any.whl", "0" * 64),
    )


def _install_command(
    python: str, installer: WheelFile, wheels: Sequence[WheelFile], create_venv: bool, epoch: int | None
) -> str:
    """One reproducible layer: the same wheels (and epoch) give the same files, times and bytecode.

    The wheels are downloaded (checked against the lock's hashes) into a temporary folder under
    the home, so that nothing outside it changes; SOURCE_DATE_EPOCH makes pip compile hash-based
    .pyc files (PEP 552); at the end the temporary folder goes and the time of everything the
    step created or changed under the home is set to the epoch.
    """
    python = shlex.quote(python)
    installer = _checked_installer(installer)
    wheels = [_checked(wheel) for wheel in wheels]
    # An http_proxy set in `env` must not catch the wheel server.
    no_proxy = (
        f'export no_proxy="{WHEEL_SERVER_HOST}${{no_proxy:+,$no_proxy}}" '
        f'NO_PROXY="{WHEEL_SERVER_HOST}${{NO_PROXY:+,$NO_PROXY}}"'
    )
    # The installer first (checked against the lock's hash before it runs, as the wheels are),
    # then the layer's wheels, whose newest time is the layer's epoch.
    fetch = " ".join(
        [python, "-c", _script(_FETCH)]
        + [
            shlex.quote(part)
            for file in (installer, *wheels)
            for part in (_url(file), file.sha256, f"{TEMP_DIR}/{file.file}")
        ]
    )
    steps = [
        no_proxy,
        f"mkdir {TEMP_DIR}",
        f": > {MARKER}",
        f"export TMPDIR={TEMP_DIR}",
        f"newest=$({fetch})",
        f"export SOURCE_DATE_EPOCH={epoch if epoch is not None else '$newest'}",
    ]
    if create_venv:
        steps.append(f"{python} -m venv --without-pip {APP_VENV}")
    if wheels:
        # The installer runs from its archive with the venv's interpreter, so it installs into
        # the venv without being installed there itself.
        files = " ".join(shlex.quote(f"{TEMP_DIR}/{wheel.file}") for wheel in wheels)
        archive = shlex.quote(f"{TEMP_DIR}/{installer.file}")
        if WHEEL_INSTALLER_RE.fullmatch(installer.file):
            steps.append(f"{APP_VENV}/bin/python -c {_script(_INSTALL)} {archive} {files}")
        else:  # a lock written before the publisher made the wheel installer: pip
            pip = shlex.quote(f"{TEMP_DIR}/{installer.file}/pip")
            steps.append(
                f"{APP_VENV}/bin/python {pip} install --no-index --no-deps --no-cache-dir "
                f"--disable-pip-version-check --no-warn-script-location --quiet {files}"
            )
    steps.append(f'{python} -c {_script(_SETTLE)} {HOME} "$SOURCE_DATE_EPOCH" {MARKER}')
    return " \\\n    && ".join(steps)


def _install_exec(
    python: str, installer: WheelFile, wheels: Sequence[WheelFile], create_venv: bool, epoch: int | None
) -> str:
    """The same layer as `_install_command`, as a RUN in exec form: one Python program, no shell.

    The program (_STEP) runs the same scripts (_FETCH, _INSTALL, _SETTLE) in the same order with
    the same environment; its one argument is a JSON object of what the shell line held.
    """
    installer = _checked_installer(installer)
    wheels = [_checked(wheel) for wheel in wheels]
    files = [f"{TEMP_DIR}/{wheel.file}" for wheel in wheels]
    archive = f"{TEMP_DIR}/{installer.file}"
    install: list[str] = []
    if wheels and WHEEL_INSTALLER_RE.fullmatch(installer.file):
        install = [f"{APP_VENV}/bin/python", "-c", _INSTALL.strip(), archive, *files]
    elif wheels:  # a lock written before the publisher made the wheel installer: pip
        install = [f"{APP_VENV}/bin/python", f"{archive}/pip", "install", "--no-index", "--no-deps"]
        install += ["--no-cache-dir", "--disable-pip-version-check", "--no-warn-script-location", "--quiet", *files]
    spec = {
        "host": WHEEL_SERVER_HOST,
        "temp": TEMP_DIR,
        "marker": MARKER,
        "home": HOME,
        "fetch": _FETCH.strip(),
        "files": [
            part for file in (installer, *wheels) for part in (_url(file), file.sha256, f"{TEMP_DIR}/{file.file}")
        ],
        "epoch": str(epoch) if epoch is not None else "",
        "venv": APP_VENV if create_venv else "",
        "install": install,
        "settle": _SETTLE.strip(),
    }
    return json.dumps([python, "-c", _STEP.strip(), json.dumps(spec, sort_keys=True)])


def check_source_date_epoch(epoch: int) -> int:
    """Refuse an epoch that cannot be a file time of the runner's layers (before 1980 or after 9999)."""
    if not MIN_EPOCH <= epoch <= MAX_EPOCH:
        raise ConfigError(
            f"SOURCE_DATE_EPOCH {epoch} is not a date that ZIP files and .pyc files can record: give a "
            f"number of seconds since 1970 from {MIN_EPOCH} (1980-01-01) to {MAX_EPOCH} (9999-12-31), "
            "or unset it to let Grocker derive one from the wheels."
        )
    return epoch


def _script(code: str) -> str:
    """Python code as one shell word on one Dockerfile line (a RUN cannot hold raw newlines)."""
    return shlex.quote(f"exec({code.strip()!r})")


def _program(name: str) -> str:
    """The text of a runner layer's program, resources/install/NAME.py (see that folder)."""
    return resources.files("grocker").joinpath(f"resources/install/{name}.py").read_text("utf-8")


# The runner layers' programs, run with `python -c`: fetch URL SHA256 PATH..., install ARCHIVE
# WHEEL..., settle TOP EPOCH MARKER; step SPEC runs the three without a shell (the minimal runner).
_FETCH = _program("fetch")
_INSTALL = _program("install")
_SETTLE = _program("settle")
_STEP = _program("step")


def _checked(wheel: WheelFile) -> WheelFile:
    """The wheel, once its name and hash are known to be plain values (never shell or Dockerfile syntax)."""
    if not WHEEL_NAME_RE.fullmatch(wheel.file) or not SHA256_RE.fullmatch(wheel.sha256):
        raise BuildError(
            f"The wheel lock names the file {wheel.file!r} with SHA-256 {wheel.sha256!r}, which is not a "
            "wheel file name and hash. The wheel volume may have been tampered with: remove it "
            "(`grocker purge -a`) and build again."
        )
    return wheel


def _checked_installer(installer: WheelFile) -> WheelFile:
    """The runner's installer (pypa/installer, or a pip wheel or its compiled form), once its name
    and hash are plain values."""
    named = COMPILED_INSTALLER_RE.fullmatch(installer.file) or WHEEL_INSTALLER_RE.fullmatch(installer.file)
    if named and SHA256_RE.fullmatch(installer.sha256):
        return installer
    return _checked(installer)


def _url(checked: WheelFile) -> str:
    """The wheel server's URL of a file whose name `_checked` or `_checked_installer` accepted."""
    return f"{WHEEL_SERVER_URL}/{quote(checked.file)}"


@dataclass(frozen=True)
class _RepositoryView:
    key_file: str
    key_base64: str
    """The key travels base64-encoded: no content can end its quoting in the script."""
    source_file: str
    line: str


def _repository_view(family: Family, repo: Repository) -> _RepositoryView:
    """Where the family keeps the repository's key and line, and the line to write there."""
    return _RepositoryView(
        key_file=family.key_file.format(id=repo.id),
        key_base64=base64.b64encode(repo.key.encode("utf-8")).decode("ascii"),
        source_file=family.source_file.format(id=repo.id),
        line=family.source_line(repo.id, repo.uri),
    )
