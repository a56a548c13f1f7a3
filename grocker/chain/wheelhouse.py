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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename

from grocker import labels as keys
from grocker import layout
from grocker.chain.background import Background, background, wait_turn
from grocker.chain.session import BuildRequest, Session
from grocker.chain.wheel_report import (
    ReportItem,
    Totals,
    check_lock,
    is_wheel_of,
    parse_report,
)
from grocker.chain.wheel_steps import (
    INPUT_DIR,
    LINKS_DIR,
    PYTHON,
    WheelSteps,
    compiler_container,
    publisher_volumes,
    script_bytes,
    standby_inputs,
)
from grocker.config.pipconf import mask
from grocker.engine.protocol import Container
from grocker.errors import BuildError
from grocker.log import counted, logger, phase
from grocker.naming import internal_labels
from grocker.wheels import (
    WheelLock,
    lock_key,
    parse_lock,
)
from grocker.wire.wheelhouse import ResolveRequest


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


class _Wheelhouse(WheelSteps):
    """One compile: the lock of an existing build, of the fleet, or resolved and published now."""

    def compile(self) -> tuple[WheelLock, bool]:
        """The release's lock, and whether its dependencies were resolved now (else: an existing lock)."""
        release = self.request.release
        logger.debug("pip settings from %s:", ", ".join(self.request.pip.sources) or "no pip configuration")
        for line in self.inputs["pip.conf"].decode("utf-8").splitlines()[1:]:
            logger.debug("  pip %s", mask(line, self.secrets))
        totals = Totals()
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
            added, reused = totals.of_release(lock)
            note(f"{counted(len(added), 'new wheel')}, {len(reused)} reused")
            self._share(builds, lock, lock_data)
        return replace(lock, added=tuple(added), reused=tuple(reused)), True

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
            "links": LINKS_DIR,
        }
        extra = {name: script_bytes(name) for name in ("resolve.py", "pip_run.py")}
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
        container = made.enter_context(compiler_container(session, keys.PUBLISH, waiting, volumes))
        container.start()
        # Its inputs and program now, while the resolve runs: the publish then sends only its request.
        container.put_files("/tmp", {f"grocker-input/{path}": data for path, data in standby_inputs(session).items()})
        return container

    with background(start, "grocker-publisher", inline=not session.engine.parallel) as made:
        try:
            yield made
        finally:
            session.resolving.set()  # a start still waiting for its turn goes on now, to be removed


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
