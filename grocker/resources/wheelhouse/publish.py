"""Grocker's publisher: the only step that writes the wheel volume. It runs no package code.

It runs in a compiler container with the wheel volume mounted read-write, with the compiler's
Python and the standard library only (no pip). Every file it publishes is either
- downloaded from the index that lists it, under that exact file name, and checked against the
  SHA-256 the index publishes; or
- the one wheel of a project and version found in the outbox of an isolated sdist build (the
  sdist itself having been downloaded and checked the same way); or
- the application's own local file, given by the user; or
- the pip wheel bundled with the compiler's Python (ensurepip), which installs the runner, and
  the same wheel with its modules compiled by that Python (the runner's: the compiler is built
  FROM the root image), which the runner's steps run: pip run from its plain wheel compiles its
  own code on every start, and that was most of a version bump's runner step.
Files are written under a temporary name, synced, then linked into place: an existing name is
never overwritten (an earlier local file of the application's excepted), and every file
published gets a record of its SHA-256 under .grocker/sha256, so that a file nobody published is
never reused.

The candidates volume, mounted beside it, is what the resolve (package code) sees of the
domain: after each run, every wheel of this run whose origin another build may reuse is copied
there (`offer`). Nothing else of the wheel volume is: its locks, records, origins, local RELEASE
files and wheels built from them stay where no package code reads them.

The volume belongs to one index-settings domain (grocker.trust): every build that mounts it has
the same indexes. A wheel is reused only if its recorded origin is one of them (downloaded from
an index, or built from an index's sdist), never a local RELEASE file another build published;
a local file never replaces a file of the same name that came from an index or a build (the
publish is refused when the contents differ).

Its modules are the package `publishing` beside this file (names, volume, indexes, installers),
shipped into the container with it. The script runs with ``python -I``, which does not put its
folder on sys.path: it puts it there itself, first, before importing them.

Input: a JSON request file (argv[1]), with the paths of the volumes in its ``paths``
(grocker.wire.wheelhouse.PublishPaths). Output: one `GROCKER-PUBLISH:` line
(grocker.wire.wheelhouse.PublishResult).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from publishing import PublishError
from publishing.indexes import Indexes
from publishing.installers import write_lock
from publishing.names import WHEEL_RE, normalize, public_url, publishable, sdist_of, wheel_of
from publishing.volume import Volume, file_chunks, is_local, reusable, sha256_of

# The same as grocker.wire.wheelhouse.PUBLISH_MARK (tests/unit/test_wire_wheelhouse.py holds them together).
PUBLISH_MARK = "GROCKER-PUBLISH:"
PATH_KEYS = frozenset({"wheels", "candidates", "sdists"})
"""The keys of the request's paths (grocker.wire.wheelhouse.PublishPaths)."""


def main(argv: list[str]) -> int:
    """Publish what the request of the file argv[1] asks; print the result line; the exit status."""
    with open(argv[1]) as stream:
        request: dict[str, Any] = json.load(stream)
    try:
        publisher = Publisher(request)
        publisher.volume.prepare()
        result = publisher.run()
    except PublishError as err:
        print(f"grocker: {err}", flush=True)
        return 1
    print(PUBLISH_MARK + json.dumps(result, sort_keys=True), flush=True)
    return 0


def collision(filename: str, local: bool) -> str:
    """What to do when a local file and a published one share a name but not their content."""
    if local:
        return (
            f"the local file {filename} has other content than the {filename} an index or a build "
            "published in the wheel volume, which other builds use: give the local build its own "
            "version (a local version label, e.g. 1.0+mine) or build it from the index"
        )
    return (
        f"{filename} in the wheel volume is a local file given as RELEASE, with other content than "
        "the one this build chose: give the local build its own version (a local version label, "
        "e.g. 1.0+mine), or remove the wheel volume (grocker purge -a)"
    )


