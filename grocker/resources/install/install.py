"""A runner layer's install: `install ARCHIVE WHEEL...`.

Installs each wheel into the running interpreter's environment (the venv) with pypa/installer
from ARCHIVE (the compiled installer the wheel server serves), as pip would: console scripts for
this interpreter, files overwritten, INSTALLER "grocker"; then compiles the .py files it installed
in the library folders, in parallel (hash-based .pyc: SOURCE_DATE_EPOCH is set), as pip compiles
them (a file that does not compile is left without bytecode).

Runs with the venv's Python in the runner's build (`python -c`, see grocker/render.py): the
standard library and ARCHIVE only, Python 3.7's syntax, typing only in annotations.
"""

from __future__ import annotations

import compileall
import concurrent.futures
import functools
import os
import pathlib
import sys
import sysconfig
from typing import TYPE_CHECKING, BinaryIO


def install(archive: str, wheels: list[str]) -> list[str]:
    """Install `wheels` with the installer in `archive`; return the .py files installed in the libraries."""
    sys.path.insert(0, archive)
    from installer import install as install_wheel
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    if TYPE_CHECKING:  # only for the annotations: nothing more of the installer is needed at run time
        from installer.records import RecordEntry
        from installer.utils import Scheme

    paths, sources = sysconfig.get_paths(), []
    headers = os.path.join(sys.prefix, "include", "site", f"python{sys.version_info[0]}.{sys.version_info[1]}")

    class Destination(SchemeDictionaryDestination):
        """pypa/installer's destination, noting the library .py files it writes."""

        def write_file(
            self, scheme: Scheme, path: str | os.PathLike[str], stream: BinaryIO, is_executable: bool
        ) -> RecordEntry:
            entry = super().write_file(scheme, path, stream, is_executable)
            if scheme in ("purelib", "platlib") and entry.path.endswith(".py"):
                sources.append(os.path.join(self.scheme_dict[scheme], entry.path))
            return entry

    for wheel in wheels:
        with WheelFile.open(pathlib.Path(wheel)) as source:
            scheme = {name: paths[name] for name in ("purelib", "platlib", "scripts", "data")}
            scheme["headers"] = os.path.join(headers, source.distribution)
            destination = Destination(scheme, sys.executable, "posix", overwrite_existing=True)
            install_wheel(source, destination, {"INSTALLER": b"grocker\n"})
    return sources


def compile_sources(sources: list[str]) -> None:
    """Compile `sources` as pip does, in parallel where the system allows a process pool."""
    compile_file = functools.partial(compileall.compile_file, force=True, quiet=2)
    try:
        with concurrent.futures.ProcessPoolExecutor(min(os.cpu_count() or 1, 8)) as pool:
            list(pool.map(compile_file, sources, chunksize=16))
    except (ImportError, OSError, NotImplementedError, concurrent.futures.BrokenExecutor):  # no pool: one by one
        for path in sources:
            compile_file(path)


def main(argv: list[str]) -> int:
    """Install the wheels argv names with its installer, then compile them."""
    compile_sources(install(argv[1], argv[2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
