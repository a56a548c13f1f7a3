"""Grocker's resolve step: runs in a compiler container that must be treated as untrusted.

Package code may run here (pip prepares the metadata of sdists), so the wheel volume is not
mounted at all: only the candidates volume of this build's index settings (its trust domain, see
grocker.trust), read-only, and nothing written here persists. pip resolves the request against
the index and those candidates without installing anything, and this script prints what it
chose on one `GROCKER-REPORT:` line. The host validates that line; the trusted publisher then
fetches or reuses exactly those files, verified, so a forged report can only choose among
verified files.

The candidates are only copies of the wheels a publisher recorded as downloaded from one of these
indexes or built from one of their sdists (the publisher copies nothing else there): a folder of
links to them is pip's `--find-links`. No lock, record, origin, local RELEASE file of another
build, or wheel built from one is in reach (this build's own local file comes from its input
folder). A version the index has yanked stays yanked: pip is not offered the volume's copy of it
(a find-links file carries no yank flag).

An existing lock is not read here: the host reads it from the volume, so that package code can
never hand it one.

Input: a JSON request file (argv[1]), grocker.wire.wheelhouse.ResolveRequest: the target, an
optional constraints file, where the candidates volume is mounted and where to link its wheels.
Output: one line, REPORT_MARK and grocker.wire.wheelhouse.Report as JSON.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse
from typing import Any

# The same as grocker.wire.wheelhouse.REPORT_MARK (tests/unit/test_wire_wheelhouse.py holds them together).
REPORT_MARK = "GROCKER-REPORT:"
REQUEST_KEYS = frozenset({"target", "constraint", "candidates", "links"})
"""The keys of the request (grocker.wire.wheelhouse.ResolveRequest)."""
WHEEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._!+-]*\.whl")


def main(argv: list[str]) -> int:
    """Resolve the request of the file argv[1]; print the report line; pip's status."""
    with open(argv[1]) as stream:
        request: dict[str, Any] = json.load(stream)
    missing = sorted(REQUEST_KEYS - set(request))
    if missing:
        print(f"grocker: the resolve's request lacks {missing}", flush=True)
        return 2
    link_candidates(request["candidates"], request["links"])
    report_path = os.path.join(tempfile.mkdtemp(prefix="grocker-resolve-"), "report.json")
    # Always against the index (the volume is only a cache of files): a new release gets the
    # newest versions its requirements allow, as pip would choose them, never just the ones an
    # earlier build left in the volume.
    status = resolve(request, report_path)
    if status != 0:
        return status
    with open(report_path) as stream:
        report: dict[str, Any] = json.load(stream)
    print(REPORT_MARK + json.dumps(report_of(report, request["links"]), sort_keys=True), flush=True)
    return 0


def report_of(pip_report: dict[str, Any], links: str) -> dict[str, Any]:
    """The resolve's report (grocker.wire.wheelhouse.Report) from pip's installation report."""
    items = []
    for item in pip_report.get("install", []):
        info = item.get("download_info") or {}
        url = str(info.get("url", ""))
        path = urllib.parse.urlsplit(url).path
        items.append(
            {
                "name": str(item["metadata"]["name"]),
                "version": str(item["metadata"]["version"]),
                "filename": urllib.parse.unquote(path.rsplit("/", 1)[-1]),
                "in_volume": url.startswith("file://" + links.rstrip("/") + "/"),
                "requested": bool(item.get("requested")),
            }
        )
    return {"pip": str(pip_report.get("pip_version", "")), "items": items}


def link_candidates(wheels: str, folder: str) -> list[str]:
    """Make `folder` hold a link to each wheel of the candidates volume; return their names.

    Only whole wheel names of regular files: not a copy the publisher is still writing.
    """
    os.makedirs(folder, exist_ok=True)
    linked = []
    for name in sorted(os.listdir(wheels)):
        path = os.path.join(wheels, name)
        if WHEEL_NAME_RE.fullmatch(name) and os.path.isfile(path) and not os.path.islink(path):
            os.symlink(path, os.path.join(folder, name))
            linked.append(name)
    return linked


def resolve(request: dict[str, Any], report_path: str) -> int:
    """Run pip's resolve of the request, its report written to `report_path`; pip's status."""
    command = [
        sys.executable,
        # pip, preferring the candidates' copies and keeping the index's yanks (pip_run.py, beside this one).
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip_run.py"),
        "--disable-pip-version-check",
        "--no-input",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--report",
        report_path,
        "--find-links",
        request["links"],
    ]
    if request.get("constraint"):
        command += ["--constraint", str(request["constraint"])]
    command.append(str(request["target"]))
    # pip's own lines ("Looking in indexes", what it collects) show at -v and in a failure's tail.
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
