"""A runner layer's downloads: `fetch INSTALLER_URL SHA256 PATH [URL SHA256 PATH]...`.

Downloads each file to PATH and checks it against the lock's SHA-256, then prints the newest time
the ZIP entries of the wheels record (the installer's excepted: the layer does not hold it), read
as UTC and kept within MIN_EPOCH..MAX_EPOCH; MIN_EPOCH for no wheel. That time becomes the
layer's SOURCE_DATE_EPOCH when none is given.

Runs with the runtime's Python in the runner's build (`python -c`, see grocker/render.py):
standard library only, Python 3.7's syntax, typing only in annotations (never evaluated).
"""

from __future__ import annotations

import calendar
import hashlib
import sys
import urllib.request
import zipfile

MIN_EPOCH = 315532800
"""1980-01-01T00:00:00Z, the oldest time a ZIP file records (grocker/wire/runner.py's)."""
MAX_EPOCH = 253402300799
"""9999-12-31T23:59:59Z (grocker/wire/runner.py's)."""


def fetch(args: list[str]) -> int:
    """Download and check the (URL, SHA256, PATH) triples of `args`; return the wheels' newest time."""
    newest = MIN_EPOCH
    for index, (url, sha256, path) in enumerate(zip(args[0::3], args[1::3], args[2::3])):
        digest = hashlib.sha256()
        # The wheel server's URLs, made by the host from checked file names.
        with urllib.request.urlopen(url) as answer, open(path, "wb") as out:  # noqa: S310
            for block in iter(lambda: answer.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != sha256:
            raise SystemExit(url + ": not the SHA-256 of the lock")
        if index:
            with zipfile.ZipFile(path) as wheel:
                for info in wheel.infolist():
                    newest = max(newest, calendar.timegm((*info.date_time, 0, 0, 0)))
    return min(newest, MAX_EPOCH)


def main(argv: list[str]) -> int:
    """Fetch what argv names and print the newest time."""
    print(fetch(argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
