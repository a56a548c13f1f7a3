"""Grocker's compile script: runs in the compiler container, builds wheels into the volume.

Input: a JSON request file (argv[1]). Output: wheels of the application and of all its
dependencies in /home/grocker/wheels, a lock file naming them, and one `GROCKER-RESULT:` line.
Wheels already in the volume are reused: the resolve is first tried offline against the
volume, and only when something is missing does pip reach the index. New wheels are written
in a private staging folder and linked into place, so a concurrent build never sees a
half-written file.
"""

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
from urllib.parse import urlsplit, urlunsplit

WHEELS = Path("/home/grocker/wheels")
LOCKS = WHEELS / ".grocker" / "locks"
# Where each wheel of the volume came from (for the SBOM): one JSON file per wheel, written
# when the wheel is published, since a reused wheel's origin is only known by the build that added it.
ORIGINS = WHEELS / ".grocker" / "origins"
PIP_LOG = Path("/tmp/grocker-pip.log")
RESULT_MARK = "GROCKER-RESULT:"


def main():
    request = json.loads(Path(sys.argv[1]).read_text())
    LOCKS.mkdir(parents=True, exist_ok=True)
    staging, _owner = make_staging()  # the lock is held until main returns
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
        staged = sorted(path.name for path in staging.glob("*.whl"))
        origins = read_origins(staged, application if request.get("local") else None)
        added, reused = publish(staging, replace, origins)
        lock = write_lock(request["lock"], application, resolved, installer)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    lock.update(added=added, reused=reused, online=online)
    print(RESULT_MARK + json.dumps(lock, sort_keys=True), flush=True)
    return 0


def make_staging():
    """A private staging folder, with a lock held as long as this compile lives.

    The folder gets its `.staging-` name only once its lock is held, so that another compile
    never takes it for abandoned.
    """
    setup = Path(tempfile.mkdtemp(prefix=".setup-", dir=WHEELS))
    owner = open(setup / ".owner", "w")  # kept open: closing it would release the lock
    fcntl.flock(owner, fcntl.LOCK_EX)
    staging = WHEELS / (".staging-" + setup.name[len(".setup-") :])
    os.rename(setup, staging)
    return staging, owner


def remove_abandoned_staging(own):
    """Remove the staging folders of killed compiles (interrupted builds): nobody holds their lock."""
    for folder in WHEELS.glob(".staging-*"):
        if folder == own:
            continue
        try:
            with open(folder / ".owner") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(folder, ignore_errors=True)
        except (FileNotFoundError, BlockingIOError):
            continue


def pip(*args):
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]


def wheel(request, staging, offline):
    # --log appends pip's debug log, which read_origins reads: both runs may add wheels.
    command = pip("wheel", "--wheel-dir", str(staging), "--find-links", str(WHEELS), "--log", str(PIP_LOG))
    if offline:
        command += ["--no-index", "--quiet"]
    if request.get("constraint"):
        command += ["--constraint", request["constraint"]]
    command.append(request["target"])
    output = None if not offline else subprocess.DEVNULL
    return subprocess.call(command, stdout=output, stderr=output) == 0


def find_application(name, resolved):
    found = [file for file in resolved if normalize(file.split("-")[0]) == name]
    if len(found) != 1:
        raise SystemExit(f"grocker: expected one wheel of {name}, found {found or 'none'}")
    return found[0]


def ensure_installer(staging):
    """A pip wheel for the runner, which installs with it and keeps no pip in its venv."""
    present = sorted(WHEELS.glob("pip-*.whl"), key=os.path.getmtime)
    if present:
        return present[-1].name
    command = pip("download", "--no-deps", "--only-binary", ":all:", "--dest", str(staging), "--log", str(PIP_LOG), "pip")
    if subprocess.call(command) != 0:
        raise SystemExit("grocker: could not download a pip wheel for the runner")
    return next(staging.glob("pip-*.whl")).name


def read_origins(staged, local_application):
    """Where each wheel pip put in staging came from, read from pip's log (pip wheel has no
    --report): a "Created wheel for NAME: filename=FILE" line means built here from an sdist;
    otherwise the "Found link URL (from INDEX-PAGE)" line of that file names its index. Both
    messages have been stable in pip for years; a wheel matching neither is "unknown".
    URLs lose their credentials, query and fragment."""
    try:
        log = PIP_LOG.read_text(errors="replace")
    except FileNotFoundError:
        log = ""
    built = set(re.findall(r"Created wheel for \S+: filename=(\S+)", log))
    links = {}
    for url, page in re.findall(r"Found link (\S+) \(from (\S+?)\)", log):
        links.setdefault(url_path_name(url), (public_url(url), public_url(page)))
    origins = {}
    for name in staged:
        if name in built:
            # The compiler image's ID, given by Grocker: which build environment made the wheel.
            origins[name] = {"kind": "built", "compiler": os.environ.get("GROCKER_COMPILER_IMAGE_ID")}
        elif name == local_application:
            origins[name] = {"kind": "file"}
        elif name in links and not links[name][0].startswith("file:"):
            origins[name] = {"kind": "index", "url": links[name][0], "index": links[name][1]}
        else:
            origins[name] = {"kind": "unknown"}
    return origins


def url_path_name(url):
    return urlsplit(url).path.rsplit("/", 1)[-1]


def public_url(url):
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def publish(staging, replace, origins):
    """Link each new wheel into the volume under its final name; never overwrite a wheel
    another build may be reading, except the application's own when it comes from a local
    file (same version, new content). Record where each added wheel came from."""
    added, reused = [], []
    for path in sorted(staging.glob("*.whl")):
        final = WHEELS / path.name
        if path.name in replace:
            if final.exists() and sha256(final) == sha256(path):
                reused.append(path.name)
            else:
                os.replace(path, final)
                added.append(path.name)
                write_json(ORIGINS / (path.name + ".json"), origins.get(path.name, {"kind": "unknown"}))
            continue
        try:
            os.link(path, final)
            added.append(path.name)
            write_json(ORIGINS / (path.name + ".json"), origins.get(path.name, {"kind": "unknown"}))
        except FileExistsError:
            reused.append(path.name)
        os.chmod(final, 0o644)
    return added, reused


def write_lock(key, application, resolved, installer):
    def entry(name):
        # Wheels published before origins were recorded have none.
        try:
            origin = json.loads((ORIGINS / (name + ".json")).read_text())
        except FileNotFoundError:
            origin = {"kind": "unknown"}
        return {"file": name, "sha256": sha256(WHEELS / name), "origin": origin}

    lock = {
        "application": entry(application),
        "dependencies": [entry(name) for name in resolved if name != application],
        "installer": entry(installer),
    }
    write_json(LOCKS / (key + ".json"), lock)
    return lock


def write_json(path, value):
    """Write a JSON file atomically (a concurrent build reads either the old or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as stream:
        json.dump(value, stream, sort_keys=True)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
