"""Grocker's compile script: runs in the compiler container, builds wheels into the volume.

Input: a JSON request file (argv[1]). Output: wheels of the application and of all its
dependencies in the volume (grocker.layout), a wheel lock naming them, and one result line.
Wheels already in the volume are reused: the resolve is first tried offline against the
volume, and only when something is missing does pip reach the index. New wheels are written
in a private staging folder and linked into place, so a concurrent build never sees a
half-written file.

It runs with the runtime's Python, which may be older than Grocker's: standard library only,
and of Grocker only grocker.layout, which the compiler image holds next to this file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from grocker import layout

WHEELS = Path(layout.COMPILE_MOUNT)
LOCKS = WHEELS / layout.LOCKS_DIR


def main() -> int:
    """Compile the request of argv[1]; print the result line; return the exit status."""
    request = json.loads(Path(sys.argv[1]).read_text())
    LOCKS.mkdir(parents=True, exist_ok=True)
    staging, owner = make_staging()  # its flock is held until main returns
    remove_abandoned_staging(staging)
    try:
        online = False
        if not wheel(request, staging, offline=True):
            print("grocker: some wheels are not in the volume yet, resolving against the index", flush=True)
            online = True
            if not wheel(request, staging, offline=False):
                return 1
        resolved = sorted(path.name for path in staging.glob("*.whl"))
        application = find_application(request["name"], resolved)
        installer = ensure_installer(staging)
        replace = {application} if request.get("local") else set()
        added, reused = publish(staging, replace)
        lock = write_lock(request["lock"], application, resolved, installer)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        owner.close()
    lock.update(added=added, reused=reused, online=online)
    print(layout.RESULT_MARK + json.dumps(lock, sort_keys=True), flush=True)
    return 0


def make_staging() -> tuple[Path, IO[str]]:
    """A private staging folder, with an flock on its owner file held as long as this compile lives.

    The folder gets its staging name only once the flock is held, so that another compile
    never takes it for abandoned.
    """
    setup = Path(tempfile.mkdtemp(prefix=".setup-", dir=WHEELS))
    owner = open(setup / ".owner", "w")  # noqa: SIM115 - kept open: closing it would release the lock
    fcntl.flock(owner, fcntl.LOCK_EX)
    staging = WHEELS / (layout.STAGING_PREFIX + setup.name[len(".setup-") :])
    os.rename(setup, staging)
    return staging, owner


def remove_abandoned_staging(own: Path) -> None:
    """Remove the staging folders of killed compiles (interrupted builds): nobody holds their flock."""
    for folder in WHEELS.glob(layout.STAGING_PREFIX + "*"):
        if folder == own:
            continue
        try:
            with open(folder / ".owner") as owner:
                fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(folder, ignore_errors=True)
        except (FileNotFoundError, BlockingIOError):
            continue


def pip(*args: str) -> list[str]:
    """A pip command line run by this interpreter."""
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]


def wheel(request: dict[str, Any], staging: Path, offline: bool) -> bool:
    """Build the wheels of the request into `staging`; offline, from the volume only."""
    return subprocess.call(wheel_command(request, staging, offline), **_quiet(offline)) == 0


def wheel_command(request: dict[str, Any], staging: Path, offline: bool) -> list[str]:
    """The `pip wheel` command of the request."""
    command = pip("wheel", "--wheel-dir", str(staging), "--find-links", str(WHEELS))
    if offline:
        command += ["--no-index", "--quiet"]
    if request.get("constraint"):
        command += ["--constraint", request["constraint"]]
    command.append(request["target"])
    return command


def _quiet(offline: bool) -> dict[str, Any]:
    # The offline try is expected to fail when something is missing: its output would mislead.
    return {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL} if offline else {}


def find_application(name: str, resolved: list[str]) -> str:
    """The one wheel of the application among the resolved ones."""
    found = [file for file in resolved if normalize(file.split("-")[0]) == name]
    if len(found) != 1:
        raise SystemExit(f"grocker: expected one wheel of {name}, found {found or 'none'}")
    return found[0]


def ensure_installer(staging: Path) -> str:
    """A pip wheel for the runner, which installs with it and keeps no pip in its venv."""
    present = sorted(WHEELS.glob("pip-*.whl"), key=os.path.getmtime)
    if present:
        return present[-1].name
    command = pip("download", "--no-deps", "--only-binary", ":all:", "--dest", str(staging), "pip")
    if subprocess.call(command) != 0:
        raise SystemExit("grocker: could not download a pip wheel for the runner")
    return next(staging.glob("pip-*.whl")).name


def publish(staging: Path, replace: set[str]) -> tuple[list[str], list[str]]:
    """Link each new wheel into the volume under its final name; never overwrite a wheel
    another build may be reading, except the application's own when it comes from a local
    file (same version, new content)."""
    added: list[str] = []
    reused: list[str] = []
    for path in sorted(staging.glob("*.whl")):
        final = WHEELS / path.name
        if path.name in replace:
            if final.exists() and sha256(final) == sha256(path):
                reused.append(path.name)
            else:
                os.replace(path, final)
                added.append(path.name)
            continue
        try:
            os.link(path, final)
            added.append(path.name)
        except FileExistsError:
            reused.append(path.name)
        os.chmod(final, 0o644)
    return added, reused


def write_lock(key: str, application: str, resolved: list[str], installer: str) -> dict[str, Any]:
    """Write the wheel lock `key` in one step (a concurrent reader never sees half of it)."""

    def entry(name: str) -> dict[str, str]:
        return {"file": name, "sha256": sha256(WHEELS / name)}

    lock: dict[str, Any] = {
        "application": entry(application),
        "dependencies": [entry(name) for name in resolved if name != application],
        "installer": entry(installer),
    }
    fd, temporary = tempfile.mkstemp(dir=LOCKS, prefix=".lock-")
    with os.fdopen(fd, "w") as stream:
        json.dump(lock, stream, sort_keys=True)
    os.chmod(temporary, 0o644)
    os.replace(temporary, WHEELS / layout.lock_file(key))
    return lock


def normalize(name: str) -> str:
    """A project name as PEP 503 normalises it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256(path: Path) -> str:
    """The SHA-256 of a file's content, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
