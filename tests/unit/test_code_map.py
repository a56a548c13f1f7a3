"""The code map (docs/code-map.rst) names every module of the package, and only those."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_code_map_matches_the_tree() -> None:
    page = (ROOT / "docs" / "code-map.rst").read_text()
    named = set(re.findall(r"``(grocker/[\w/]+\.py)``", page))
    modules = {
        str(path.relative_to(ROOT)) for path in (ROOT / "grocker").rglob("*.py") if "resources" not in path.parts
    }
    modules.discard("grocker/chain/__init__.py")

    assert sorted(modules - named) == [], "modules missing from docs/code-map.rst"
    assert sorted(named - modules) == [], "docs/code-map.rst names modules that do not exist"