class Publisher:
    """One run of the publisher: what its request asks, file by file."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        paths = request.get("paths") or {}
        missing = sorted(PATH_KEYS - set(paths))
        if missing:
            raise PublishError(f"the publisher's request lacks the paths {missing}")
        self.volume = Volume(Path(paths["wheels"]), Path(paths["candidates"]))
        self.sdists_dir = Path(paths["sdists"])
        self.indexes = Indexes(request)
        self.added: list[str] = []
        self.reused: list[str] = []
        self.warnings: list[str] = []
        self.ignored: list[str] = []
        self.sdists: list[dict[str, str]] = []
        self.wheels: dict[str, str] = dict(request.get("wheels") or {})

    def run(self) -> dict[str, Any]:
        """Reuse, fetch, take the local file and the outboxes' wheels; offer; lock; the result."""
        for item in self.request.get("reuse", []):
            self.reuse(item)
        for item in self.request.get("fetch", []):
            self.fetch(item)
        for item in self.request.get("local", []):
            self.publish_local(item)
        for outbox in self.request.get("outboxes", []):
            self.collect(outbox)
        for filename in sorted(set(self.wheels.values())):
            self.volume.offer(filename)
        result: dict[str, Any] = {
            "added": self.added,
            "reused": self.reused,
            "warnings": self.warnings,
            "ignored": self.ignored,
            "sdists": self.sdists,
            "wheels": self.wheels,
            "lock": None,
        }
        lock = self.request.get("lock")
        if lock and not self.sdists:
            result["lock"] = write_lock(self, lock)
        return result

    # Where each file comes from

    def reuse(self, item: dict[str, str]) -> None:
        """A wheel the resolve step found in the volume: reused only if a publisher recorded it."""
        filename = item["filename"]
        if not wheel_of(filename, item["name"], item["version"]):
            raise PublishError(
                f"the resolve step chose {filename!r} for {item['name']} {item['version']}, not a wheel of it"
            )
        path = self.volume.wheels / filename
        recorded = self.volume.record_of(filename)
        if (
            path.is_file()
            and recorded is not None
            and sha256_of(path) == recorded
            and reusable(self.volume.origin_of(filename))
        ):
            self.wheels[normalize(item["name"])] = filename
            self.reused.append(filename)
            return
        if not os.path.lexists(path):
            # Only the candidates volume has it: the wheel volume was removed since (`docker volume
            # rm`, a cold benchmark). A plain miss, not a suspicious file: downloaded as a new one.
            self.fetch(item, rebuild=True)
            return
        self.warnings.append(
            f"{filename} in the wheel volume has no publisher record of an index of these settings "
            "(an older Grocker, a local file, or planted): fetching it from the index instead"
        )
        self.fetch(item, rebuild=True)

    def fetch(self, item: dict[str, str], rebuild: bool = False) -> None:
        """A file the resolve step chose on an index: download it from the index that lists it."""
        name, version, filename = item["name"], item["version"], item["filename"]
        is_wheel = wheel_of(filename, name, version)
        if not is_wheel and not sdist_of(filename, name, version):
            raise PublishError(f"the resolve step chose {filename!r} for {name} {version}, not a distribution of it")
        recorded = self.volume.record_of(filename) if is_wheel else None
        if (
            recorded is not None
            and (self.volume.wheels / filename).is_file()
            and reusable(self.volume.origin_of(filename))
        ):
            self.wheels[normalize(name)] = filename
            self.reused.append(filename)
            return
        found = self.indexes.find(name, filename)
        if found is None and rebuild:
            # A wheel built from an sdist by an older Grocker: build it again from the index's sdist.
            found = self.indexes.find_sdist(name, version)
        if found is None:
            raise PublishError(f"no index of the pip settings lists {filename} ({name} {version})")
        index, url, digest, filename = found
        temporary, actual = self.volume.write_temporary(self.indexes.download(index, url, filename))
        try:
            if digest is None:
                self.warnings.append(f"the index {index.url} publishes no SHA-256 for {filename}: accepted unchecked")
            elif actual != digest.lower():
                raise PublishError(
                    f"{filename} downloaded from {index.url} has SHA-256 {actual}, not the {digest} the index publishes"
                )
            if filename.endswith(".whl"):
                origin = {"kind": "index", "url": public_url(url, index.url), "index": public_url(index.url)}
                self.wheels[normalize(name)] = self.publish(
                    temporary, filename, actual, replace_unrecorded=True, origin=origin
                )
            else:
                self.sdists_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(temporary, self.sdists_dir / filename)
                self.sdists.append({"name": name, "version": version, "filename": filename, "sha256": actual})
        finally:
            temporary.unlink(missing_ok=True)

    def publish_local(self, item: dict[str, str]) -> None:
        """The application's own wheel, given by the user: it replaces an older local file of that name only."""
        filename = item["filename"]
        if not wheel_of(filename, item["name"], item["version"]):
            raise PublishError(
                f"the application's file {filename!r} is not a wheel of {item['name']} {item['version']}"
            )
        temporary, actual = self.volume.write_temporary(file_chunks(item["path"]))
        try:
            self.wheels[normalize(item["name"])] = self.publish(
                temporary, filename, actual, local=True, origin={"kind": "file"}
            )
        finally:
            temporary.unlink(missing_ok=True)

    def collect(self, outbox: dict[str, Any]) -> None:
        """Accept the one wheel of the sdist's project and version from an isolated build's outbox.

        Or from a folder of this container's input: a wheel Grocker fetched from the fleet's
        registry and checked against its digest, published as checked as an outbox's.
        """
        name, version = str(outbox["name"]), str(outbox["version"])
        folder = Path(outbox["path"])
        accepted = []
        for entry in sorted(os.listdir(folder)):
            path = folder / entry
            if wheel_of(entry, name, version) and path.is_file() and not path.is_symlink():
                accepted.append(entry)
                continue
            match = WHEEL_RE.fullmatch(entry)
            if match and normalize(match["name"]) != normalize(name):
                self.warnings.append(
                    f"TAMPERING: the build of {name} {version} left a wheel of another project, {entry!r}: ignored"
                )
            else:
                self.ignored.append(f"{name} {version}: {entry!r}")
        if len(accepted) != 1:
            raise PublishError(f"the build of {name} {version} produced {len(accepted)} wheels of it, not one")
        filename = accepted[0]
        temporary, actual = self.volume.write_temporary(file_chunks(folder / filename))
        try:
            # Compiled here from an sdist (an index's, or the local file given as RELEASE: then
            # marked local, never a candidate for another build).
            local = bool(outbox.get("replace"))
            origin: dict[str, Any] = {"kind": "built", "compiler": self.request.get("compiler_image")}
            # A wheel of the fleet's registry (grocker.fleet): the origin its lock recorded.
            if isinstance(outbox.get("origin"), dict) and not local:
                origin = outbox["origin"]
            if local:
                origin["local"] = True
            self.wheels[normalize(name)] = self.publish(
                temporary, filename, actual, local=local, replace_unrecorded=True, origin=origin
            )
        finally:
            temporary.unlink(missing_ok=True)

    # Publishing

    def publish(
        self,
        temporary: Path,
        filename: str,
        digest: str,
        local: bool = False,
        replace_unrecorded: bool = False,
        origin: dict[str, Any] | None = None,
    ) -> str:
        """Link a checked temporary file into place under `filename`; return the name used.

        When the name exists already, the existing file stays if a publisher recorded it (it was
        checked too): two builds publishing one name concurrently both use the first one's file.
        A `local` file (the user's RELEASE) replaces only an earlier local file; a local file and
        a file from an index or a build never stand for each other unless their contents are equal.
        """
        if not publishable(filename):
            raise PublishError(f"refusing to publish {filename!r}: not a wheel file name")
        volume = self.volume
        final = volume.wheels / filename
        recorded = volume.record_of(filename) if final.is_file() else None
        if recorded is not None and recorded == digest and sha256_of(final) == digest:
            self.reused.append(filename)
            return filename
        if recorded is not None and is_local(volume.origin_of(filename)) != local:
            raise PublishError(collision(filename, local))
        if local:
            os.replace(temporary, final)
            self.record(filename, digest, origin)
            return filename
        try:
            os.link(temporary, final)
        except FileExistsError:
            pass
        else:
            self.record(filename, digest, origin)
            return filename
        recorded = volume.record_of(filename)
        if recorded is None:
            # Another publisher may be between its link and its record: give it a moment.
            time.sleep(1)
            recorded = volume.record_of(filename)
        if recorded is None:
            if sha256_of(final) == digest:
                volume.write_record(filename, digest)
            elif replace_unrecorded:
                self.warnings.append(
                    f"{filename} in the wheel volume had no publisher record and other content: quarantined"
                )
                os.replace(final, volume.quarantine / f"{int(time.time())}-{os.getpid()}-{filename}")
                os.link(temporary, final)
                self.record(filename, digest, origin)
                return filename
            else:
                raise PublishError(f"{filename} in the wheel volume has no publisher record and other content")
        self.reused.append(filename)
        return filename

    def record(self, filename: str, digest: str, origin: dict[str, Any] | None) -> None:
        """A file this publisher added: its SHA-256 and where it came from."""
        if origin is not None:
            self.volume.write_origin(filename, origin)
        self.volume.write_record(filename, digest)
        self.added.append(filename)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
