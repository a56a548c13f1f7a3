"""Grocker: build a minimal Docker image of a released Python application.

The CLI (`grocker build`, `grocker purge`) is a thin layer over the functions exported here,
which CI scripts may call directly with frozen configuration objects.
"""

from __future__ import annotations

from grocker._version import __version__

# The library: CI scripts call these with frozen configuration objects (see docs/ci.rst).
# The operations are `run_build` and `run_purge` here (grocker.api.build and .purge), so that
# the name `purge` stays that of the module, and `build` is not mistaken for grocker.chain.build.
from grocker.api import build as run_build
from grocker.api import dry_run, load_config, prepare_build
from grocker.api import purge as run_purge
from grocker.chain.build import BuildRequest, BuildResult
from grocker.config import ProjectConfig
from grocker.errors import GrockerError
from grocker.purge import PurgeOptions, PurgeReport

__all__ = [
    "BuildRequest",
    "BuildResult",
    "GrockerError",
    "ProjectConfig",
    "PurgeOptions",
    "PurgeReport",
    "__version__",
    "dry_run",
    "load_config",
    "prepare_build",
    "run_build",
    "run_purge",
]
