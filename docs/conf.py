"""Sphinx configuration of Grocker's documentation.

Build it as CI does: sphinx-build -W --keep-going -n -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

import grocker

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "Grocker"
author = "Grocker contributors"
project_copyright = "2016-2026, Polyconseil and Grocker contributors"
version = release = grocker.__version__

extensions = [
    "sphinx.ext.graphviz",
    "grocker_docs",
]

exclude_patterns = ["_build"]
nitpicky = True
highlight_language = "none"
pygments_style = "sphinx"

graphviz_output_format = "svg"
graphviz_dot_args = ["-Gfontname=Helvetica", "-Nfontname=Helvetica", "-Efontname=Helvetica"]

html_theme = "alabaster"
html_static_path = ["_static"]
html_css_files = ["grocker.css"]
html_title = f"Grocker {release}"
html_theme_options = {
    "description": "A Docker image builder for Python applications",
    "fixed_sidebar": True,
    "page_width": "1160px",
    "sidebar_width": "230px",
}
