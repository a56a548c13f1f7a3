"""Grocker's ABI check: runs in a container of the root image, the wheel volume mounted read-only.

Input: a JSON request file (argv[1]): {"wheels": [file, ...]} or {"lock": key}, the folders
"wheel_dir" and "lock_dir", and with "sbom" the SBOM collector's request
(resources/sbom/collect.py, copied beside this script). grocker/wire/abi.py is the host's side
of these shapes.
Output: one `GROCKER-ABI:` line of JSON, {"runtime": {...}, "findings": [...], "checked": {...}},
with "sbom": the collector's facts, when asked and nothing was found.

It answers, for every wheel, what the runner's interpreter and dynamic loader would: are the
wheel's tags among the interpreter's supported tags, is every ELF file for this machine, is
every DT_NEEDED library found (RPATH/RUNPATH with $ORIGIN, the wheels' own libraries, the root
image's loader directories), and does each found library define every symbol version asked of
it (.gnu.version_r against .gnu.version_d). Standard library, pyelftools and packaging only:
Grocker copies the last two in, nothing is installed. It runs on the runtime's Python, which
may be older than Grocker's: typing only where Python 3.7 reads it (annotations are not evaluated).
"""

from __future__ import annotations

import glob
import io
import json
import os
import posixpath
import re
import sys
import zipfile
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, Iterable

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection, GNUVerSymSection
from packaging.tags import Tag, parse_tag, sys_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

if TYPE_CHECKING:
    from grocker.resources.sbom.collect import CollectRequest

    Collector = Callable[[CollectRequest, Dict[str, zipfile.ZipFile]], Dict[str, Any]]
    """The SBOM collector's collect(): facts for its request from wheels already open."""
if TYPE_CHECKING or sys.version_info >= (3, 8):
    from typing import TypedDict

    class AbiFolders(TypedDict):
        """Where the wheel volume's files are: grocker/wire/abi.py's AbiFolders."""

        wheel_dir: str
        lock_dir: str

    class AbiRequest(AbiFolders, total=False):
        """The request: grocker/wire/abi.py's AbiRequest."""

        wheels: list[str]
        lock: str
        sbom: CollectRequest


RESULT_MARK = "GROCKER-ABI:"
ELF_MAGIC = b"\x7fELF"
# Files that no loader loads: not opened at all (typeshed stubs alone are thousands of files).
# Extensions load by their suffix (.so) and libraries by name, so nothing loadable ends so.
_NOT_LOADED = """
.py .pyi .pyc .pyx .pxd .pxi .c .h .cc .cpp .hpp .txt .typed .json .md .rst .html .htm .css .js
.map .cfg .toml .yaml .yml .ini .csv .xml .jpg .jpeg .png .gif .svg .ico .mo .po .pem .sh
"""
NOT_LOADED_SUFFIXES = frozenset(_NOT_LOADED.split())
VER_FLG_BASE = 0x1
VER_FLG_WEAK = 0x2
# Where the loader looks after RPATH/RUNPATH and the ld.so.conf directories (glibc and musl).
DEFAULT_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib")
ARCHITECTURES = {
    "EM_X86_64": "x86_64",
    "EM_AARCH64": "aarch64",
    "EM_386": "i386",
    "EM_ARM": "arm",
    "EM_PPC64": "ppc64",
    "EM_S390": "s390x",
    "EM_RISCV": "riscv",
    "EM_LOONGARCH": "loongarch",
    "EM_MIPS": "mips",
}


def architecture(machine: str, elfclass: int | None = None) -> str:
    """A reader's name for an ELF e_machine value (EM_AARCH64 -> aarch64)."""
    name = ARCHITECTURES.get(machine, str(machine).replace("EM_", "").lower())
    if name == "riscv" and elfclass:
        name += str(elfclass)
    return name


