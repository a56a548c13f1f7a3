"""The wheel volume and who may write it: resolve, fetch and publish, isolated sdist builds, lock.

Package code (an sdist's setup.py, a build backend) is untrusted: it never mounts the wheel
volume, which holds every build's locks, records, origins and local RELEASE files. The one step
that writes the volume, the publisher (resources/wheelhouse/publish.py), runs no package code
and publishes only checked files; it also keeps the candidates volume (`InternalNames.candidates`):
a copy of the wheel volume's wheels that an index of these settings offered or that were built
from one of their sdists, and nothing else:

1. resolve (untrusted, the candidates volume read-only, its own local RELEASE file copied in):
   pip resolves the release against the index and those wheels with ``pip install --dry-run
   --report`` and prints what it chose;
2. publish (trusted): files already published are reused; the others are downloaded from the
   index that lists them and checked against the SHA-256 it publishes; wheels go into the
   volume, sdists come back to the host;
3. build (untrusted, no wheel volume at all): each sdist is built alone with ``pip wheel
   --no-deps``, into a fresh outbox volume of its own;
4. publish again (trusted): from each outbox, exactly the one wheel of that sdist's project and
   version is published; then the lock is written, with the pip wheel bundled with the
   compiler's Python as the runner's installer (and that wheel compiled for that Python, which
   the runner's steps run).
The report of step 1 only chooses *what* to fetch: a forged one can pick nothing but checked
files. When nothing is new, steps 3 and 4 do not run: one resolve and one publish container.
The volume is the one of the build's index settings (grocker.trust, grocker.naming): a wheel
another index offered is never a candidate, and a local RELEASE file never stands for a
published one (resources/wheelhouse/publish.py).

Freshness is explicit: a release that has no lock yet is always resolved against the index (the
newest versions its requirements allow); a rebuild of a pinned release that has one reuses it
(the host reads it from the volume, through the publisher's container: never from the resolve's
output, where package code could print one; nothing runs); ``--refresh`` resolves it again. A version
range is resolved every time, since the newest version it allows may have changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)

from grocker import labels as keys
from grocker import layout
from grocker.chain.abi import package_sources
from grocker.chain.background import Background, background, wait_turn
from grocker.chain.session import BuildRequest, Session
from grocker.config.pipconf import PipSettings, mask
from grocker.engine.protocol import Container
from grocker.errors import BuildError, GrockerError
from grocker.log import counted, logger, phase, tail
from grocker.naming import internal_labels
from grocker.wheels import (
    COMPILED_INSTALLER_RE,
    SHA256_RE,
    WHEEL_INSTALLER_RE,
    WHEEL_NAME_RE,
    WheelLock,
    lock_key,
    parse_lock,
)
from grocker.wire.wheelhouse import PUBLISH_MARK, REPORT_MARK, PublishPaths, ResolveRequest

INPUT_DIR = "/tmp/grocker-input"
"""Where each wheelhouse container finds its request, pip settings, certificates and script."""
PYTHON = "/opt/grocker/venv/bin/python"
SDISTS_DIR = "/tmp/grocker-sdists"
_LINKS_DIR = "/tmp/grocker-candidates"
"""Where the resolve links the candidates volume's wheels for pip (its container's own folder)."""
SDIST_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?-[A-Za-z0-9_.!+]+\.(?:tar\.gz|zip)")
_PROJECT_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_VERSION_RE = re.compile(r"[A-Za-z0-9_.!+-]+")


@dataclass(frozen=True)
class ReportItem:
    """One distribution the resolve step chose: project, version, file, and whether it is in the volume."""

    name: str
    version: str
    filename: str
    in_volume: bool

    @property
    def is_wheel(self) -> bool:
        """True for a wheel, False for an sdist."""
        return self.filename.endswith(".whl")

    def as_json(self) -> dict[str, str]:
        """The item as the publisher reads it."""
        return {"name": self.name, "version": self.version, "filename": self.filename}


@dataclass(frozen=True)
class PublishResult:
    """What one publisher run did, and the sdists it downloaded (name, version, file, content)."""

    added: tuple[str, ...]
    reused: tuple[str, ...]
    wheels: dict[str, str]
    lock: Mapping[str, Any] | None
    sdists: tuple[tuple[ReportItem, bytes], ...] = ()
    warnings: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()


@dataclass
class _Totals:
    added: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)

    def add(self, result: PublishResult) -> None:
        # Wheels only: the compiled installer is the pip wheel's, not one more of the release.
        self.added += [name for name in result.added if name.endswith(".whl")]
        self.reused += [name for name in result.reused if name.endswith(".whl")]


def is_wheel_of(filename: str, name: str, version: str) -> bool:
    """True when `filename`, as a whole, is a safe wheel name of project `name` at `version`."""
    if not WHEEL_NAME_RE.fullmatch(filename):
        return False
    try:
        project, wheel_version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return False
    return project == canonicalize_name(name) and canonicalize_version(wheel_version) == canonicalize_version(version)


def is_sdist_of(filename: str, name: str, version: str) -> bool:
    """True when `filename`, as a whole, is a safe sdist name of project `name` at `version`."""
    if not SDIST_NAME_RE.fullmatch(filename):
        return False
    try:
        project, sdist_version = parse_sdist_filename(filename)
    except InvalidSdistFilename:
        return False
    return project == canonicalize_name(name) and canonicalize_version(sdist_version) == canonicalize_version(version)


def check_wheel_name(filename: str) -> str:
    """Return `filename` if it is a safe wheel file name (whole-value match), else fail the build."""
    if not WHEEL_NAME_RE.fullmatch(filename):
        raise BuildError(
            f"The wheel lock names the file {filename!r}, which is not a wheel file name. The wheel "
            "volume may have been tampered with: remove it (`grocker purge -a`) and build again."
        )
    return filename


def check_lock(lock: WheelLock, application: str) -> WheelLock:
    """Fail the build unless every file of the lock is a safe wheel name, the application's its own."""
    for wheel in (lock.application, *lock.dependencies, lock.installer):
        check_wheel_name(wheel.file)
        if not SHA256_RE.fullmatch(wheel.sha256):
            raise BuildError(
                f"The wheel lock gives {wheel.file} the SHA-256 {wheel.sha256!r}, which is not one. Remove "
                "the wheel volume (`grocker purge -a`) and build again."
            )
    if parse_wheel_filename(lock.application.file)[0] != canonicalize_name(application):
        raise BuildError(
            f"The wheel lock names {lock.application.file} as the application {application}. Remove the "
            "wheel volume (`grocker purge -a`) and build again."
        )
    if parse_wheel_filename(lock.installer.file)[0] != "pip":
        raise BuildError(f"The wheel lock names {lock.installer.file} as the installer, not a pip wheel.")
    compiled = lock.installer_compiled
    if compiled is not None and not (
        COMPILED_INSTALLER_RE.fullmatch(compiled.file)
        and compiled.file.startswith(lock.installer.file.removesuffix(".whl") + ".")
        and SHA256_RE.fullmatch(compiled.sha256)
    ):
        raise BuildError(
            f"The wheel lock names {compiled.file!r} (SHA-256 {compiled.sha256!r}) as the compiled form of "
            f"{lock.installer.file}, which it is not. Remove the wheel volume (`grocker purge -a`) and build again."
        )
    tool = lock.wheel_installer
    if tool is not None and not (WHEEL_INSTALLER_RE.fullmatch(tool.file) and SHA256_RE.fullmatch(tool.sha256)):
        raise BuildError(
            f"The wheel lock names {tool.file!r} (SHA-256 {tool.sha256!r}) as the runner's wheel installer, "
            "which is not one. Remove the wheel volume (`grocker purge -a`) and build again."
        )
    return lock


