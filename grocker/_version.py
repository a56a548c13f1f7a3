"""Grocker's version: a leaf module, so that the modules which label images with it import
nothing else of the package (importing it from `grocker` ran its __init__, and tied them all
into one import loop that held only by the order of that file's lines).
"""

from __future__ import annotations

__version__ = "7.0.0.dev0"