def elf_facts(stream: IO[bytes]) -> dict[str, Any]:
    """What the dynamic loader needs of one ELF file: machine, needed libraries, search paths,
    version needs (library -> versions) and the versions it defines."""
    elf = ELFFile(stream)
    facts: dict[str, Any] = {
        "machine": elf["e_machine"],
        "class": elf.elfclass,
        "type": elf["e_type"],
        "soname": None,
        "needed": [],
        "rpath": [],
        "runpath": [],
        "needs": {},
        "defines": [],
    }
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                kind = tag.entry.d_tag
                if kind in ("DT_NEEDED", "DT_RPATH", "DT_RUNPATH", "DT_SONAME"):
                    # pyelftools sets the tag's string as an attribute named after it (needed, rpath...).
                    text = str(getattr(tag, kind[len("DT_") :].lower()))
                if kind == "DT_NEEDED":
                    facts["needed"].append(text)
                elif kind in ("DT_RPATH", "DT_RUNPATH"):
                    facts[kind[len("DT_") :].lower()].extend(entry for entry in text.split(":") if entry)
                elif kind == "DT_SONAME":
                    facts["soname"] = text
        elif isinstance(section, GNUVerNeedSection):
            for needed, auxiliaries in section.iter_versions():
                versions = facts["needs"].setdefault(needed.name, [])
                versions.extend(aux.name for aux in auxiliaries if not aux["vna_flags"] & VER_FLG_WEAK)
        elif isinstance(section, GNUVerDefSection):
            for defined, auxiliaries in section.iter_versions():
                first = next(iter(auxiliaries), None)
                if first is not None and not defined["vd_flags"] & VER_FLG_BASE:
                    facts["defines"].append(first.name)
    return facts


def symbols_needing(stream: IO[bytes], library: str, versions: set[str]) -> list[str]:
    """The undefined symbols of an ELF file bound to `versions` of `library`, as name@VERSION."""
    elf = ELFFile(stream)
    indexes: dict[int, str] = {}
    versym: GNUVerSymSection | None = None
    for section in elf.iter_sections():
        if isinstance(section, GNUVerNeedSection):
            for needed, auxiliaries in section.iter_versions():
                for aux in auxiliaries:
                    if needed.name == library and aux.name in versions:
                        indexes[aux["vna_other"]] = aux.name
        elif isinstance(section, GNUVerSymSection):
            versym = section
    if versym is None or not indexes:
        return []
    found: list[str] = []
    for number in range(1, versym.num_symbols()):
        index = versym.get_symbol(number)["ndx"]
        if isinstance(index, int) and index & 0x7FFF in indexes:
            symbol = versym.symboltable.get_symbol(number)
            if symbol["st_shndx"] == "SHN_UNDEF":
                found.append(f"{symbol.name}@{indexes[index & 0x7FFF]}")
    return sorted(set(found))


def loader_dirs(root: str = "/") -> list[str]:
    """The directories the dynamic loader searches by default, in its order."""
    dirs: list[str] = []

    def read_conf(path: str, depth: int = 0) -> None:
        try:
            with open(path) as stream:
                lines = stream.read().splitlines()
        except OSError:
            return
        for text in lines:
            line = text.split("#", 1)[0].strip()
            if line.startswith("include") and depth < 8:
                for pattern in line.split()[1:]:
                    full = pattern if pattern.startswith("/") else posixpath.join(posixpath.dirname(path), pattern)
                    for included in sorted(glob.glob(full)):
                        read_conf(included, depth + 1)
            elif line:
                dirs.extend(entry for entry in re.split(r"[\s:,]+", line) if entry)

    read_conf(posixpath.join(root, "etc/ld.so.conf"))
    for musl in sorted(glob.glob(posixpath.join(root, "etc/ld-musl-*.path"))):
        with open(musl) as stream:
            dirs.extend(entry for entry in re.split(r"[\s:]+", stream.read()) if entry)
    dirs.extend(DEFAULT_DIRS)
    return list(dict.fromkeys(dirs))


