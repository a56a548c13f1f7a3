"""Grocker: build a minimal Docker image of a released Python application.

The CLI (`grocker build`, `grocker purge`) is a thin layer over the functions exported here,
which CI scripts may call directly with frozen configuration objects.
"""

from __future__ import annotations

__version__ = "7.0.0.dev0"
