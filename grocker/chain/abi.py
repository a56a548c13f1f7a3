"""The ABI gate: every wheel of the lock is checked against the runtime before the runner is built.

The check runs engine-side (the wheels are in the engine's volume and the libraries in the root
image, and the engine may be remote), in a short-lived container of the root image with the
wheel volume mounted read-only, using the root image's own python. The checker script
(resources/abi/check.py) and the pure-Python libraries it needs, pyelftools and packaging, are
copied into that container from this interpreter's installation: nothing is downloaded and no
image changes. A missing library is then looked up in the compiler image, which has the build
packages and so often the run-time package too, to name the package to add to dependencies.run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import packaging
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from grocker import labels as keys
from grocker import layout
from grocker._version import __version__
from grocker.config import ProjectConfig
from grocker.config.families import family_of
from grocker.config.release import Release
from grocker.engine.protocol import NO_NETWORK, ChainEngine, LabelledImage, LineHandler
from grocker.errors import BuildError, EngineError, cut
from grocker.log import counted, logger, phase, tail
from grocker.naming import InternalNames, base_kind, internal_labels
from grocker.wheels import WheelFile, WheelLock, lock_key
from grocker.wire.abi import RESULT_MARK, AbiRequest
from grocker.wire.sbom import collect_request

CHECK_DIR = "/tmp/grocker-abi"
CACHE_PATH = "/var/tmp"
# How Docker and Podman say a container's command does not exist in its image.
_NO_INTERPRETER_RE = re.compile(r"executable file (?:`[^`]*` )?not found|exec: \S+: not found")
Kind = Literal["tags", "architecture", "library", "symbol", "unreadable"]
# A library name as it may reach the compiler container's command line: a file name, nothing more.
_SONAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
# `dpkg-query -S '*/NAME'`: "pkg1:arch, pkg2: /usr/lib/.../NAME"; prefixed with the name by our script.
_DPKG_LINE_RE = re.compile(r"(?P<name>\S+) (?P<packages>[^/]+?): (?P<path>/\S+)")
# `apk info --who-owns PATH`: "PATH is owned by pkg-1.2.3-r0"; prefixed with the name by our script.
_APK_LINE_RE = re.compile(r"(?P<name>\S+) (?P<path>/\S+) is owned by (?P<package>\S+)")
_APK_VERSION_RE = re.compile(r"-[0-9][^-]*-r[0-9]+$")


@dataclass(frozen=True)
class Finding:
    """One reason a wheel would not work in the runner."""

    wheel: str
    file: str
    kind: Kind
    library: str = ""
    detail: str = ""
    expected: str = ""
    tags: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    newest: tuple[str, ...] = ()
    packages: tuple[str, ...] = field(default=(), compare=False)

    def describe(self, runtime: Mapping[str, Any], base: str = "root image") -> str:
        """One line for the error's details: the wheel, the file, what is missing, what to add.

        `base` is where the wheels were checked, in words (naming.base_kind): the minimal base
        lacks libraries the root image has (those of the cut packages), so naming the root image
        there would send the user looking in the wrong image.
        """
        where = f"{self.wheel}: {self.file}" if self.file else self.wheel
        if self.kind == "tags":
            if self.detail:
                return f"{where}: not a valid wheel file name ({self.detail})"
            wanted = ", ".join(runtime.get("tags", [])[:1]) or "?"
            return (
                f"{where}: its tags ({', '.join(self.tags)}) match none of the runtime's "
                f"interpreter, ABI and platform (the most specific it accepts is {wanted})"
            )
        if self.kind == "architecture":
            return f"{where} is built for {self.detail}, but the runtime runs {self.expected}"
        if self.kind == "library":
            text = f"{where} needs {self.library}, found neither in the {base} nor in the wheels"
            if self.packages:
                return f"{text}; {' or '.join(self.packages)} provides it: add it to dependencies.run"
            return f"{text}; no package installed in the compiler image has a file of that name"
        if self.kind == "symbol":
            needed = ", ".join(self.symbols) or ", ".join(self.versions)
            newest = f" (its newest is {', '.join(self.newest)})" if self.newest else ""
            return (
                f"{where} needs {needed} from {self.library}, a version the runtime's {self.library} "
                f"does not define{newest}"
            )
        return f"{where}: cannot be read ({self.detail})"


@dataclass(frozen=True)
class Report:
    """What the checker found, and what it looked at."""

    findings: tuple[Finding, ...]
    runtime: Mapping[str, Any]
    wheels: int = 0
    elf_files: int = 0
    sbom: Mapping[str, Any] | None = None
    """The SBOM collector's facts, gathered by the same container when the build asks for an SBOM."""
    memo: str | None = None
    """What the runner records in ABI_CHECKED_LABEL: the root image and the wheels that passed."""