def system_libraries(dirs: Iterable[str]) -> dict[str, str]:
    """File name -> path of every shared library in `dirs`; the first directory wins, as in ld.so."""
    found: dict[str, str] = {}
    for folder in dirs:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            if ".so" in name and name not in found:
                path = posixpath.join(folder, name)
                if os.path.isfile(path):
                    found[name] = path
    return found


class System:
    """The root image as the loader sees it: its libraries and the versions each one defines."""

    def __init__(self, libraries: dict[str, str], machine: str, elfclass: int) -> None:
        self.libraries = libraries
        self.machine = machine
        self.elfclass = elfclass
        self._defines: dict[str, set[str]] = {}

    def defines(self, path: str) -> set[str]:
        """The versions the library at `path` defines (read once)."""
        if path not in self._defines:
            try:
                with open(path, "rb") as stream:
                    self._defines[path] = set(elf_facts(stream)["defines"])
            except (OSError, ELFError):
                self._defines[path] = set()
        return self._defines[path]


def installed_path(member: str) -> str:
    """Where a wheel member lands relative to site-packages (purelib and platlib data included)."""
    if ".data/" not in member:  # nearly every member: called once per file of every wheel
        return member
    parts = member.split("/")
    if len(parts) > 2 and parts[0].endswith(".data") and parts[1] in ("purelib", "platlib"):
        return "/".join(parts[2:])
    return member


class Tree:
    """Every file the lock's wheels install, as paths relative to site-packages."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = set(paths)
        self._by_name: dict[str, list[str]] | None = None

    @property
    def by_name(self) -> dict[str, list[str]]:
        """File name -> installed paths, built on first use (a rare fallback of `resolve`)."""
        if self._by_name is None:
            self._by_name = {}
            for path in sorted(self.paths):
                self._by_name.setdefault(posixpath.basename(path), []).append(path)
        return self._by_name


def resolve(name: str, origin: str, facts: dict[str, Any], tree: Tree, system: System) -> tuple[str, str] | None:
    """Find the library `name` needed by a file installed in `origin` (relative to site-packages).

    Returns ("wheel", installed path), ("system", path) or None. The order is the loader's:
    RPATH (when there is no RUNPATH), RUNPATH, the root image's directories; then any file of
    that name in the wheels, which a package may load itself before (auditwheel's `.libs`, a
    library preloaded with ctypes).
    """
    if "/" in name:
        candidate = posixpath.normpath(posixpath.join(origin, name))
        if name.startswith("/"):
            return ("system", name) if os.path.exists(name) else None
        return ("wheel", candidate) if candidate in tree.paths else None
    search: list[str] = [*([] if facts["runpath"] else facts["rpath"]), *facts["runpath"]]
    for entry in search:
        expanded = entry.replace("${ORIGIN}", "$ORIGIN")
        if expanded.startswith("$ORIGIN"):
            candidate = posixpath.normpath(posixpath.join(origin, "." + expanded[len("$ORIGIN") :], name))
            if candidate in tree.paths:
                return ("wheel", candidate)
        elif expanded.startswith("/"):
            candidate = posixpath.join(expanded, name)
            if os.path.isfile(candidate):
                return ("system", candidate)
    if name in system.libraries:
        return ("system", system.libraries[name])
    elsewhere = tree.by_name.get(name)
    if elsewhere:
        return ("wheel", elsewhere[0])
    return None


def check_tags(wheel: str, supported: set[str]) -> dict[str, Any] | None:
    """A finding when none of the wheel's tags is supported by the runtime's interpreter."""
    tags: frozenset[Tag] | None
    try:
        _name, _version, _build, tags = parse_wheel_filename(wheel)
    except InvalidWheelFilename as err:
        # pip installs some wheels whose name or version packaging finds invalid: their tags,
        # the last three fields, are what counts here.
        parts = wheel[: -len(".whl")].split("-") if wheel.endswith(".whl") else []
        try:
            tags = parse_tag("-".join(parts[-3:])) if len(parts) >= 5 else None
        except ValueError:
            tags = None
        if not tags:
            return {"wheel": wheel, "file": "", "kind": "tags", "tags": [], "detail": str(err)}
    if any(str(tag) in supported for tag in tags):
        return None
    return {"wheel": wheel, "file": "", "kind": "tags", "tags": sorted(str(tag) for tag in tags)}


def may_be_loaded(member: str) -> bool:
    """False for the wheel's metadata and for files whose suffix no loaded file has."""
    top = member.split("/", 1)[0]
    if top.endswith(".dist-info"):
        return False
    suffix = posixpath.splitext(member)[1].lower()
    return suffix not in NOT_LOADED_SUFFIXES


