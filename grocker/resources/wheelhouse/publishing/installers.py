"""What the publisher makes for the runner: the pip wheel, pip and pypa/installer compiled, the lock.

The pip wheel bundled with the compiler's Python (ensurepip) installs the runner; the same wheel
with its modules compiled by that Python (the runner's: the compiler is built FROM the root
image) is what the runner's steps run: pip run from its plain wheel compiles its own code on
every start, and that was most of a version bump's runner step.
"""

from __future__ import annotations

import compileall
import json
import py_compile
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Protocol

from . import PublishError
from .names import INSTALLER_RE, WHEEL_RE, interpreter_tag, normalize, publishable
from .volume import Volume, file_chunks, sha256_of

# ZIP entries need a date: the earliest one ZIP can record, so that the same pip gives the same file.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class Publishing(Protocol):
    """What these functions need of the publisher."""

    volume: Volume
    request: dict[str, Any]
    reused: list[str]
    wheels: dict[str, str]

    def publish(
        self,
        temporary: Path,
        filename: str,
        digest: str,
        local: bool = False,
        replace_unrecorded: bool = False,
        origin: dict[str, Any] | None = None,
    ) -> str: ...


def installer(job: Publishing) -> str:
    """The pip wheel bundled with the compiler's Python, chosen by the version ensurepip names."""
    import ensurepip

    version = ensurepip.version()
    filename = f"pip-{version}-py3-none-any.whl"
    folders = [getattr(ensurepip, "_WHEEL_PKG_DIR", None), Path(ensurepip.__file__).parent / "_bundled"]
    folders.append("/usr/share/python-wheels")
    for folder in folders:
        if folder and (Path(folder) / filename).is_file():
            source = Path(folder) / filename
            break
    else:
        raise PublishError(f"the compiler's Python has no bundled {filename} (ensurepip names pip {version})")
    temporary, actual = job.volume.write_temporary(file_chunks(source))
    try:
        return job.publish(temporary, filename, actual, replace_unrecorded=True)
    finally:
        temporary.unlink(missing_ok=True)


def compiled_installer(job: Publishing, wheel: str) -> str:
    """The pip wheel `wheel` of the volume with a .pyc beside each module, for this Python.

    Made once per volume. The bytecode is hash-based and unchecked (PEP 552), beside its
    source (zipimport's layout), so pip started from this file compiles nothing. The file
    never enters an image.
    """
    filename = f"{wheel[: -len('.whl')]}.{interpreter_tag()}.zip"
    if reuse_made(job, filename):
        return filename
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder) / "tree"
        with zipfile.ZipFile(job.volume.wheels / wheel) as source:
            source.extractall(tree)
        return publish_compiled(job, tree, filename)


def wheel_installer(job: Publishing) -> str | None:
    """pypa/installer, from Grocker's installation, with its bytecode for this Python; or None.

    What the runner's steps install the wheels with: it starts faster than pip, and its
    modules come from Grocker (copied into this container), not from an index. Made once per
    volume and version, like the compiled pip. None when the request has no such folder or
    this Python is older than installer supports (the steps then run pip).
    """
    given = job.request.get("wheel_installer") or {}
    version = str(given.get("version", ""))
    if not given.get("folder") or sys.version_info < (3, 10):
        return None
    filename = f"installer-{version}.{interpreter_tag()}.zip"
    if not INSTALLER_RE.fullmatch(filename):
        raise PublishError(f"refusing to publish pypa/installer as {filename!r}: not a version")
    if reuse_made(job, filename):
        return filename
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder) / "tree"
        shutil.copytree(given["folder"], tree)
        return publish_compiled(job, tree, filename)


def reuse_made(job: Publishing, filename: str) -> bool:
    """True when a file the publisher makes is in the volume, as recorded."""
    path = job.volume.wheels / filename
    if path.is_file() and job.volume.record_of(filename) == sha256_of(path):
        job.reused.append(filename)
        return True
    return False


def publish_compiled(job: Publishing, tree: Path, filename: str) -> str:
    """Compile the modules of `tree` beside their sources, zip it deterministically, publish it."""
    # ddir "": the modules are named by their path in the archive, not this temporary one.
    compileall.compile_dir(
        str(tree),
        ddir="",
        quiet=2,
        legacy=True,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    archive = tree.parent / "compiled.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(item for item in tree.rglob("*") if item.is_file()):
            entry = zipfile.ZipInfo(path.relative_to(tree).as_posix(), ZIP_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(entry, path.read_bytes())
    temporary, actual = job.volume.write_temporary(file_chunks(archive))
    try:
        return job.publish(temporary, filename, actual, replace_unrecorded=True)
    finally:
        temporary.unlink(missing_ok=True)


def write_lock(job: Publishing, lock: dict[str, Any]) -> dict[str, Any]:
    """The lock of this release: every wheel with its SHA-256, computed here."""
    volume = job.volume

    def entry(filename: str) -> dict[str, Any]:
        if not publishable(filename):
            raise PublishError(f"refusing to lock {filename!r}: not a wheel file name")
        found: dict[str, Any] = {"file": filename, "sha256": sha256_of(volume.wheels / filename)}
        if WHEEL_RE.fullmatch(filename):
            found["elf"] = volume.elf_flag(filename, found["sha256"])
        origin = volume.origin_of(filename)
        if origin is not None:
            found["origin"] = origin
        return found

    pip = installer(job)
    application = normalize(lock["application"])
    names = [normalize(name) for name in lock["names"]]
    missing = [name for name in names if name not in job.wheels]
    if application not in names or missing:
        raise PublishError(f"no wheel was published for {missing or application}")
    content = {
        "application": entry(job.wheels[application]),
        "dependencies": [entry(job.wheels[name]) for name in sorted(names) if name != application],
        "installer": entry(pip),
        "installer_compiled": entry(compiled_installer(job, pip)),
        # When the release's dependencies were resolved: a rebuild reuses this lock and says so.
        "locked": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tool = wheel_installer(job)
    if tool is not None:
        content["wheel_installer"] = entry(tool)
    volume.write_state(volume.locks / (lock["key"] + ".json"), json.dumps(content, sort_keys=True))
    return content
