"""pip, run as `python -m pip` would, with two changes: the resolve's pip (resolve.py runs it).

One preference: between two files of the same project, version and tags (and so of the same
name), the one in the volume (a file: link) over the index's. pip then reads that wheel's metadata
in the volume instead of downloading the index's copy (the index gives no metadata file, or pip
could not use it). Which version pip chooses, and from which index, does not change: the
preference only breaks pip's own ties. And one filter: the volume's files of a version whose
every file on the indexes is yanked are dropped, so that pip applies PEP 592 to the index's files
alone (a yanked version is chosen only when pinned, as without the volume). A pip without these
methods runs unchanged.

Arguments: pip's own (argv[1:]). Runs in the resolve's container, on the runtime's Python, with
only the standard library and pip.
"""

from __future__ import annotations

import importlib
import runpy
import sys
from typing import Any, Callable


def prefer_the_volume(evaluator: Any) -> None:
    """Patch pip's CandidateEvaluator class `evaluator` with the tie-break and the yank filter."""
    if hasattr(evaluator, "_sort_key"):
        ranked: Callable[[Any, Any], tuple[Any, ...]] = evaluator._sort_key

        def sort_key(self: Any, candidate: Any) -> tuple[Any, ...]:
            return (*ranked(self, candidate), candidate.link.is_file)

        evaluator._sort_key = sort_key
    if hasattr(evaluator, "get_applicable_candidates"):
        applicable: Callable[[Any, list[Any]], list[Any]] = evaluator.get_applicable_candidates

        def not_yanked_by_the_index(self: Any, candidates: list[Any]) -> list[Any]:
            return applicable(self, index_yanks_kept(candidates))

        evaluator.get_applicable_candidates = not_yanked_by_the_index


def index_yanks_kept(candidates: list[Any]) -> list[Any]:
    """The candidates but the volume's (file: links) of a version every index file of which is yanked."""
    listed: dict[str, list[bool]] = {}
    for candidate in candidates:
        if not candidate.link.is_file:
            listed.setdefault(str(candidate.version), []).append(bool(candidate.link.is_yanked))
    kept = []
    for candidate in candidates:
        flags = listed.get(str(candidate.version))
        if candidate.link.is_file and flags and all(flags):
            continue
        kept.append(candidate)
    return kept


def main() -> None:
    """Run pip with argv[1:], as `python -m pip` does, its candidate choice patched."""
    try:
        finder = importlib.import_module("pip._internal.index.package_finder")
    except ImportError:
        pass
    else:
        prefer_the_volume(finder.CandidateEvaluator)
    sys.argv[0] = "pip"
    runpy.run_module("pip", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