def parse_report(lines: Sequence[str]) -> tuple[ReportItem, ...]:
    """The resolve step's choices, from its marked output line; every file name checked.

    The resolve step runs package code, so its line is untrusted input: anything that is not a
    distribution file of the project and version it names fails the build.
    """
    data = _marked(lines, REPORT_MARK)
    if data is None:
        raise BuildError(
            "The resolve step printed no report. Run the build again with -v to see pip's output.",
            details=tail(lines),
        )
    items = []
    try:
        for entry in data["items"]:
            name, version, filename = str(entry["name"]), str(entry["version"]), str(entry["filename"])
            valid = _PROJECT_RE.fullmatch(name) and _VERSION_RE.fullmatch(version)
            if not valid or not (is_wheel_of(filename, name, version) or is_sdist_of(filename, name, version)):
                raise BuildError(
                    f"The resolve step chose the file {filename!r} for {name!r} {version!r}, which is not a "
                    "wheel or sdist of that project and version. A package may be tampering with the "
                    "build; check the dependencies of the release."
                )
            items.append(ReportItem(name, version, filename, bool(entry["in_volume"])))
    except (KeyError, TypeError) as err:
        raise BuildError(f"The resolve step's report is malformed ({err}). Run the build again with -v.") from err
    return tuple(items)


