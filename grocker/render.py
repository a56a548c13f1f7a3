"""Build contexts of the four images, rendered from package templates. Pure: no engine, no I/O
besides reading the templates."""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import jinja2

from grocker import __version__, layout
from grocker.config import ProjectConfig, Repository
from grocker.errors import BuildError
from grocker.families import Family, family_of
from grocker.labels import COMPILER, ROOT, RUNNER, WHEEL_SERVER, ImageRole
from grocker.release import Release
from grocker.wheels import SHA256_RE, WHEEL_NAME_RE, WheelFile, WheelLock

WHEEL_SERVER_HOST = "grocker-wheels"
WHEEL_SERVER_URL = f"http://{WHEEL_SERVER_HOST}"
APP_VENV = "/home/grocker/app.venv"
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


def wheel_server_context(config: ProjectConfig, root_image: str) -> BuildContext:
    """The wheel server: root plus the distribution's nginx, its baked configuration serving nothing.

    Each build replaces the configuration with `wheel_server_config` of its own lock.
    """
    return BuildContext(
        WHEEL_SERVER,
        {
            "Dockerfile": _render("wheel-server/Dockerfile.j2", runtime=config.runtime, root_image=root_image),
            "provision.sh": _provision("wheel-server/provision.sh.j2", config, layout=layout),
            "nginx.conf": _render("wheel-server/nginx.conf.j2", layout=layout, files=[]),
        },
    )


def wheel_server_config(lock: WheelLock) -> bytes:
    """The nginx configuration of one build: the files `lock` names, and a 404 for anything else.

    Every name is checked as a wheel file name before it reaches the configuration, where it is
    quoted; an exact-match location serves it.
    """
    wheels = [lock.installer, *lock.dependencies, lock.application]
    files = list(dict.fromkeys(_checked(wheel).file for wheel in wheels))
    return _render("wheel-server/nginx.conf.j2", layout=layout, files=files)


def runner_context(
    release: Release,
    config: ProjectConfig,
    root_image: str,
    lock: WheelLock,
    labels: Mapping[str, str] | None = None,
) -> BuildContext:
    """The final image: root plus a venv installed from the wheel server, in two layers, then its labels."""
    python = config.runtime.python

    def install(wheels: Sequence[WheelFile], create_venv: bool) -> str:
        return _install_command(python, lock.installer, wheels, create_venv)

    return BuildContext(
        RUNNER,
        {
            "Dockerfile": _render(
                "runner/Dockerfile.j2",
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


def _install_command(python: str, installer: WheelFile, wheels: Sequence[WheelFile], create_venv: bool) -> str:
    python = shlex.quote(python)
    pip_wheel = shlex.quote(f"/tmp/{_checked(installer).file}")
    # The installer is checked against the lock's hash before it runs, as pip checks the others.
    download = " ".join(
        [python, "-c", shlex.quote(_DOWNLOAD), shlex.quote(_url(installer)), installer.sha256, pip_wheel]
    )
    # An http_proxy set in `env` must not catch the wheel server.
    no_proxy = (
        f'export no_proxy="{WHEEL_SERVER_HOST}${{no_proxy:+,$no_proxy}}" '
        f'NO_PROXY="{WHEEL_SERVER_HOST}${{NO_PROXY:+,$NO_PROXY}}"'
    )
    steps = [no_proxy, download]
    if create_venv:
        steps.append(f"{python} -m venv --without-pip {APP_VENV}")
    if wheels:
        # pip runs from its wheel with the venv's interpreter, so it installs into the venv
        # without being installed there itself; every wheel is checked against its hash.
        urls = " ".join(shlex.quote(f"{_url(wheel)}#sha256={_checked(wheel).sha256}") for wheel in wheels)
        steps.append(
            f"{APP_VENV}/bin/python {pip_wheel}/pip install --no-index --no-deps --no-cache-dir "
            f"--disable-pip-version-check --no-warn-script-location --quiet {urls}"
        )
    steps.append(f"rm -f {pip_wheel}")
    return " \\\n    && ".join(steps)


_DOWNLOAD = (
    "import hashlib, sys, urllib.request; data = urllib.request.urlopen(sys.argv[1]).read(); "
    "hashlib.sha256(data).hexdigest() == sys.argv[2] or sys.exit(sys.argv[1] + ': not the SHA-256 of the lock'); "
    "open(sys.argv[3], 'wb').write(data)"
)


def _checked(wheel: WheelFile) -> WheelFile:
    """The wheel, once its name and hash are known to be plain values (never shell or Dockerfile syntax)."""
    if not WHEEL_NAME_RE.fullmatch(wheel.file) or not SHA256_RE.fullmatch(wheel.sha256):
        raise BuildError(
            f"The wheel lock names the file {wheel.file!r} with SHA-256 {wheel.sha256!r}, which is not a "
            "wheel file name and hash. The wheel volume may have been tampered with: remove it "
            "(`grocker purge -a`) and build again."
        )
    return wheel


def _url(wheel: WheelFile) -> str:
    return f"{WHEEL_SERVER_URL}/{quote(_checked(wheel).file)}"


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
