"""Grocker's SBOM collector: runs where the wheel volume is mounted read-only, in an image whose
package database is the runner's.

Two callers: the ABI gate's checker (resources/abi/check.py, in the root image, which the runner
is built FROM without adding a system package) imports it and calls collect() on the wheels it
has already opened, so that a build with --sbom starts no container of its own; and a short
container of the runner image runs it as a script when the gate did not run in this build (the
push phase alone).

Input: a request {"lock": KEY, "files": [wheel file names] or null, "wheel_dir": DIR,
"lock_dir": DIR} (argv[1] as JSON for the script; grocker/wire/sbom.py is the host's side of
this shape). With no files, the lock named KEY is read from the volume and returned. Output: the
distribution's release (os-release), its package database, and for each wheel the few
metadata fields and PEP 770 SBOMs the SBOM needs: wheels are read in place (their central
directory, METADATA and .dist-info/sboms/ only), so nothing large leaves the engine.

Runs on the runtime's Python, which may be older than Grocker's: standard library only, and
typing only where Python 3.7 reads it (annotations are not evaluated).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import BytesHeaderParser
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING or sys.version_info >= (3, 8):
    from typing import TypedDict

    class CollectRequest(TypedDict):
        """The collector's request: grocker/wire/sbom.py's CollectRequest."""

        lock: str
        files: list[str] | None
        wheel_dir: str
        lock_dir: str


APK_DATABASE = "lib/apk/db/installed"
"""Alpine's package database, relative to the image's root."""
# A minimal runner's package database (no dpkg): one status stanza per file, as distroless keeps it.
STATUS_DIR = "var/lib/dpkg/status.d"
SBOM_MAX = 4 * 1024 * 1024  # a PEP 770 SBOM larger than this is listed by its hash only


def main(argv: list[str]) -> int:
    """Print the facts for the request in argv[1], one line of JSON."""
    print(json.dumps(collect(json.loads(argv[1])), sort_keys=True))
    return 0


def collect(
    request: CollectRequest, archives: dict[str, zipfile.ZipFile] | None = None, root: str = "/"
) -> dict[str, Any]:
    """The SBOM's facts for a request; `archives` maps wheel file names to ZipFiles already open.

    `root` is where the image's system files are (its package database, os-release).
    """
    result: dict[str, Any] = {"os": os_release(root), "packages": packages(root)}
    files = request.get("files")
    if files is None:
        path = os.path.join(request["lock_dir"], request["lock"] + ".json")
        if not os.path.exists(path):
            return result
        with open(path) as stream:
            result["lock"] = json.load(stream)
        lock = result["lock"]
        files = [lock["application"]["file"]] + [item["file"] for item in lock["dependencies"]]
    opened = archives or {}
    result["wheels"] = {
        name: wheel_facts(opened[name]) if name in opened else wheel(os.path.join(request["wheel_dir"], name))
        for name in files
    }
    return result


def os_release(root: str = "/") -> dict[str, str]:
    """The distribution's ID and VERSION_ID (or VERSION_CODENAME) from os-release under `root`."""
    for path in (os.path.join(root, "etc/os-release"), os.path.join(root, "usr/lib/os-release")):
        if os.path.exists(path):
            values: dict[str, str] = {}
            with open(path) as stream:
                for line in stream:
                    key, _, value = line.strip().partition("=")
                    values[key] = value.strip().strip("\"'")
            return {
                "id": values.get("ID", ""),
                "version_id": values.get("VERSION_ID") or values.get("VERSION_CODENAME", ""),
            }
    return {"id": "", "version_id": ""}


def packages(root: str = "/", dpkg_query: str | None = None) -> list[dict[str, str]]:
    """The installed system packages: dpkg's (or a status.d folder's) or apk's database under `root`.

    `dpkg_query` is the dpkg-query command ("" for none); when not given, the PATH's, and only
    for the root `/`, since dpkg-query reads the running system's database.
    """
    if dpkg_query is None:
        dpkg_query = shutil.which("dpkg-query") if root == "/" else ""
    status_dir = os.path.join(root, STATUS_DIR)
    if os.path.isdir(status_dir) and not dpkg_query:
        return status_packages(status_dir)
    found: list[dict[str, str]] = []
    if dpkg_query:
        output = subprocess.run(
            [dpkg_query, "-W", "-f=${Package}\\t${Version}\\t${Architecture}\\t${db:Status-Abbrev}\\n"],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
        for line in output.splitlines():
            name, version, arch, status = [*line.split("\t"), "", "", ""][:4]
            if status.startswith("ii"):
                found.append({"name": name, "version": version, "architecture": arch})
        return found
    # Alpine: apk's database, one paragraph per package (P: name, V: version, A: architecture).
    current: dict[str, str] = {}
    database = os.path.join(root, APK_DATABASE)
    if os.path.exists(database):
        with open(database) as stream:
            for line in [*stream, ""]:
                line = line.rstrip("\n")
                if not line:
                    if "P" in current:
                        found.append(
                            {
                                "name": current["P"],
                                "version": current.get("V", ""),
                                "architecture": current.get("A", ""),
                            }
                        )
                    current = {}
                elif line[1:2] == ":":
                    current[line[0]] = line[2:]
    return found


def status_packages(folder: str) -> list[dict[str, str]]:
    """The packages of a status.d folder: each file holds stanzas (Package, Version, Architecture)."""
    found: list[dict[str, str]] = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".md5sums") or not os.path.isfile(path):
            continue  # distroless also keeps NAME.md5sums there
        with open(path, encoding="utf-8", errors="replace") as stream:
            for stanza in stream.read().split("\n\n"):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line and line[0] not in " \t":
                        key, _sep, value = line.partition(":")
                        fields[key] = value.strip()
                if "Package" in fields:
                    version, architecture = fields.get("Version", ""), fields.get("Architecture", "")
                    found.append({"name": fields["Package"], "version": version, "architecture": architecture})
    return found


def wheel(path: str) -> dict[str, Any]:
    """The metadata fields and PEP 770 SBOMs of the wheel at `path`."""
    with zipfile.ZipFile(path) as archive:
        return wheel_facts(archive)


def wheel_facts(archive: zipfile.ZipFile) -> dict[str, Any]:
    """The metadata fields and PEP 770 SBOMs of one open wheel."""
    names = archive.namelist()
    metadata = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
    sbom_entries: list[dict[str, Any]] = []
    info: dict[str, Any] = {"sboms": sbom_entries}
    if metadata:
        headers = BytesHeaderParser().parsebytes(archive.read(metadata[0]))
        info["name"] = headers.get("Name")
        info["license_expression"] = headers.get("License-Expression")
        info["license"] = headers.get("License")
        info["classifiers"] = headers.get_all("Classifier") or []
        sboms = metadata[0].rsplit("/", 1)[0] + "/sboms/"
        for name in sorted(n for n in names if n.startswith(sboms) and not n.endswith("/")):
            entry: dict[str, Any] = {"path": name}
            digest = hashlib.sha256()
            with archive.open(name) as stream:
                content = stream.read(SBOM_MAX + 1)
                digest.update(content)
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
            entry["sha256"] = digest.hexdigest()
            if len(content) <= SBOM_MAX:
                with contextlib.suppress(ValueError):  # not JSON: listed by its hash, as a large one is
                    entry["document"] = json.loads(content.decode("utf-8"))
            sbom_entries.append(entry)
    return info


if __name__ == "__main__":
    sys.exit(main(sys.argv))