def check_wheels(
    engine: ChainEngine,
    config: ProjectConfig,
    names: InternalNames,
    release: Release,
    lock: WheelLock | None,
    on_line: LineHandler,
    runners: Sequence[LabelledImage] | None = None,
) -> Report | None:
    """Check the lock's wheels against the root image; raise BuildError listing every miss.

    With no lock (--no-build-dependencies), the lock of the release is read from the volume.
    Returns None when there is no volume or no lock to check: the runner build then says so.
    With `config.sbom`, the same container also collects the SBOM's facts (Report.sbom): the
    root image's package database is the runner's, and the checker has every wheel open.
    `runners`: the engine's runner images, listed already (grocker.chain.freshness.listing_runners);
    without them, the engine is asked for the one that records the memo.
    """
    if engine.volume_labels(names.volume) is None:
        return None
    # The wheels are checked where the runner will run them: the root image or the minimal base.
    root = engine.image(names.runner_base(config))
    memo = memo_key(root.id, config.runtime.python, lock) if root is not None and lock is not None else None
    if lock is not None and memo is not None:
        passed = _passed_before(engine, config, lock, memo, runners)
        if passed is not None:
            with phase("check wheels against the runtime") as note:
                note(passed)
            return Report(findings=(), runtime={}, wheels=len(_lock_wheels(lock)), memo=memo)
    key = lock_key(release, config.pip_constraint, names.index_domain)
    request = checker_request(key, lock, sbom=config.sbom is not None)
    with phase("check wheels against the runtime") as note:
        report = _run_checker(engine, config, names, request, on_line)
        if report is None:
            return None
        note(f"{counted(report.wheels, 'wheel')}, {counted(report.elf_files, 'ELF file')}")
        if report.findings:
            missing = sorted({finding.library for finding in report.findings if finding.kind == "library"})
            packages = suggest_packages(engine, config, names, missing, on_line)
            findings = tuple(_with_packages(finding, packages.get(finding.library, ())) for finding in report.findings)
            details = gate_details(findings, report.runtime, base_kind(config))
            raise BuildError(gate_message(findings, config), details=details)
    return dataclasses.replace(report, memo=memo)


def checker_request(key: str, lock: WheelLock | None, sbom: bool) -> AbiRequest:
    """The checker's request: the wheels of `lock`, or without it those of the volume's lock `key`.

    With `sbom`, the SBOM collector's request too (see Report.sbom).
    """
    request: AbiRequest = {"wheel_dir": layout.COMPILE_MOUNT, "lock_dir": f"{layout.COMPILE_MOUNT}/{layout.LOCKS_DIR}"}
    if lock is None:
        request["lock"] = key
    else:
        request["wheels"] = [wheel.file for wheel in _lock_wheels(lock)]
    if sbom:
        # The runner installs the application and its dependencies, not the installer (pip).
        files = None if lock is None else [wheel.file for wheel in (lock.application, *lock.dependencies)]
        request["sbom"] = collect_request(key, files)
    return request


def _lock_wheels(lock: WheelLock) -> tuple[WheelFile, ...]:
    return (lock.application, *lock.dependencies, lock.installer)