def parse_publish(lines: Sequence[str]) -> dict[str, Any] | None:
    """The publisher's result line, or None when it printed none."""
    return _marked(lines, PUBLISH_MARK)


def _marked(lines: Sequence[str], mark: str) -> dict[str, Any] | None:
    for line in reversed(lines):
        if line.startswith(mark):
            try:
                data = json.loads(line[len(mark) :])
            except json.JSONDecodeError:
                return None
            return data if isinstance(data, dict) else None
    return None


def publisher_settings(pip: PipSettings, cert: str | None, client_cert: str | None) -> dict[str, Any]:
    """Where the publisher looks files up: the indexes of the pip settings, credentials included."""
    indexes = [pip.index_url or "https://pypi.org/simple/", *pip.extra_index_urls]
    return {
        "indexes": indexes,
        "find_links": [link for link in pip.find_links if re.match(r"https?://", link)],
        "trusted_hosts": list(pip.trusted_hosts),
        "timeout": float(pip.timeout) if pip.timeout else 15.0,
        "cert": cert,
        "client_cert": client_cert,
    }


def compile_wheels(session: Session, publisher: Background[Container] | None = None) -> WheelLock:
    """Resolve, fetch, build and publish the wheels of the release; return its wheel lock.

    A pinned release whose lock exists reuses that lock, unless the request asks to refresh it.
    `publisher` is the publisher's container, started while the resolve runs (`standby`); it is
    released (removed in the background) once the compile has used it.
    """
    from grocker.chain import fleet as fleets  # requests and oras-py only when a build runs

    try:
        wheelhouse = _Wheelhouse(session, publisher)
        lock, resolved = wheelhouse.compile()
    finally:
        session.resolving.set()  # whatever happened, the containers in the background go on
    session.result.wheels = wheelhouse.sources(lock)
    logger.info("%s", fleets.sources_line(session.result.wheels))
    if lock.reused:
        session.reused(counted(len(set(lock.reused)), "wheel"))
    session.result.dependencies = "resolved now" if resolved else f"locked on {_date(lock.locked)}"
    return lock


def reuses_lock(request: BuildRequest) -> bool:
    """True when the release's existing wheel lock, if any, is used as it is.

    Not with --refresh, and not for a version range (its newest version may be new).
    """
    return not request.refresh and request.release.version is not None


def _date(locked: str | None) -> str:
    """A lock's date as the summary shows it (locks from older versions did not record it)."""
    return locked.replace("T", " ").replace("Z", " UTC") if locked else "an unknown date"


