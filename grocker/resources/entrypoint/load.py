"""The entrypoint check's second half: `load COMMAND`.

When COMMAND is a console script of the venv, import what it runs, as the script would, and
report a module missing from the image: a MISSING_MODULE_MARK line with the module's name in
JSON, and after a missing pkg_resources a SETUPTOOLS_MARK line with the version of setuptools
installed (or null). Other failures at import time depend on where the image runs
(configuration, services) and are not the build's to judge: they print nothing.

Runs with the image's Python (3.8 at least; an older one checks nothing), given as text by
probe.py: nothing of Grocker's, Python 3.7's syntax, typing only in annotations.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from types import FrameType

MISSING_MODULE_MARK = "GROCKER-MISSING-MODULE "
"""grocker/wire/runner.py's."""
SETUPTOOLS_MARK = "GROCKER-SETUPTOOLS "
"""grocker/wire/runner.py's."""


def late(signum: int, frame: FrameType | None) -> None:
    """An import that hangs (a service it waits for) ends the check, with nothing to report."""
    raise TimeoutError


def load(command: str) -> None:
    """Import the entry point of the console script `command`; print what is missing, if anything."""
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7: nothing to check with
        return
    points = metadata.entry_points()
    # Python 3.10's selection; before it, a dict of groups.
    scripts = points.select(group="console_scripts") if hasattr(points, "select") else points.get("console_scripts", ())
    for point in scripts:
        if point.name == command:
            try:
                point.load()
            except ModuleNotFoundError as err:
                print(MISSING_MODULE_MARK + json.dumps(err.name), flush=True)
                if (err.name or "").split(".")[0] == "pkg_resources":
                    try:
                        found: str | None = metadata.version("setuptools")
                    except Exception:
                        found = None
                    print(SETUPTOOLS_MARK + json.dumps(found), flush=True)
            except BaseException:  # noqa: S110 - any other failure is the running image's concern
                pass
            break


def main(argv: list[str]) -> int:
    """Check the console script argv[1], as its own script would import it."""
    signal.signal(signal.SIGALRM, late)
    signal.alarm(60)
    # A console script's folder, not the current one, is first on its path.
    sys.path[0] = os.path.dirname(sys.executable)
    load(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
