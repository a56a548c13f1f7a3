"""The wheel volume's files and records, and the candidates volume beside it.

Where they are comes from the request (its ``paths``): this module spells no mount point.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .names import WHEEL_RE

ELF_MAGIC = b"\x7fELF"


def sha256_of(path: Path) -> str:
    """The SHA-256 (hex) of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_chunks(path: str | Path) -> Iterator[bytes]:
    """The content of the file at `path`, in blocks of 1 MiB."""
    with open(path, "rb") as stream:
        yield from iter(lambda: stream.read(1 << 20), b"")


def has_elf(path: Path) -> bool:
    """True when a member of the wheel at `path` starts as an ELF file does: what the ABI gate checks.

    The gate looks only at members the loader may load; this looks at every one, so a wheel
    recorded without ELF files has nothing for the gate to check.
    """
    with zipfile.ZipFile(path) as wheel:
        for info in wheel.infolist():
            if info.is_dir() or info.file_size < len(ELF_MAGIC):
                continue
            with wheel.open(info) as member:
                if member.read(len(ELF_MAGIC)) == ELF_MAGIC:
                    return True
    return False


def is_local(origin: Any) -> bool:
    """True for the origin of a local RELEASE file, or of a wheel built from a local sdist."""
    return isinstance(origin, dict) and (origin.get("kind") == "file" or bool(origin.get("local")))


def reusable(origin: Any) -> bool:
    """True for a recorded origin that another build of these index settings may reuse."""
    return isinstance(origin, dict) and origin.get("kind") in ("index", "built") and not is_local(origin)


class Volume:
    """The wheel volume mounted at `wheels`, its state under `.grocker`, and the candidates volume."""

    def __init__(self, wheels: Path, candidates: Path) -> None:
        self.wheels = wheels
        self.candidates = candidates
        """The resolve's view of the domain: copies of the wheels another build may reuse (offer)."""
        state = wheels / ".grocker"
        self.locks = state / "locks"
        self.records = state / "sha256"
        self.origins = state / "origins"
        """Where each published wheel came from (for the SBOM), written by the publisher that added it."""
        self.elf_flags = state / "elf"
        """has_elf's answer for each content, by SHA-256: looking at every member of every wheel of a
        lock again at each publish took 0.3 s for ipython's 16 wheels."""
        self.temporary = state / "tmp"
        self.quarantine = state / "quarantine"

    def prepare(self) -> None:
        """Make the state folders; remove the temporary files of publishers that died an hour ago."""
        for folder in (self.locks, self.records, self.origins, self.elf_flags, self.temporary, self.quarantine):
            folder.mkdir(parents=True, exist_ok=True)
        self.candidates.mkdir(parents=True, exist_ok=True)
        limit = time.time() - 3600
        for path in [*self.temporary.iterdir(), *self.candidates.glob(".offer-*")]:
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
            except FileNotFoundError:
                continue

    def write_temporary(self, chunks: Iterable[bytes]) -> tuple[Path, str]:
        """Write chunks to a new temporary file of the volume, synced; return its path and SHA-256."""
        digest = hashlib.sha256()
        fd, temporary = tempfile.mkstemp(dir=self.temporary, prefix=".part-")
        with os.fdopen(fd, "wb") as stream:
            for chunk in chunks:
                digest.update(chunk)
                stream.write(chunk)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        return Path(temporary), digest.hexdigest()

    def write_state(self, path: Path, text: str) -> None:
        """Replace the state file `path` with `text` in one step."""
        fd, temporary = tempfile.mkstemp(dir=self.temporary, prefix=".state-")
        with os.fdopen(fd, "w") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)

    def record_of(self, filename: str) -> str | None:
        """The SHA-256 a publisher recorded for `filename`, or None."""
        try:
            return (self.records / filename).read_text().strip()
        except FileNotFoundError:
            return None

    def write_record(self, filename: str, digest: str) -> None:
        """Record the SHA-256 of the published `filename`."""
        self.write_state(self.records / filename, digest + "\n")

    def origin_of(self, filename: str) -> Any:
        """Where `filename` came from, as its publisher recorded it, or None."""
        try:
            return json.loads((self.origins / filename).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def write_origin(self, filename: str, origin: dict[str, Any]) -> None:
        """Record where the published `filename` came from."""
        self.write_state(self.origins / filename, json.dumps(origin, sort_keys=True))

    def elf_flag(self, filename: str, digest: str) -> bool:
        """has_elf of the wheel `filename`, whose SHA-256 is `digest`, answered once per content."""
        try:
            return (self.elf_flags / digest).read_text().strip() == "yes"
        except FileNotFoundError:
            pass
        found = has_elf(self.wheels / filename)
        self.write_state(self.elf_flags / digest, "yes\n" if found else "no\n")
        return found

    def offer(self, filename: str) -> bool:
        """Copy the volume's wheel `filename` into the candidates volume if another build may reuse it.

        Only a wheel an index of these settings offered, or built from one of their sdists: never a
        local RELEASE file, a wheel built from one, or a file without a record. A copy that is there
        with the same size is kept: the publisher is its only writer, and it copies recorded files.
        """
        source = self.wheels / filename
        if not WHEEL_RE.fullmatch(filename) or self.record_of(filename) is None:
            return False
        if not reusable(self.origin_of(filename)):
            return False
        target = self.candidates / filename
        if target.is_file() and not target.is_symlink() and target.stat().st_size == source.stat().st_size:
            return False
        fd, temporary = tempfile.mkstemp(dir=self.candidates, prefix=".offer-")
        with os.fdopen(fd, "wb") as stream, open(source, "rb") as origin:
            shutil.copyfileobj(origin, stream, 1 << 20)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
        return True
