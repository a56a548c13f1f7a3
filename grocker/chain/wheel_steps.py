"""The wheelhouse's containers: the compiler image's containers, their inputs, the publisher's
runs, and the isolated sdist builds (`WheelSteps`, which grocker.chain.wheelhouse's compile extends).

Every container here runs as user grocker in the compiler image with the build's pip settings.
The publisher (trusted: no package code) mounts the wheel and candidates volumes; an sdist's
build (untrusted) mounts only a fresh outbox volume of its own.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from grocker import labels as keys
from grocker import layout
from grocker.chain.abi import package_sources
from grocker.chain.background import Background
from grocker.chain.session import Session
from grocker.chain.wheel_report import (
    PublishResult,
    ReportItem,
    Totals,
    compile_advice,
    is_sdist_of,
    parse_publish,
    publisher_settings,
)
from grocker.config.pipconf import mask
from grocker.engine.protocol import Container
from grocker.errors import BuildError, GrockerError
from grocker.log import logger, phase, tail
from grocker.naming import internal_labels
from grocker.wire.wheelhouse import PublishPaths

INPUT_DIR = "/tmp/grocker-input"
"""Where each wheelhouse container finds its request, pip settings, certificates and script."""
PYTHON = "/opt/grocker/venv/bin/python"
SDISTS_DIR = "/tmp/grocker-sdists"
LINKS_DIR = "/tmp/grocker-candidates"
"""Where the resolve links the candidates volume's wheels for pip (its container's own folder)."""


class WheelSteps:
    """The containers one compile runs, and what it shares between them (its session's parts, inputs)."""

    def __init__(self, session: Session, publisher: Background[Container] | None) -> None:
        from grocker.chain import fleet as fleets  # requests and oras-py only when a build runs

        self.session = session
        self.publisher = publisher
        self.engine = session.engine
        self.config = session.config
        self.names = session.names
        self.request = session.request
        self.secrets = session.secrets
        self.inputs, self.settings = compile_inputs(session)
        self.fleet = fleets.for_session(session)
        self.compiled: list[str] = []
        """The projects (canonical names) whose wheels this build compiled from their sdists."""
        self._readers = contextlib.ExitStack()
        """The lock's reader, kept until the resolve has run: the engine's lease then runs on (grocker.engine.lease)."""

    def on_line(self, line: str) -> None:
        """A line of a compile container: the resolve's first says it runs (`Session.resolving`)."""
        self.session.resolving.set()
        self.session.stream_line(line)

    def _container(
        self, role: keys.Role, entrypoint: Sequence[str], volumes: Mapping[str, tuple[str, str]]
    ) -> contextlib.AbstractContextManager[Container]:
        return compiler_container(self.session, role, entrypoint, volumes)

    def _release_publisher(self) -> None:
        """Remove the waiting publisher's container in the background: this compile is done with it."""
        if self.publisher is not None:
            self.publisher.release()

    def _put(self, container: Container, extra: Mapping[str, bytes]) -> None:
        files = {**self.inputs, **extra}
        container.put_files("/tmp", {f"grocker-input/{path}": content for path, content in files.items()})

    def _publish(
        self,
        request: Mapping[str, Any],
        outboxes: Sequence[str],
        standby: Background[Container] | None = None,
        fetched: Mapping[str, bytes] | None = None,
    ) -> PublishResult:
        """Run the publisher once: the wheel volume read-write, outboxes read-only.

        In the `standby` container when there are no outboxes (it mounts none), else in its own.
        `fetched`: the files of the fleet's registry (grocker.chain.fleet), put in the container's input.
        """
        compiler = self.engine.image(self.names.compiler)
        # Recorded with each wheel built here from an sdist, for the SBOM.
        content = {**self.settings, **request, "compiler_image": compiler.id if compiler else None}
        content["wheel_installer"] = {"version": wheel_installer_version(), "folder": f"{INPUT_DIR}/{_INSTALLER_DIR}"}
        content["paths"] = PublishPaths(
            wheels=layout.COMPILE_MOUNT, candidates=layout.CANDIDATES_MOUNT, sdists=SDISTS_DIR
        )
        command = [PYTHON, "-I", f"{INPUT_DIR}/publish.py", f"{INPUT_DIR}/publish.json"]
        files = {"publish.json": json.dumps(content).encode(), **(fetched or {})}
        if standby is not None and not outboxes:
            # The inputs and the program are in already (see `standby_inputs`): only the request goes in.
            container = standby.result()
            container.put_files("/tmp", {f"grocker-input/{path}": data for path, data in files.items()})
            status, lines = container.execute(command, self.on_line)
            return self._published(container, status, lines)
        files.update(publisher_program())
        volumes = publisher_volumes(self.session)
        volumes.update({outbox: (f"/outbox/{index}", "ro") for index, outbox in enumerate(outboxes)})
        with self._container(keys.PUBLISH, command, volumes) as container:
            self._put(container, files)
            status, lines = container.run(self.on_line)
            return self._published(container, status, lines)

    def _published(self, container: Container, status: int, lines: list[str]) -> PublishResult:
        """What the publisher did, from its output, with the sdists it downloaded into `container`."""
        data = parse_publish(lines) if status == 0 else None
        if data is None:
            raise BuildError(
                f"Publishing the wheels of {self.request.release.requirement} failed (exit status "
                f"{status}). The publisher checks every file against its index before the wheel "
                "volume takes it; its output says which file failed and why:",
                details=mask(tail(lines), self.secrets),
            )
        sdists = []
        for entry in data.get("sdists", []):
            item = ReportItem(entry["name"], entry["version"], entry["filename"], in_volume=False)
            if not is_sdist_of(item.filename, item.name, item.version):
                raise BuildError(f"The publisher returned {item.filename!r}, not an sdist of {item.name}.")
            downloaded = container.get_file(f"{SDISTS_DIR}/{item.filename}")
            if downloaded is None:
                raise BuildError(f"The publisher downloaded {item.filename} but it is not in its container.")
            sdists.append((item, downloaded))
        for warning in data.get("warnings", []):
            logger.warning("%s", mask(warning, self.secrets))
        for ignored in data.get("ignored", []):
            logger.debug("ignored in an sdist build's output: %s", ignored)
        return PublishResult(
            added=tuple(data.get("added", [])),
            reused=tuple(data.get("reused", [])),
            wheels=dict(data.get("wheels", {})),
            lock=data.get("lock"),
            sdists=tuple(sdists),
            warnings=tuple(data.get("warnings", [])),
            ignored=tuple(data.get("ignored", [])),
        )

    def _build_and_collect(
        self,
        builds: Sequence[tuple[ReportItem, bytes, bool]],
        wheels: Mapping[str, str],
        lock_request: Mapping[str, Any],
        totals: Totals,
        fetched: Sequence[Mapping[str, Any]] = (),
    ) -> Mapping[str, Any] | None:
        """Build each sdist in its own container and outbox, then publish their wheels and the lock.

        `fetched`: wheels of the fleet's registry that stand for sdist builds (`_from_fleet`).
        """
        with contextlib.ExitStack() as stack:
            outboxes = []
            collect = [dict(entry["collect"]) for entry in fetched]
            files = {path: content for entry in fetched for path, content in entry["files"].items()}
            for index, (item, content, replace) in enumerate(builds):
                outbox = stack.enter_context(self._outbox())
                self._build_sdist(item, content, outbox)
                self.compiled.append(canonicalize_name(item.name))
                outboxes.append(outbox)
                collect.append(
                    {"path": f"/outbox/{index}", "name": item.name, "version": item.version, "replace": replace}
                )
            request = {"outboxes": collect, "wheels": dict(wheels), "lock": lock_request}
            result = self._publish(request, outboxes, fetched=files)
        totals.add(result)
        return result.lock

    @contextlib.contextmanager
    def _outbox(self) -> Iterator[str]:
        """A fresh volume for one sdist build's output; always removed."""
        name = f"grocker-outbox-{uuid.uuid4().hex[:12]}"
        self.engine.create_volume(name, internal_labels(self.config, keys.OUTBOX))
        try:
            yield name
        finally:
            reason = self.engine.try_remove_volume(name)
            if reason is not None:
                logger.warning(
                    "could not remove volume %s: %s; remove it with `docker volume rm %s`", name, reason, name
                )

    def _build_sdist(self, item: ReportItem, content: bytes, outbox: str) -> None:
        """`pip wheel --no-deps` of one checked sdist, as grocker, with no access to the wheel volume."""
        # The outbox is mounted where the compiler image has grocker's empty wheels folder, so that the
        # new volume takes its owner; the wheel volume is not mounted at all.
        entrypoint = [
            PYTHON,
            "-m",
            "pip",
            "--disable-pip-version-check",
            "--no-input",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            layout.COMPILE_MOUNT,
            f"{INPUT_DIR}/sdist/{item.filename}",
        ]
        volumes = {outbox: (layout.COMPILE_MOUNT, "rw")}
        with (
            phase(f"build wheel of {item.name} {item.version} from its sdist"),
            self._container(keys.BUILD_SDIST, entrypoint, volumes) as container,
        ):
            self._put(container, {f"sdist/{item.filename}": content})
            status, lines = container.run(self.on_line)
        if status != 0:
            raise self._compile_error(status, lines, what=f"{item.name}=={item.version}", how=" building its sdist")

    def _compile_error(self, status: int, lines: list[str], what: str | None = None, how: str = "") -> GrockerError:
        release = self.request.release
        return BuildError(
            f"Compiling the wheels of {what or release.requirement} failed{how} (exit status {status}). "
            f"{compile_advice(lines, self.request.pip)} The compiler's output ends with:",
            details=mask(tail(lines), self.secrets),
        )


_INSTALLER_DIR = "wheel-installer"


def compile_inputs(session: Session) -> tuple[dict[str, bytes], dict[str, Any]]:
    """What every compile container finds in INPUT_DIR (pip's settings, certificates, a local
    release), and the publisher's settings that name them."""
    pip = session.request.pip
    release = session.request.release
    files: dict[str, bytes] = {}
    cert = client_cert = None
    if pip.cert is not None:
        files["cert.pem"] = pip.cert.read_bytes()
        cert = f"{INPUT_DIR}/cert.pem"
    if pip.client_cert is not None:
        files["client-cert.pem"] = pip.client_cert.read_bytes()
        client_cert = f"{INPUT_DIR}/client-cert.pem"
    files["pip.conf"] = pip.config_text(cert, client_cert).encode("utf-8")
    if release.path is not None:
        files[f"dist/{release.path.name}"] = release.path.read_bytes()
    return files, publisher_settings(pip, cert, client_cert)


def publisher_program() -> dict[str, bytes]:
    """The publisher's files in INPUT_DIR: publish.py, its package, and pypa/installer's modules."""
    return {"publish.py": script_bytes("publish.py"), **publisher_modules(), **wheel_installer_files()[1]}


def standby_inputs(session: Session) -> dict[str, bytes]:
    """What the publisher's waiting container is given once it runs: all but the request."""
    return {**compile_inputs(session)[0], **publisher_program()}


def wheel_installer_version() -> str:
    """pypa/installer's version (see `wheel_installer_files`)."""
    import installer

    return str(installer.__version__)


def wheel_installer_files() -> tuple[str, dict[str, bytes]]:
    """pypa/installer's version and modules, from this interpreter's installation, for the publisher.

    The runner's steps install the wheels with it (resources/wheelhouse/publish.py makes it a
    zip with bytecode for the runtime's Python). Its Windows launchers are left out. Imported
    here only: a build that publishes nothing does not need it.
    """
    import installer

    return installer.__version__, package_sources(installer, _INSTALLER_DIR)


def script_bytes(name: str) -> bytes:
    return resources.files("grocker").joinpath(f"resources/wheelhouse/{name}").read_bytes()


def publisher_modules() -> dict[str, bytes]:
    """The publisher's package (resources/wheelhouse/publishing), put beside publish.py in its input."""
    folder = resources.files("grocker").joinpath("resources/wheelhouse/publishing")
    return {
        f"publishing/{entry.name}": entry.read_bytes()
        for entry in sorted(folder.iterdir(), key=lambda entry: entry.name)
        if entry.name.endswith(".py")
    }


def script_path(name: str) -> Path:
    """Where an in-container script lives in the package (for tests that import its pure parts)."""
    return Path(str(resources.files("grocker").joinpath(f"resources/wheelhouse/{name}")))


def publisher_volumes(session: Session) -> dict[str, tuple[str, str]]:
    """The publisher's mounts: the wheel volume and the candidates volume, both read-write."""
    return {
        session.names.volume: (layout.COMPILE_MOUNT, "rw"),
        session.names.candidates: (layout.CANDIDATES_MOUNT, "rw"),
    }


def compiler_container(
    session: Session, role: keys.Role, entrypoint: Sequence[str], volumes: Mapping[str, tuple[str, str]]
) -> contextlib.AbstractContextManager[Container]:
    """A container of the compiler image, as user grocker, with the pip settings' file named."""
    return session.engine.container(
        session.names.compiler,
        role=role,
        labels=internal_labels(session.config, role),
        entrypoint=list(entrypoint),
        volumes=volumes,
        environment={"PIP_CONFIG_FILE": f"{INPUT_DIR}/pip.conf"},
        user="grocker",
    )
