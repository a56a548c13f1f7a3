"""Where things are in the wheel volume: shared by Grocker and its compile script.

Standard library only, and no import of the rest of Grocker: this file is also copied into
the compiler image next to compile.py, whose Python may be older than Grocker's.
"""

COMPILE_MOUNT = "/home/grocker/wheels"
"""Where the compile container mounts the wheel volume (read-write)."""
SERVE_MOUNT = "/wheels"
"""Where the wheel server mounts the wheel volume (read-only) and serves it from."""
LOCKS_DIR = ".grocker/locks"
"""The wheel locks, relative to the volume's root: one JSON file per release and constraints."""
STAGING_PREFIX = ".staging-"
"""Private folders of running compiles, relative to the volume's root."""
RESULT_MARK = "GROCKER-RESULT:"
"""The compile script's last line of output starts with this, followed by the lock as JSON."""


def lock_file(key: str) -> str:
    """The path of the wheel lock called `key`, relative to the volume's root."""
    return f"{LOCKS_DIR}/{key}.json"