class _Wheelhouse:
    def __init__(self, session: Session, publisher: Background[Container] | None) -> None:
        from grocker.chain import fleet as fleets  # requests and oras-py only when a build runs

        self.session = session
        self.publisher = publisher
        self.engine = session.engine
        self.config = session.config
        self.names = session.names
        self.request = session.request
        self.secrets = session.secrets
        self.inputs, self.settings = self._inputs()
        self.fleet = fleets.for_session(session)
        self.compiled: list[str] = []
        """The projects (canonical names) whose wheels this build compiled from their sdists."""
        self._readers = contextlib.ExitStack()
        """The lock's reader, kept until the resolve has run: the engine's lease then runs on (grocker.engine.lease)."""

    def on_line(self, line: str) -> None:
        """A line of a compile container: the resolve's first says it runs (`Session.resolving`)."""
        self.session.resolving.set()
        self.session.stream_line(line)

    def compile(self) -> tuple[WheelLock, bool]:
        """The release's lock, and whether its dependencies were resolved now (else: an existing lock)."""
        release = self.request.release
        logger.debug("pip settings from %s:", ", ".join(self.request.pip.sources) or "no pip configuration")
        for line in self.inputs["pip.conf"].decode("utf-8").splitlines()[1:]:
            logger.debug("  pip %s", mask(line, self.secrets))
        totals = _Totals()
        with phase(f"compile wheels of {release.requirement}") as note:
            with self._readers:
                resolved = self._resolve()
            if isinstance(resolved, WheelLock):
                self._release_publisher()  # it has nothing to do
                note(f"{counted(len(resolved.dependencies) + 1, 'wheel')} of the lock of {_date(resolved.locked)}")
                self._share_lock(resolved)
                return resolved, False
            items = resolved
            application = self._application(items)
            if release.version is None:
                # A range: say which version it resolved to (the summary names it too).
                note(f"resolved to {release.pinned(application.version).requirement}")
            lock_request = {
                "key": self._lock_key(),
                "application": application.name,
                "names": [item.name for item in items],
            }
            local = release.path is not None
            first: dict[str, Any] = {
                "reuse": [item.as_json() for item in items if item.in_volume and item is not application],
                "fetch": [item.as_json() for item in items if not item.in_volume and item is not application],
                "local": [],
                "lock": lock_request,
            }
            builds: list[tuple[ReportItem, bytes, bool]] = []
            if local and application.is_wheel:
                first["local"].append({**application.as_json(), "path": f"{INPUT_DIR}/dist/{application.filename}"})
            elif local and release.path is not None:
                builds.append((application, release.path.read_bytes(), True))
                first["lock"] = None
            else:
                first[("reuse" if application.in_volume else "fetch")].append(application.as_json())
            result = self._publish(first, (), self.publisher)
            self._release_publisher()
            totals.add(result)
            builds += [(item, content, False) for item, content in result.sdists]
            lock_data = result.lock
            if builds:
                builds, fetched = self._from_fleet(builds)
                lock_data = self._build_and_collect(builds, result.wheels, lock_request, totals, fetched)
            if lock_data is None:
                raise BuildError(f"The publisher wrote no lock for {release.requirement}. Run the build again with -v.")
            lock = check_lock(parse_lock(lock_data), release.name)
            note(f"{counted(len(set(totals.added)), 'new wheel')}, {len(set(totals.reused))} reused")
            self._share(builds, lock, lock_data)
        return replace(lock, added=tuple(totals.added), reused=tuple(totals.reused)), True

    # The fleet's registry (grocker.chain.fleet): fetched files go into the volume through the publisher only

    def _fleet_lock(self) -> WheelLock | None:
        """The fleet's lock of the release, its wheels fetched and published into the volume; or None."""
        from grocker.chain import fleet as fleets  # requests and oras-py only when a build runs

        local = self.request.release.path is not None
        found = self.fleet.fetch_lock(self._lock_key()) if self.fleet is not None and not local else None
        if found is None or self.fleet is None:
            return None
        data, contents = found
        try:
            shared = check_lock(parse_lock(data), self.request.release.name)
        except BuildError as err:
            self.fleet.warn(f"its lock of {self.request.release.requirement} is refused ({err.message})")
            return None
        collect, files = fleets.collect_entries((shared.application, *shared.dependencies), contents, INPUT_DIR)
        lock_request = {
            "key": self._lock_key(),
            "application": self.request.release.name,
            "names": [entry["name"] for entry in collect],
        }
        self.session.resolving.set()  # no resolve runs: the publisher's container is needed now
        result = self._publish({"outboxes": collect, "lock": lock_request}, (), self.publisher, files)
        if result.lock is None:
            raise BuildError(f"The publisher wrote no lock for {self.request.release.requirement}. Run again with -v.")
        lock = check_lock(parse_lock(result.lock), self.request.release.name)
        if fleets.lock_files(lock) != fleets.lock_files(shared):
            logger.warning("the wheel volume already had other files of the fleet's lock: they are used")
        return replace(lock, locked=shared.locked)

    def _from_fleet(
        self, builds: Sequence[tuple[ReportItem, bytes, bool]]
    ) -> tuple[list[tuple[ReportItem, bytes, bool]], list[dict[str, Any]]]:
        """The sdist builds still to do, and the wheels of the others, fetched from the fleet."""
        remaining: list[tuple[ReportItem, bytes, bool]] = []
        fetched: list[dict[str, Any]] = []
        for item, content, local in builds:
            found = None
            if self.fleet is not None and not local:
                found = self.fleet.fetch_sdist_wheel(hashlib.sha256(content).hexdigest())
            if found is not None and is_wheel_of(found[0], item.name, item.version):
                index = len(fetched)
                folder = f"fleet/sdist-{index}"
                fetched.append(
                    {
                        "collect": {"path": f"{INPUT_DIR}/{folder}", "name": item.name, "version": item.version},
                        "files": {f"{folder}/{found[0]}": found[1]},
                    }
                )
            else:
                remaining.append((item, content, local))
        return remaining, fetched

    def _share(
        self, builds: Sequence[tuple[ReportItem, bytes, bool]], lock: WheelLock, data: Mapping[str, Any]
    ) -> None:
        """Publish the wheels compiled here from index sdists, then the lock, to the fleet (push on)."""
        if self.fleet is None or not self.fleet.publishing:
            return
        by_name = {parse_wheel_filename(wheel.file)[0]: wheel for wheel in (lock.application, *lock.dependencies)}
        with self._volume_reader() as read:
            for item, content, local in builds:
                wheel = by_name.get(canonicalize_name(item.name))
                if local or wheel is None:
                    continue
                found = read(wheel.file)
                if found is not None and hashlib.sha256(found).hexdigest() == wheel.sha256:
                    self.fleet.publish_sdist_wheel(hashlib.sha256(content).hexdigest(), wheel.file, found)
            if self.request.release.path is None:  # a local file's lock is no one else's
                self.fleet.publish_lock(self._lock_key(), data, read)

    def _share_lock(self, lock: WheelLock) -> None:
        """Publish a lock of the volume that the fleet lacks (its wheels checked against it)."""
        if self.fleet is None or self.request.release.path is not None or self.fleet.shares_lock(self._lock_key()):
            return
        with self._volume_reader() as read:
            content = read(layout.lock_file(self._lock_key()))
            if content is not None:
                self.fleet.publish_lock(self._lock_key(), json.loads(content), read)

    @contextlib.contextmanager
    def _volume_reader(self) -> Iterator[Any]:
        """A function that reads a file of the wheel volume (a container never started, volume read-only)."""
        waiting = [PYTHON, "-I", "-c", "pass"]
        with self._container(keys.PUBLISH, waiting, {self.names.volume: (layout.COMPILE_MOUNT, "ro")}) as reader:
            yield lambda path: reader.get_file(f"{layout.COMPILE_MOUNT}/{path}")

    def sources(self, lock: WheelLock) -> dict[str, int]:
        """Where the lock's wheels came from in this build (the output line and the result file)."""
        from grocker.chain import fleet as fleets  # requests and oras-py only when a build runs

        return fleets.count_sources(lock, self.fleet.fetched if self.fleet else set(), self.compiled)

    # Inputs

    def _inputs(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        pip = self.request.pip
        release = self.request.release
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

    def _container(
        self, role: keys.Role, entrypoint: Sequence[str], volumes: Mapping[str, tuple[str, str]]
    ) -> contextlib.AbstractContextManager[Container]:
        return _compiler_container(self.session, role, entrypoint, volumes)

    def _release_publisher(self) -> None:
        """Remove the waiting publisher's container in the background: this compile is done with it."""
        if self.publisher is not None:
            self.publisher.release()

    def _put(self, container: Container, extra: Mapping[str, bytes]) -> None:
        files = {**self.inputs, **extra}
        container.put_files("/tmp", {f"grocker-input/{path}": content for path, content in files.items()})

    # The steps

    def _resolve(self) -> tuple[ReportItem, ...] | WheelLock:
        """What pip chose for the release against the index, or the release's existing lock."""
        release = self.request.release
        target = release.requirement
        if release.path is not None:
            extras = f"[{release.extras_text}]" if release.extras else ""
            target = f"{INPUT_DIR}/dist/{release.path.name}{extras}"
        if reuses_lock(self.request):
            existing = self._existing_lock() or self._fleet_lock()
            if existing is not None:
                return existing
        request: ResolveRequest = {
            "target": target,
            "constraint": None,
            "candidates": layout.CANDIDATES_MOUNT,
            "links": _LINKS_DIR,
        }
        extra = {"resolve.py": _script("resolve.py")}
        if self.config.pip_constraint is not None:
            extra["constraints.txt"] = self.config.pip_constraint.read_bytes()
            request["constraint"] = f"{INPUT_DIR}/constraints.txt"
        extra["request.json"] = json.dumps(request).encode("utf-8")
        # Role `compile`: the container that reaches the index with the pip settings, as before.
        entrypoint = [PYTHON, f"{INPUT_DIR}/resolve.py", f"{INPUT_DIR}/request.json"]
        # Only the candidates volume: never another build's lock, record, origin or local file.
        volumes = {self.names.candidates: (layout.CANDIDATES_MOUNT, "ro")}
        with self._container(keys.COMPILE, entrypoint, volumes) as container:
            self._put(container, extra)
            status, lines = container.run(self.on_line)
        if status != 0:
            raise self._compile_error(status, lines)
        return parse_report(lines)

    def _lock_key(self) -> str:
        return lock_key(self.request.release, self.config.pip_constraint, self.names.index_domain)

    def _existing_lock(self) -> WheelLock | None:
        """The release's lock, read by the host from the volume through a container never started.

        Never from the resolve step's output: package code runs there and could print any lock.
        """
        # Through a container of its own, never started (the engine reads the volume as it is), not
        # the publisher's: that one starts once the resolve runs, and waiting for it delayed every
        # resolve by 0.2 to 0.4 s; this one is created and read in about 0.01 s.
        content = self._readers.enter_context(self._volume_reader())(layout.lock_file(self._lock_key()))
        if content is None:
            return None
        try:
            data = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BuildError(
                f"The wheel lock of {self.request.release.requirement} in {self.names.volume} is not JSON ({err}). "
                "Build again with --refresh to write it anew."
            ) from err
        if not isinstance(data, dict):
            raise BuildError(f"The wheel lock in {self.names.volume} is malformed. Build again with --refresh.")
        return check_lock(parse_lock(data), self.request.release.name)

    def _application(self, items: Sequence[ReportItem]) -> ReportItem:
        wanted = canonicalize_name(self.request.release.name)
        found = [item for item in items if canonicalize_name(item.name) == wanted]
        if len(found) != 1:
            raise BuildError(
                f"The resolve step did not choose one distribution of {self.request.release.name} "
                f"(it chose {[item.filename for item in found]}). Check the release's name."
            )
        return found[0]

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
        version, installer_files = wheel_installer_files()
        content["wheel_installer"] = {"version": version, "folder": f"{INPUT_DIR}/{_INSTALLER_DIR}"}
        content["paths"] = PublishPaths(
            wheels=layout.COMPILE_MOUNT, candidates=layout.CANDIDATES_MOUNT, sdists=SDISTS_DIR
        )
        command = [PYTHON, "-I", f"{INPUT_DIR}/publish.py", f"{INPUT_DIR}/publish.json"]
        files = {"publish.py": _script("publish.py"), "publish.json": json.dumps(content).encode()}
        files.update(publisher_modules())
        files.update(installer_files)
        files.update(fetched or {})
        if standby is not None and not outboxes:
            container = standby.result()
            self._put(container, files)
            status, lines = container.execute(command, self.on_line)
            return self._published(container, status, lines)
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
        totals: _Totals,
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


def compile_advice(lines: Sequence[str], pip: PipSettings) -> str:
    """What to do about a failed resolve or build, from what pip said."""
    missing = [line.split(" for ", 1)[1].strip() for line in lines if "No matching distribution found for " in line]
    if missing:
        where = ", ".join(pip.sources) or "pip's defaults"
        return (
            f"pip found no distribution of {missing[-1]} on the indexes it was given. Check that this "
            f"version is released there and that the pip settings (from {where}; -v shows them) "
            "name that index, with its credentials."
        )
    return (
        "If a C extension misses a header or library ('fatal error: foo.h: No such file', "
        "'library not found'), add its -dev package to dependencies.build and its runtime "
        "library to dependencies.run in .grocker.yml."
    )


_INSTALLER_DIR = "wheel-installer"


def wheel_installer_files() -> tuple[str, dict[str, bytes]]:
    """pypa/installer's version and modules, from this interpreter's installation, for the publisher.

    The runner's steps install the wheels with it (resources/wheelhouse/publish.py makes it a
    zip with bytecode for the runtime's Python). Its Windows launchers are left out. Imported
    here only: a build that publishes nothing does not need it.
    """
    import installer

    return installer.__version__, package_sources(installer, _INSTALLER_DIR)


def _script(name: str) -> bytes:
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


@contextlib.contextmanager
def standby(session: Session) -> Iterator[Background[Container]]:
    """The publisher's container, started in the background to wait for its request; removed on exit.

    It runs nothing but a wait until the compile runs the publisher in it, so that the publish
    does not wait for a container to start: start it before the compile (`compile_wheels`).
    """

    def start(made: contextlib.ExitStack) -> Container:
        wait_turn(session.resolving, session.engine.parallel)
        waiting = [PYTHON, "-I", "-c", "import signal; signal.pause()"]
        volumes = publisher_volumes(session)
        container = made.enter_context(_compiler_container(session, keys.PUBLISH, waiting, volumes))
        container.start()
        return container

    with background(start, "grocker-publisher", inline=not session.engine.parallel) as made:
        try:
            yield made
        finally:
            session.resolving.set()  # a start still waiting for its turn goes on now, to be removed


def publisher_volumes(session: Session) -> dict[str, tuple[str, str]]:
    """The publisher's mounts: the wheel volume and the candidates volume, both read-write."""
    return {
        session.names.volume: (layout.COMPILE_MOUNT, "rw"),
        session.names.candidates: (layout.CANDIDATES_MOUNT, "rw"),
    }


def _compiler_container(
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


def ensure_volume(session: Session) -> None:
    """Create the wheel and candidates volumes of the configuration, with their labels, unless they exist."""
    session.engine.create_volume(session.names.volume, internal_labels(session.config, keys.WHEEL_VOLUME))
    session.engine.create_volume(session.names.candidates, internal_labels(session.config, keys.CANDIDATES))


def require_volume(session: Session) -> None:
    """Refuse to build the runner from a wheel volume that does not exist."""
    if session.engine.volume_labels(session.names.volume) is None:
        raise BuildError(
            f"There is no wheel volume {session.names.volume} yet (one per configuration and index "
            "settings), so --no-build-dependencies has nothing to build from. Run the build once with "
            "--build-dependencies (the default) and the same pip settings."
        )


def read_lock(session: Session, server: Container) -> WheelLock:
    """The wheel lock of the release, read from the volume through the wheel server's container."""
    key = lock_key(session.request.release, session.config.pip_constraint, session.names.index_domain)
    content = server.get_file(f"{layout.SERVE_MOUNT}/{layout.lock_file(key)}")
    if content is None:
        raise BuildError(
            f"The wheel volume {session.names.volume} holds no compiled wheels of "
            f"{session.request.release.requirement} (with these constraints), so the image cannot "
            "be built with --no-build-dependencies. Run the build with --build-dependencies first."
        )
    lock = check_lock(parse_lock(json.loads(content)), session.request.release.name)
    session.result.dependencies = f"locked on {_date(lock.locked)}"
    return lock
