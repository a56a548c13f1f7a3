"""What the host and the runner's programs exchange: the install steps (resources/install/) and
the entrypoint check (resources/entrypoint/).

Those programs run with the image's Python, without Grocker: they spell the same bounds and
marks, and tests/unit/test_wire.py checks that they agree with these.
"""

from __future__ import annotations

MIN_EPOCH = 315532800
"""1980-01-01T00:00:00Z, the oldest time a ZIP file records: the install steps' oldest layer time."""
MAX_EPOCH = 253402300799
"""9999-12-31T23:59:59Z: the install steps' newest layer time."""
MISSING_MODULE_MARK = "GROCKER-MISSING-MODULE "
"""The entrypoint check's line for a module missing from the image, its name in JSON after it."""
SETUPTOOLS_MARK = "GROCKER-SETUPTOOLS "
"""After a missing pkg_resources: the version of setuptools installed in the image, or null."""