def gated(wheel: WheelFile) -> bool:
    """True when the gate has something to check in `wheel`.

    A wheel the publisher recorded without ELF files, tagged for any Python 3 on any platform
    (py3-none-any), loads wherever the runtime's Python runs: nothing to check. Any other wheel
    (an ELF file, or not known; tags of one interpreter, ABI or platform) is checked.
    """
    if wheel.elf is not False:
        return True
    try:
        tags = parse_wheel_filename(wheel.file)[3]
    except InvalidWheelFilename:
        return True
    return not any(tag.interpreter == "py3" and tag.abi == "none" and tag.platform == "any" for tag in tags)


def memo_key(root_id: str, python: str, lock: WheelLock) -> str:
    """The digest of what the gate's verdict depends on: Grocker, the root image and its Python, the gated wheels."""
    wheels = sorted({wheel.sha256 for wheel in _lock_wheels(lock) if gated(wheel)})
    content = {"grocker": __version__, "root": root_id, "python": python, "wheels": wheels}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()


def _passed_before(
    engine: ChainEngine,
    config: ProjectConfig,
    lock: WheelLock,
    memo: str,
    runners: Sequence[LabelledImage] | None = None,
) -> str | None:
    """Why the gate need not run for `lock`, or None when it must.

    Nothing to check, or a runner Grocker built on this engine records (ABI_CHECKED_LABEL) that
    the same wheels passed the gate against the same root image: the check would say the same
    again. Only a runner image of this Grocker version and runtime counts (its role, version
    and runtime labels): any other image carrying the label, whoever built it, is no verdict.
    The runner is looked for among `runners` (the engine's runner images) when given.
    """
    count = sum(1 for wheel in _lock_wheels(lock) if gated(wheel))
    if count == 0:
        return "nothing to check: no wheel has an ELF file or tags for one interpreter"
    wanted = {
        keys.ABI_CHECKED_LABEL: memo,
        keys.ROLE_LABEL: keys.RUNNER,
        keys.VERSION_LABEL: __version__,
        keys.RUNTIME_LABEL: config.runtime.name,
    }
    if runners is None:
        image = engine.labelled_image(wanted)
    else:
        matching = (found.id for found in runners if all(found.labels.get(k) == v for k, v in wanted.items()))
        image = next(matching, None)
    if image is None:
        return None
    where = base_kind(config)
    return f"the same {counted(count, 'wheel')} with ELF files or tags passed it on this {where} for {image[:19]}"


def _with_packages(finding: Finding, packages: Sequence[str]) -> Finding:
    if finding.kind != "library" or not packages:
        return finding
    return dataclasses.replace(finding, packages=tuple(packages))


def cache_volume(names: InternalNames) -> str:
    """The volume of the checker's bytecode, beside the wheel volume of the same configuration."""
    return names.volume.replace("grocker-wheel-cache-", "grocker-abi-cache-", 1)


def checker_files() -> dict[str, bytes]:
    """The checker script, the SBOM collector it may import, and the libraries they import."""
    # Here, not at the top: pyelftools is only copied into a container, and `import grocker`
    # (which imports the chain) stays without it.
    import elftools

    package = resources.files("grocker")
    files = {
        "check.py": package.joinpath("resources/abi/check.py").read_bytes(),
        "collect.py": package.joinpath("resources/sbom/collect.py").read_bytes(),
    }
    for module in (elftools, packaging):
        files.update(package_sources(module, "lib"))
    return files


