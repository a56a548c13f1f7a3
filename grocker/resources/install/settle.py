"""The end of a runner layer: `settle TOP EPOCH MARKER`.

Removes MARKER's folder (the layer's downloads), then sets the times of everything under TOP (TOP
included) that this step created or changed to EPOCH. "Changed" is a change time no older than
MARKER's, made when the step started: the files of the layers below were changed (written,
extracted) before this step's container existed, so they are left alone (not copied up).

Runs with the runtime's Python in the runner's build (`python -c`, see grocker/render.py):
standard library only, Python 3.7's syntax, typing only in annotations (never evaluated).
"""

from __future__ import annotations

import os
import shutil
import sys


def settle(top: str, epoch: int, marker: str) -> None:
    """Remove MARKER's folder and set what changed under `top` since MARKER was made to `epoch`."""
    start = os.lstat(marker).st_ctime_ns
    shutil.rmtree(os.path.dirname(marker))
    paths = [top, *(os.path.join(folder, name) for folder, dirs, files in os.walk(top) for name in dirs + files)]
    for path in paths:
        if os.lstat(path).st_ctime_ns >= start:
            os.utime(path, (epoch, epoch), follow_symlinks=False)


def main(argv: list[str]) -> int:
    """Settle the layer argv names."""
    settle(argv[1], int(argv[2]), argv[3])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
