"""The code map (docs/code-map.rst) names every module of the package, and only those, each under
the heading of its package: the page is organised by the folders, as the code is."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import docutils.core
import docutils.nodes

ROOT = Path(__file__).resolve().parents[2]
MODULE_RE = re.compile(r"grocker/[\w/]+\.py")
HEADING_RE = re.compile(r"grocker/(?:[\w/]+/)?")


def package_sections() -> dict[str, set[str]]:
    """Each section titled by a folder (``grocker/chain/``) and the modules its lists name.

    Read with docutils, as Sphinx reads the page; the sections are those of "The package".
    """
    page = (ROOT / "docs" / "code-map.rst").read_text()
    tree = docutils.core.publish_doctree(page, settings_overrides={"report_level": 5, "halt_level": 5})
    sections: dict[str, set[str]] = {}
    for section in tree.findall(docutils.nodes.section):
        title = section.next_node(docutils.nodes.title)
        if title is None or not HEADING_RE.fullmatch(title.astext()):
            continue
        named = set()
        for item in section.findall(docutils.nodes.list_item):
            first = item.next_node(docutils.nodes.literal)
            if first is not None and MODULE_RE.fullmatch(first.astext()):
                named.add(first.astext())
        sections[title.astext()] = named
    return sections


def tree_modules() -> dict[str, str]:
    """Each module of the package (its resources aside) and its folder, as `grocker/chain/`."""
    modules = {}
    for path in (ROOT / "grocker").rglob("*.py"):
        relative = PurePosixPath(path.relative_to(ROOT))
        if "resources" not in relative.parts:
            modules[str(relative)] = f"{relative.parent}/"
    return modules


def test_each_package_is_a_heading() -> None:
    folders = set(tree_modules().values()) | {"grocker/resources/"}

    assert sorted(package_sections()) == sorted(folders)


def test_each_module_is_under_its_package_heading() -> None:
    sections = package_sections()
    listed = {module: folder for folder, modules in sections.items() for module in modules}

    assert sorted(set(tree_modules()) - set(listed)) == [], "modules missing from docs/code-map.rst"
    assert sorted(set(listed) - set(tree_modules())) == [], "docs/code-map.rst names modules that do not exist"
    assert {module: folder for module, folder in listed.items() if tree_modules()[module] != folder} == {}, (
        "modules listed under another package's heading"
    )


def test_the_page_names_no_module_outside_the_package_sections() -> None:
    """A module's path elsewhere on the page (prose, "Where a change goes") must exist."""
    page = (ROOT / "docs" / "code-map.rst").read_text()

    assert sorted(set(MODULE_RE.findall(page)) - set(tree_modules())) == []
