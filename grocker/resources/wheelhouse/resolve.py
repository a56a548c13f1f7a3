"""Grocker's resolve step: runs in a compiler container that must be treated as untrusted.

Package code may run here (pip prepares the metadata of sdists), so the wheel volume is mounted
read-only and nothing written here persists. pip resolves the request against the volume and
the index without installing anything, and this script prints what it chose on one
`GROCKER-REPORT:` line. The host validates that line; the trusted publisher then fetches or
reuses exactly those files, verified, so a forged report can only choose among verified files.

Input: a JSON request file (argv[1]): target, optional constraint.
"""

import json
import os
import subprocess
import sys
import tempfile
import urllib.parse

WHEELS = "/home/grocker/wheels"
REPORT_MARK = "GROCKER-REPORT:"


def main():
    with open(sys.argv[1]) as stream:
        request = json.load(stream)
    report_path = os.path.join(tempfile.mkdtemp(prefix="grocker-resolve-"), "report.json")
    # First from the volume alone, as Grocker always did: a release whose wheels are all there
    # needs no index. Only when something is missing does pip ask the index.
    if resolve(request, report_path, offline=True) != 0:
        print("grocker: some wheels are not in the volume yet, resolving against the index", flush=True)
        status = resolve(request, report_path, offline=False)
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


def resolve(request, report_path, offline):
    command = [
        sys.executable,
        "-m",
        "pip",
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
    if offline:
        # Quiet, and its output dropped: a miss here only means "ask the index". Online, pip's
        # own lines ("Looking in indexes", what it collects) show at -v and in a failure's tail.
        command += ["--no-index", "--quiet"]
    if request.get("constraint"):
        command += ["--constraint", request["constraint"]]
    command.append(request["target"])
    output = subprocess.DEVNULL if offline else None
    return subprocess.call(command, stdout=output, stderr=output)


if __name__ == "__main__":
    sys.exit(main())
