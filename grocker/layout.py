"""Where things are in the wheel volume, for Grocker and the wheelhouse's in-container scripts.

The scripts (resources/wheelhouse/*.py) run with the compiler image's Python and import nothing
of Grocker: the host gives them the mount points in their requests (grocker.wire.wheelhouse);
the publisher keeps its state under the volume's `.grocker` as below, and tests/unit/test_trust.py
checks that they agree.
"""

COMPILE_MOUNT = "/home/grocker/wheels"
"""Where the compile container mounts the wheel volume (read-write)."""
CANDIDATES_MOUNT = "/home/grocker/candidates"
"""Where the resolve (read-only) and the publisher (read-write) mount the candidates volume.

It holds a copy of each wheel of the wheel volume that came from an index of its settings or
was built from one of their sdists: the only files of the domain that package code may read.
"""
SERVE_MOUNT = "/wheels"
"""Where the wheel server mounts the wheel volume (read-only) and serves it from."""
LOCKS_DIR = ".grocker/locks"
"""The wheel locks, relative to the volume's root: one JSON file per release, constraints and index settings."""
ORIGINS_DIR = ".grocker/origins"
"""Where each wheel came from, relative to the volume's root: the resolve offers pip only those of an index."""


def lock_file(key: str) -> str:
    """The path of the wheel lock called `key`, relative to the volume's root."""
    return f"{LOCKS_DIR}/{key}.json"
