"""Grocker's SBOM collector: runs where the wheel volume is mounted read-only, in an image whose
package database is the runner's.

Two callers: the ABI gate's checker (resources/abi/check.py, in the root image, which the runner
is built FROM without adding a system package) imports it and calls collect() on the wheels it
has already opened, so that a build with --sbom starts no container of its own; and a short
container of the runner image runs it as a script when the gate did not run in this build (the
push phase alone).

Input: a request {"lock": KEY, "files": [wheel file names] or null} (argv[1] as JSON for the
script). With no files, the lock named KEY is read from the volume and returned. Output: the
distribution's release (os-release), its package database, and for each wheel the few
metadata fields and PEP 770 SBOMs the SBOM needs: wheels are read in place (their central
directory, METADATA and .dist-info/sboms/ only), so nothing large leaves the engine.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import BytesHeaderParser

WHEELS = "/home/grocker/wheels"
APK_DATABASE = "/lib/apk/db/installed"
# A minimal runner's package database (no dpkg): one status stanza per file, as distroless keeps it.
STATUS_DIR = "/var/lib/dpkg/status.d"
SBOM_MAX = 4 * 1024 * 1024  # a PEP 770 SBOM larger than this is listed by its hash only


def main():
    print(json.dumps(collect(json.loads(sys.argv[1])), sort_keys=True))
    return 0


def collect(request, archives=None):
    """The SBOM's facts for a request; `archives` maps wheel file names to ZipFiles already open."""
    result = {"os": os_release(), "packages": packages()}
    files = request.get("files")
    if files is None:
        path = os.path.join(WHEELS, ".grocker", "locks", request["lock"] + ".json")
        if not os.path.exists(path):
            return result
        with open(path) as stream:
            result["lock"] = json.load(stream)
        lock = result["lock"]
        files = [lock["application"]["file"]] + [item["file"] for item in lock["dependencies"]]
    opened = archives or {}
    result["wheels"] = {
        name: wheel_facts(opened[name]) if name in opened else wheel(os.path.join(WHEELS, name)) for name in files
    }
    return result


def os_release():
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        if os.path.exists(path):
            values = {}
            with open(path) as stream:
                for line in stream:
                    key, _, value = line.strip().partition("=")
                    values[key] = value.strip().strip("\"'")
            return {"id": values.get("ID", ""), "version_id": values.get("VERSION_ID") or values.get("VERSION_CODENAME", "")}
    return {"id": "", "version_id": ""}


def packages():
    if os.path.isdir(STATUS_DIR) and not shutil.which("dpkg-query"):
        return status_packages(STATUS_DIR)
    if shutil.which("dpkg-query"):
        output = subprocess.run(
            ["dpkg-query", "-W", "-f=${Package}\\t${Version}\\t${Architecture}\\t${db:Status-Abbrev}\\n"],
            check=True,
            stdout=subprocess.PIPE,
            universal_newlines=True,
        ).stdout
        found = []
        for line in output.splitlines():
            name, version, arch, status = (line.split("\t") + ["", "", ""])[:4]
            if status.startswith("ii"):
                found.append({"name": name, "version": version, "architecture": arch})
        return found
    # Alpine: apk's database, one paragraph per package (P: name, V: version, A: architecture).
    found, current = [], {}
    if os.path.exists(APK_DATABASE):
        with open(APK_DATABASE) as stream:
            for line in list(stream) + [""]:
                line = line.rstrip("\n")
                if not line:
                    if "P" in current:
                        found.append({"name": current["P"], "version": current.get("V", ""), "architecture": current.get("A", "")})
                    current = {}
                elif line[1:2] == ":":
                    current[line[0]] = line[2:]
    return found


def status_packages(folder):
    """The packages of a status.d folder: each file holds stanzas (Package, Version, Architecture)."""
    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".md5sums") or not os.path.isfile(path):
            continue  # distroless also keeps NAME.md5sums there
        with open(path, encoding="utf-8", errors="replace") as stream:
            for stanza in stream.read().split("\n\n"):
                fields = {}
                for line in stanza.splitlines():
                    if line and line[0] not in " \t":
                        key, _sep, value = line.partition(":")
                        fields[key] = value.strip()
                if "Package" in fields:
                    found.append(
                        {"name": fields["Package"], "version": fields.get("Version", ""), "architecture": fields.get("Architecture", "")}
                    )
    return found


def wheel(path):
    with zipfile.ZipFile(path) as archive:
        return wheel_facts(archive)


def wheel_facts(archive):
    """The metadata fields and PEP 770 SBOMs of one open wheel."""
    names = archive.namelist()
    metadata = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
    info = {"sboms": []}
    if metadata:
        headers = BytesHeaderParser().parsebytes(archive.read(metadata[0]))
        info["name"] = headers.get("Name")
        info["license_expression"] = headers.get("License-Expression")
        info["license"] = headers.get("License")
        info["classifiers"] = headers.get_all("Classifier") or []
        sboms = metadata[0].rsplit("/", 1)[0] + "/sboms/"
        for name in sorted(n for n in names if n.startswith(sboms) and not n.endswith("/")):
            entry = {"path": name}
            digest = hashlib.sha256()
            with archive.open(name) as stream:
                content = stream.read(SBOM_MAX + 1)
                digest.update(content)
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
            entry["sha256"] = digest.hexdigest()
            if len(content) <= SBOM_MAX:
                try:
                    entry["document"] = json.loads(content.decode("utf-8"))
                except ValueError:
                    pass
            info["sboms"].append(entry)
    return info


if __name__ == "__main__":
    sys.exit(main())