def check_wheels(
    paths: list[str], system: System, supported: set[str], archives: dict[str, zipfile.ZipFile] | None = None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Check the wheels at `paths` (one lock) against the system; return (findings, counts).

    The wheels are opened into `archives` (file name -> ZipFile) when given, for the caller to
    read further and close; otherwise they are closed here.
    """
    findings: list[dict[str, Any]] = []
    keep = archives is not None
    archives = {} if archives is None else archives
    for path in paths:
        wheel = posixpath.basename(path)
        finding = check_tags(wheel, supported)
        if finding:
            findings.append(finding)
        try:
            archives[wheel] = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as err:
            findings.append({"wheel": wheel, "file": "", "kind": "unreadable", "detail": str(err)})
    tree = Tree(installed_path(name) for archive in archives.values() for name in archive.namelist())
    elves: list[tuple[str, str, bytes, dict[str, Any]]] = []
    for wheel, archive in archives.items():
        for info in archive.infolist():
            if info.is_dir() or info.file_size < 64 or not may_be_loaded(info.filename):
                continue
            with archive.open(info) as member:
                if member.read(4) != ELF_MAGIC:
                    continue
            content = archive.read(info)
            try:
                facts = elf_facts(io.BytesIO(content))
            except (ELFError, ValueError, EOFError):
                # Not a file the loader could load either (test data, a truncated sample): only
                # what a package can actually load is the gate's business.
                continue
            elves.append((wheel, info.filename, content, facts))
    wheel_defines = {installed_path(name): set(facts["defines"]) for _wheel, name, _content, facts in elves}
    for wheel, name, content, facts in elves:
        findings.extend(check_elf(wheel, name, content, facts, tree, system, wheel_defines))
    if not keep:
        for archive in archives.values():
            archive.close()
    return findings, {"wheels": len(paths), "elf_files": len(elves)}


def check_elf(
    wheel: str,
    name: str,
    content: bytes,
    facts: dict[str, Any],
    tree: Tree,
    system: System,
    wheel_defines: dict[str, set[str]],
) -> list[dict[str, Any]]:
    """The findings of one ELF member of a wheel."""
    if facts["type"] not in ("ET_DYN", "ET_EXEC"):
        return []
    where = {"wheel": wheel, "file": name}
    if (facts["machine"], facts["class"]) != (system.machine, system.elfclass):
        return [
            {
                **where,
                "kind": "architecture",
                "machine": f"{architecture(facts['machine'], facts['class'])} ({facts['class']}-bit)",
                "expected": f"{architecture(system.machine, system.elfclass)} ({system.elfclass}-bit)",
            }
        ]
    findings: list[dict[str, Any]] = []
    origin = posixpath.dirname(installed_path(name))
    providers: dict[str, tuple[str, str]] = {}
    for library in facts["needed"]:
        found = resolve(library, origin, facts, tree, system)
        if found is None:
            findings.append({**where, "kind": "library", "library": library})
        else:
            providers[library] = found
    for library, versions in sorted(facts["needs"].items()):
        found = providers.get(library) or resolve(library, origin, facts, tree, system)
        if found is None:
            continue
        kind, path = found
        defined = wheel_defines.get(path, set()) if kind == "wheel" else system.defines(path)
        # A library without version definitions satisfies any version: ld.so only warns
        # "no version information available".
        missing = sorted({version for version in versions if version not in defined}) if defined else []
        if missing:
            symbols = symbols_needing(io.BytesIO(content), library, set(missing))
            findings.append(
                {
                    **where,
                    "kind": "symbol",
                    "library": library,
                    "versions": missing,
                    "symbols": symbols,
                    "newest": newest_versions(defined, missing),
                }
            )
    return findings


def newest_versions(defined: Iterable[str], missing: Iterable[str]) -> list[str]:
    """For each family of the missing versions (GLIBC_, GLIBCXX_...), the newest one the library defines."""
    newest: list[str] = []
    for family in sorted({version.rstrip("0123456789.") for version in missing}):
        same = [version for version in defined if version.rstrip("0123456789.") == family]
        if same:
            newest.append(max(same, key=_version_key))
    return newest


def _version_key(version: str) -> list[int]:
    return [int(part) for part in re.findall(r"\d+", version)]


def runtime_facts() -> tuple[str, int, list[str]]:
    """The interpreter's machine and tags, as the runner's python will see them."""
    with open(os.path.realpath(sys.executable), "rb") as stream:
        elf = ELFFile(stream)
        machine, elfclass = elf["e_machine"], elf.elfclass
    tags = [str(tag) for tag in sys_tags()]
    return machine, elfclass, tags


def lock_wheels(lock_dir: str, key: str) -> list[str] | None:
    """The wheel files the lock `key` in `lock_dir` names, or None when there is no such lock."""
    try:
        with open(posixpath.join(lock_dir, key + ".json")) as stream:
            lock = json.load(stream)
    except FileNotFoundError:
        return None
    entries = [lock["application"], *lock["dependencies"], lock["installer"]]
    return [entry["file"] for entry in entries]


def check(request: AbiRequest, collector: Collector | None = None) -> dict[str, Any]:
    """The report for `request`: what the runtime's loader would say of its wheels.

    With the request's `sbom` and nothing found, the report holds `collector`'s facts for it,
    from the wheels already open: the build then starts no container for them (the root image's
    package database is the runner's).
    """
    wheels = request.get("wheels") or lock_wheels(request["lock_dir"], request["lock"])
    if wheels is None:
        return {"lock_missing": True}
    machine, elfclass, tags = runtime_facts()
    system = System(system_libraries(loader_dirs()), machine, elfclass)
    findings: list[dict[str, Any]] = []
    paths: list[str] = []
    for wheel in wheels:
        path = posixpath.join(request["wheel_dir"], wheel)
        if os.path.isfile(path):
            paths.append(path)
        else:
            findings.append({"wheel": wheel, "file": "", "kind": "unreadable", "detail": "not in the wheel volume"})
    archives: dict[str, zipfile.ZipFile] = {}
    found, counts = check_wheels(paths, system, set(tags), archives)
    report: dict[str, Any] = {
        "runtime": {
            "architecture": architecture(machine, elfclass),
            "tags": tags[:3],
            "libraries": len(system.libraries),
        },
        "findings": findings + found,
        "checked": counts,
    }
    if request.get("sbom") and collector is not None and not report["findings"]:
        report["sbom"] = collector(request["sbom"], archives)
    for archive in archives.values():
        archive.close()
    return report


def main(argv: list[str]) -> int:
    """Check the wheels the request file argv[1] names; print RESULT_MARK and the report."""
    with open(argv[1]) as stream:
        request: AbiRequest = json.load(stream)
    collector = None
    if request.get("sbom"):
        if TYPE_CHECKING:
            from grocker.resources.sbom import collect
        else:
            import collect  # copied beside this script
        collector = collect.collect
    print(RESULT_MARK + json.dumps(check(request, collector), sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
