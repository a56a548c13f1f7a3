"""Grocker's resolve step: runs in a compiler container that must be treated as untrusted.

Package code may run here (pip prepares the metadata of sdists), so the wheel volume is mounted
read-only and nothing written here persists. pip resolves the request against the volume and
the index without installing anything, and this script prints what it chose on one
`GROCKER-REPORT:` line. The host validates that line; the trusted publisher then fetches or
reuses exactly those files, verified, so a forged report can only choose among verified files.

A release that already has a wheel lock in the volume is not resolved again: this script then
runs no pip at all and prints the lock on one `GROCKER-LOCKED:` line (the host checks it as it
checks any lock; its wheels are installed against the SHA-256 it gives).

Input: a JSON request file (argv[1]): target, optional constraint, optional lock (the path of
the release's lock in the volume, absent when the build asks to resolve again).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse

WHEELS = "/home/grocker/wheels"
REPORT_MARK = "GROCKER-REPORT:"
LOCKED_MARK = "GROCKER-LOCKED:"


def main():
    with open(sys.argv[1]) as stream:
        request = json.load(stream)
    if request.get("lock") and os.path.isfile(request["lock"]):
        with open(request["lock"]) as stream:
            lock = json.load(stream)
        if isinstance(lock, dict) and "locked" not in lock:  # written before locks recorded it
            lock["locked"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.stat(request["lock"]).st_mtime))
        print(LOCKED_MARK + json.dumps(lock, sort_keys=True), flush=True)
        return 0
    report_path = os.path.join(tempfile.mkdtemp(prefix="grocker-resolve-"), "report.json")
    # Always against the index (the volume is only a cache of files): a new release gets the
    # newest versions its requirements allow, as pip would choose them, never just the ones an
    # earlier build left in the volume.
    status = resolve(request, report_path)
    if status != 0:
        return status
    with open(report_path) as stream:
        report = json.load(stream)
    items = []
    for item in report.get("install", []):
        info = item.get("download_info") or {}
        url = info.get("url", "")
        path = urllib.parse.urlsplit(url).path
        items.append(
            {
                "name": item["metadata"]["name"],
                "version": item["metadata"]["version"],
                "filename": urllib.parse.unquote(path.rsplit("/", 1)[-1]),
                "in_volume": url.startswith("file://" + WHEELS + "/"),
                "requested": bool(item.get("requested")),
            }
        )
    print(REPORT_MARK + json.dumps({"pip": report.get("pip_version", ""), "items": items}, sort_keys=True), flush=True)
    return 0


# pip, run as `python -m pip` would, with one preference added: between two files of the same
# project, version and tags (and so of the same name), the one in the volume (a file: link) over
# the index's. pip then reads that wheel's metadata in the volume instead of downloading the
# index's copy (the index gives no metadata file, or pip could not use it). Which version pip
# chooses, and from which index, does not change: the preference only breaks pip's own ties. A
# pip without this ranking method runs unchanged.
PIP_PREFERRING_THE_VOLUME = """
import runpy, sys
try:
    from pip._internal.index.package_finder import CandidateEvaluator
except ImportError:
    pass
else:
    if hasattr(CandidateEvaluator, "_sort_key"):
        ranked = CandidateEvaluator._sort_key
        CandidateEvaluator._sort_key = lambda self, candidate: (*ranked(self, candidate), candidate.link.is_file)
sys.argv[0] = "pip"
runpy.run_module("pip", run_name="__main__", alter_sys=True)
"""


def resolve(request, report_path):
    command = [
        sys.executable,
        "-c",
        PIP_PREFERRING_THE_VOLUME,
        "--disable-pip-version-check",
        "--no-input",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--report",
        report_path,
        "--find-links",
        WHEELS,
    ]
    if request.get("constraint"):
        command += ["--constraint", request["constraint"]]
    command.append(request["target"])
    # pip's own lines ("Looking in indexes", what it collects) show at -v and in a failure's tail.
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
