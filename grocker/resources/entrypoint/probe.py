"""The entrypoint check: `probe COMMAND LOAD`, LOAD the text of load.py.

Status 1: no such command on the PATH; 2: the import check (LOAD, run with COMMAND by this
Python in a process of its own) itself failed; 0 otherwise, its lines printed.

Run by the venv's Python, not a shell (the minimal runner has none): nothing of Grocker's,
Python 3.7's syntax, typing only in annotations.
"""

from __future__ import annotations

import shutil
import subprocess
import sys


def probe(command: str, load: str) -> int:
    """The check's status for the command `command`, with the import check's program `load`."""
    if shutil.which(command) is None:
        return 1
    return 2 if subprocess.run([sys.executable, "-c", load, command]).returncode else 0


def main(argv: list[str]) -> int:
    """Probe the command argv[1] with the program argv[2]."""
    return probe(argv[1], argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