def package_sources(module: ModuleType, folder: str) -> dict[str, bytes]:
    """The .py files of an installed package, as `folder`/PACKAGE/..., without bytecode or data."""
    root = Path(module.__file__ or "").parent
    return {
        f"{folder}/{root.name}/{path.relative_to(root).as_posix()}": path.read_bytes()
        for path in sorted(root.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def _run_checker(
    engine: ChainEngine,
    config: ProjectConfig,
    names: InternalNames,
    request: AbiRequest,
    on_line: LineHandler,
) -> Report | None:
    files = checker_files()
    # Compiling pyelftools and packaging is most of the check's time: their bytecode is kept in a
    # small volume, one folder per content of the files, so a changed file is never run stale.
    digest = hashlib.sha256(b"".join(path.encode() + b"\0" + files[path] for path in sorted(files))).hexdigest()
    cache = cache_volume(names)
    engine.create_volume(cache, internal_labels(config, keys.ABI_CACHE))
    files["request.json"] = json.dumps(request).encode("utf-8")
    base = names.runner_base(config)
    with engine.container(
        base,
        role=keys.ABI_CHECK,
        labels=internal_labels(config, keys.ABI_CHECK),
        # -s: no user site; -I would also drop PYTHONPATH.
        entrypoint=[config.runtime.python, "-s", f"{CHECK_DIR}/check.py", f"{CHECK_DIR}/request.json"],
        environment={"PYTHONPATH": f"{CHECK_DIR}/lib", "PYTHONPYCACHEPREFIX": f"{CACHE_PATH}/{digest[:16]}"},
        # The cache's mount point exists in every base image, world-writable: a new volume takes
        # its permissions, so that the unprivileged user can write there.
        volumes={names.volume: (layout.COMPILE_MOUNT, "ro"), cache: (CACHE_PATH, "rw")},
        user="grocker",
        network=NO_NETWORK,  # it reads files only
    ) as container:
        container.put_files("/tmp", {f"grocker-abi/{path}": content for path, content in files.items()})
        try:
            status, lines = container.run(on_line)
        except EngineError as err:
            if not _NO_INTERPRETER_RE.search(str(err)):
                raise
            # The engine could not even start the root image's python: the runtime's fault, not the engine's.
            raise BuildError(
                f"The ABI check of the wheels could not run in the {base_kind(config)} {base}: it has no "
                f"{config.runtime.python}. A runtime's root image must have its Python: add its package "
                "to the runtime's run dependencies, or fix the runtime's `python`.",
                details=cut(str(err), 300),
            ) from err
    data = parse_result(lines) if status == 0 else None
    if data is None:
        raise BuildError(
            f"The ABI check of the wheels could not run in the {base_kind(config)} {base} (exit status "
            f"{status}). Its python ({config.runtime.python}) must be able to run a script; check the "
            "runtime's `python` and run packages. The check's output ends with:",
            details=tail(lines),
        )
    if data.get("lock_missing"):
        return None
    checked = data.get("checked", {})
    return Report(
        findings=tuple(parse_finding(item) for item in data.get("findings", [])),
        runtime=data.get("runtime", {}),
        wheels=int(checked.get("wheels", 0)),
        elf_files=int(checked.get("elf_files", 0)),
        sbom=data.get("sbom"),
    )


def parse_result(lines: Sequence[str]) -> dict[str, Any] | None:
    """The checker's JSON result from its output, or None when it printed none."""
    for line in reversed(lines):
        if line.startswith(RESULT_MARK):
            try:
                data = json.loads(line[len(RESULT_MARK) :])
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None


def parse_finding(item: Mapping[str, Any]) -> Finding:
    """A Finding from one entry of the checker's JSON."""
    kind = item.get("kind")
    wheel, file = _printable(item.get("wheel", "")), _printable(item.get("file", ""))
    if kind == "tags":
        tags = tuple(_printable(tag) for tag in item.get("tags", ()))
        return Finding(wheel, file, "tags", detail=_printable(item.get("detail", "")), tags=tags)
    if kind == "architecture":
        return Finding(
            wheel,
            file,
            "architecture",
            detail=_printable(item.get("machine", "")),
            expected=_printable(item.get("expected", "")),
        )
    if kind == "library":
        return Finding(wheel, file, "library", library=_printable(item.get("library", "")))
    if kind == "symbol":
        return Finding(
            wheel,
            file,
            "symbol",
            library=_printable(item.get("library", "")),
            versions=tuple(map(_printable, item.get("versions", ()))),
            symbols=tuple(map(_printable, item.get("symbols", ()))),
            newest=tuple(map(_printable, item.get("newest", ()))),
        )
    return Finding(wheel, file, "unreadable", detail=_printable(item.get("detail", "")))


def _printable(value: object) -> str:
    """Names from inside a wheel, made safe to print: no control characters reach the terminal."""
    return "".join(char if char.isprintable() else "?" for char in str(value))


def gate_message(findings: Sequence[Finding], config: ProjectConfig) -> str:
    """The error's paragraph: what failed, why, and what to do for each kind of finding."""
    wheels = sorted({finding.wheel for finding in findings})
    count = counted(len(wheels), "wheel")
    kinds = {finding.kind for finding in findings}
    advice = []
    if "library" in kinds:
        # The minimal base cuts packages the root image has (grep's libpcre2, apt's libstdc++...):
        # a library present there is no reason to expect it in the minimal runner.
        cut_too = (
            "; nor is a library of the root image: the minimal base keeps only the runtime's packages and "
            "those of dependencies.run, with what they depend on"
            if config.runner == "minimal"
            else ""
        )
        advice.append(
            "add the run-time package of each missing library to dependencies.run in .grocker.yml "
            f"(its -dev package in dependencies.build is not enough: only the compiler image has it{cut_too})"
        )
    if "symbol" in kinds:
        advice.append(
            "build the wheels on this runtime, or on one with an older glibc or libstdc++ "
            f"(a wheel compiled on a newer distribution than {config.runtime.image} needs newer symbols)"
        )
    if "architecture" in kinds or "tags" in kinds:
        advice.append(
            f"use wheels built for this runtime's Python {config.runtime.python_version} and architecture, "
            "or let Grocker compile them from their sdists"
        )
    if "unreadable" in kinds:
        advice.append("run the build again with --build-dependencies to rewrite the wheels")
    return (
        f"The ABI check failed before the runner image was built: {count} of the lock would not load "
        f"in the {base_kind(config)} of runtime {config.runtime.name} ({', '.join(wheels)}). "
        f"To fix it, {'; '.join(advice)}. "
        "What is missing, file by file:"
    )


def gate_details(findings: Sequence[Finding], runtime: Mapping[str, Any], base: str = "root image") -> str:
    """One line per finding, for the error's details; `base` is where the wheels were checked."""
    return "\n".join(finding.describe(runtime, base) for finding in findings)


def suggest_packages(
    engine: ChainEngine,
    config: ProjectConfig,
    names: InternalNames,
    libraries: Sequence[str],
    on_line: LineHandler,
) -> dict[str, tuple[str, ...]]:
    """Library name -> the system packages of the compiler image that install it."""
    wanted = [name for name in libraries if _SONAME_RE.fullmatch(name)]
    family = config.runtime.family
    if not wanted or engine.image(names.compiler) is None:
        return {}
    with engine.container(
        names.compiler,
        role=keys.ABI_SUGGEST,
        labels=internal_labels(config, keys.ABI_SUGGEST),
        entrypoint=["/bin/sh", "-c", family_of(family).owner_query, "sh"],
        command=wanted,
    ) as container:
        status, lines = container.run(on_line)
    if status != 0:
        logger.debug("looking up the packages of %s failed (exit status %s)", ", ".join(wanted), status)
        return {}
    return parse_owners(lines, family)


def parse_owners(lines: Sequence[str], family: str) -> dict[str, tuple[str, ...]]:
    """Library name -> packages, from the suggestion script's output (dpkg-query or apk)."""
    owners: dict[str, list[str]] = {}
    for line in lines:
        if family == "debian":
            found = _DPKG_LINE_RE.fullmatch(line.strip())
            if found is None or Path(found["path"]).name != found["name"]:
                continue
            packages = [package.strip().split(":")[0] for package in found["packages"].split(",")]
        else:
            found = _APK_LINE_RE.fullmatch(line.strip())
            if found is None or Path(found["path"]).name != found["name"]:
                continue
            packages = [_APK_VERSION_RE.sub("", found["package"])]
        known = owners.setdefault(found["name"], [])
        known.extend(package for package in packages if package and package not in known)
    return {name: tuple(packages) for name, packages in owners.items()}
