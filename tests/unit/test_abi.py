"""The ABI gate's checker on real ELF files that the tests compile, and the host side's parsing."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from grocker import api, naming
from grocker.chain import abi
from grocker.config import ProjectConfig
from grocker.config.pipconf import PipSettings
from grocker.config.release import parse_release
from grocker.engine.protocol import LabelledImage
from grocker.errors import BuildError
from grocker.labels import ABI_CHECKED_LABEL, ROLE_LABEL, RUNTIME_LABEL, VERSION_LABEL
from grocker.trust import index_domain
from grocker.wheels import WheelFile, WheelLock, lock_key, parse_lock
from tests.unit.conftest import load_module
from tests.unit.fakes import FakeEngine

CHECKER = Path(abi.__file__).parents[1] / "resources" / "abi" / "check.py"
CEXT = "c-1.0-cp313-cp313-linux_x86_64.whl"
HOST_TAGS = {"cp311-cp311-linux_x86_64", "cp311-cp311-manylinux_2_17_x86_64", "py3-none-any"}


def _load_checker() -> ModuleType:
    return load_module(CHECKER, "grocker_abi_check")


check = _load_checker()


def _compile(tmp_path: Path, name: str, source: str, *flags: str, compiler: str = "gcc") -> Path:
    if shutil.which(compiler) is None:
        pytest.fail(f"{compiler} is missing: scripts/setup-machine.sh installs it")
    (tmp_path / f"{name}.c").write_text(source)
    output = tmp_path / name
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", str(output), str(tmp_path / f"{name}.c"), *flags],
        check=True,
        capture_output=True,
    )
    return output


def _wheel(tmp_path: Path, name: str, members: dict[str, bytes]) -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    return path


def _host_system(drop: frozenset[str] = frozenset()) -> object:
    """The host's loader view, without the libraries in `drop`."""
    libraries = {name: path for name, path in check.system_libraries(check.loader_dirs()).items() if name not in drop}
    with open(sys.executable, "rb") as stream:
        elf = check.ELFFile(stream)
        return check.System(libraries, elf["e_machine"], elf.elfclass)


@pytest.fixture(scope="module")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A private library with a version script, and an extension that links it and libm."""
    work = tmp_path_factory.mktemp("elf")
    (work / "libgrockerabi.map").write_text("GROCKERABI_1.0 { global: grocker_abi_answer; local: *; };\n")
    private = _compile(
        work,
        "libgrockerabi.so.1",
        "int grocker_abi_answer(void) { return 42; }\n",
        "-Wl,-soname,libgrockerabi.so.1",
        f"-Wl,--version-script,{work / 'libgrockerabi.map'}",
    )
    extension = _compile(
        work,
        "_ext.so",
        "#include <math.h>\nint grocker_abi_answer(void);\n"
        "double ext(double x) { return cos(x) + grocker_abi_answer(); }\n",
        f"-L{work}",
        "-l:libgrockerabi.so.1",
        "-lm",
        "-Wl,-rpath,$ORIGIN/../demo.libs",
    )
    return {"private": private, "extension": extension}


def test_elf_facts_of_an_extension(libraries: dict[str, Path]) -> None:
    facts = check.elf_facts(io.BytesIO(libraries["extension"].read_bytes()))

    assert facts["machine"] == "EM_X86_64"
    assert facts["type"] == "ET_DYN"
    assert {"libgrockerabi.so.1", "libm.so.6"} <= set(facts["needed"])
    assert facts["rpath"] + facts["runpath"] == ["$ORIGIN/../demo.libs"]
    assert "GROCKERABI_1.0" in facts["needs"]["libgrockerabi.so.1"]
    assert any(version.startswith("GLIBC_2.") for version in facts["needs"]["libm.so.6"])


def test_elf_facts_of_a_library_list_its_version_definitions(libraries: dict[str, Path]) -> None:
    facts = check.elf_facts(io.BytesIO(libraries["private"].read_bytes()))

    assert facts["soname"] == "libgrockerabi.so.1"
    assert facts["defines"] == ["GROCKERABI_1.0"]


def test_a_wheel_with_its_library_in_dot_libs_passes(tmp_path: Path, libraries: dict[str, Path]) -> None:
    wheel = _wheel(
        tmp_path,
        "demo-1.0-cp311-cp311-linux_x86_64.whl",
        {
            "demo/_ext.so": libraries["extension"].read_bytes(),
            "demo.libs/libgrockerabi.so.1": libraries["private"].read_bytes(),
            "demo/__init__.py": b"",
        },
    )

    findings, counts = check.check_wheels([str(wheel)], _host_system(), HOST_TAGS)

    assert findings == []
    assert counts == {"wheels": 1, "elf_files": 2}


def test_a_missing_library_is_named_with_the_file_that_needs_it(tmp_path: Path, libraries: dict[str, Path]) -> None:
    wheel = _wheel(
        tmp_path, "demo-1.0-cp311-cp311-linux_x86_64.whl", {"demo/_ext.so": libraries["extension"].read_bytes()}
    )

    findings, _counts = check.check_wheels([str(wheel)], _host_system(), HOST_TAGS)

    assert findings == [
        {
            "wheel": "demo-1.0-cp311-cp311-linux_x86_64.whl",
            "file": "demo/_ext.so",
            "kind": "library",
            "library": "libgrockerabi.so.1",
        }
    ]


def test_a_system_library_missing_from_the_root_image_is_found(tmp_path: Path, libraries: dict[str, Path]) -> None:
    wheel = _wheel(
        tmp_path,
        "demo-1.0-cp311-cp311-linux_x86_64.whl",
        {
            "demo/_ext.so": libraries["extension"].read_bytes(),
            "demo.libs/libgrockerabi.so.1": libraries["private"].read_bytes(),
        },
    )

    findings, _counts = check.check_wheels([str(wheel)], _host_system(frozenset({"libm.so.6"})), HOST_TAGS)

    assert [(finding["kind"], finding["library"]) for finding in findings] == [("library", "libm.so.6")]


def test_a_symbol_version_the_library_does_not_define_is_named_with_its_symbol(
    tmp_path: Path, libraries: dict[str, Path]
) -> None:
    # The wheel's own library defines GROCKERABI_1.0 only; an extension asking for GROCKERABI_2.0
    # is what a wheel built against a newer library looks like.
    work = tmp_path / "newer"
    work.mkdir()
    (work / "libgrockerabi.map").write_text(
        "GROCKERABI_1.0 { global: grocker_abi_answer; local: *; };\n"
        "GROCKERABI_2.0 { global: grocker_abi_new; } GROCKERABI_1.0;\n"
    )
    _compile(
        work,
        "libgrockerabi.so.1",
        "int grocker_abi_answer(void) { return 42; }\nint grocker_abi_new(void) { return 43; }\n",
        "-Wl,-soname,libgrockerabi.so.1",
        f"-Wl,--version-script,{work / 'libgrockerabi.map'}",
    )
    extension = _compile(
        work,
        "_new.so",
        "int grocker_abi_new(void);\nint ext(void) { return grocker_abi_new(); }\n",
        f"-L{work}",
        "-l:libgrockerabi.so.1",
    )
    wheel = _wheel(
        tmp_path,
        "demo-1.0-cp311-cp311-linux_x86_64.whl",
        {"demo/_new.so": extension.read_bytes(), "demo.libs/libgrockerabi.so.1": libraries["private"].read_bytes()},
    )

    findings, _counts = check.check_wheels([str(wheel)], _host_system(), HOST_TAGS)

    assert findings == [
        {
            "wheel": "demo-1.0-cp311-cp311-linux_x86_64.whl",
            "file": "demo/_new.so",
            "kind": "symbol",
            "library": "libgrockerabi.so.1",
            "versions": ["GROCKERABI_2.0"],
            "symbols": ["grocker_abi_new@GROCKERABI_2.0"],
            "newest": ["GROCKERABI_1.0"],
        }
    ]


def test_glibc_versions_of_the_host_are_all_defined(tmp_path: Path, libraries: dict[str, Path]) -> None:
    # A GLIBC_ version the root's libc lacks is found the same way: here the host's own libc
    # must satisfy what the host's compiler asked of it, so the check has no false positive.
    system = _host_system()
    libc = system.libraries["libc.so.6"]

    assert "GLIBC_2.2.5" in system.defines(libc)
    assert check.newest_versions(system.defines(libc), ["GLIBC_9.0"]) == [
        max((v for v in system.defines(libc) if v.startswith("GLIBC_2")), key=check._version_key)
    ]


def test_an_elf_file_for_another_architecture_is_named(tmp_path: Path) -> None:
    foreign = _compile(tmp_path, "_arm.so", "int f(void) { return 1; }\n", compiler="aarch64-linux-gnu-gcc")
    wheel = _wheel(tmp_path, "demo-1.0-py3-none-linux_x86_64.whl", {"demo/_arm.so": foreign.read_bytes()})

    findings, _counts = check.check_wheels([str(wheel)], _host_system(), HOST_TAGS | {"py3-none-linux_x86_64"})

    assert findings == [
        {
            "wheel": "demo-1.0-py3-none-linux_x86_64.whl",
            "file": "demo/_arm.so",
            "kind": "architecture",
            "machine": "aarch64 (64-bit)",
            "expected": "x86_64 (64-bit)",
        }
    ]


def test_a_wheel_for_another_abi_is_named_with_its_tags(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, "demo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl", {"demo/__init__.py": b""})

    findings, _counts = check.check_wheels([str(wheel)], _host_system(), HOST_TAGS)

    assert findings == [
        {
            "wheel": "demo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl",
            "file": "",
            "kind": "tags",
            "tags": ["cp312-cp312-manylinux_2_17_x86_64"],
        }
    ]


def test_data_files_and_pure_wheels_are_not_checked_as_elf(tmp_path: Path) -> None:
    wheel = _wheel(
        tmp_path,
        "demo-1.0-py3-none-any.whl",
        {"demo/data.bin": b"\x7fELF" + b"\0" * 100, "demo/__init__.py": b"x = 1\n"},
    )

    findings, counts = check.check_wheels([str(wheel)], _host_system(), HOST_TAGS)

    assert findings == []
    assert counts["elf_files"] == 0


def test_data_paths_of_a_wheel_install_into_site_packages() -> None:
    assert check.installed_path("demo-1.0.data/platlib/demo/_ext.so") == "demo/_ext.so"
    assert check.installed_path("demo-1.0.data/scripts/tool") == "demo-1.0.data/scripts/tool"
    assert check.installed_path("demo.libs/libx.so") == "demo.libs/libx.so"


def test_loader_dirs_follow_ld_so_conf_includes(tmp_path: Path) -> None:
    (tmp_path / "etc" / "ld.so.conf.d").mkdir(parents=True)
    (tmp_path / "etc" / "ld.so.conf").write_text("# comment\ninclude /nowhere/*.conf\ninclude ld.so.conf.d/*.conf\n")
    (tmp_path / "etc" / "ld.so.conf.d" / "a.conf").write_text("/opt/a/lib\n/opt/b/lib # b\n")
    (tmp_path / "etc" / "ld-musl-x86_64.path").write_text("/lib:/usr/local/lib\n")

    dirs = check.loader_dirs(str(tmp_path))

    assert dirs[:2] == ["/opt/a/lib", "/opt/b/lib"]
    assert dirs[2:] == ["/lib", "/usr/local/lib", "/usr/lib", "/lib64", "/usr/lib64"]


def test_dpkg_owners_give_package_names_without_architecture() -> None:
    lines = [
        "libyaml-0.so.2 libyaml-0-2:amd64: /usr/lib/x86_64-linux-gnu/libyaml-0.so.2",
        "libyaml-0.so.2 libyaml-0-2:amd64: /usr/lib/x86_64-linux-gnu/libyaml-0.so.2.0.9",
        "libfoo.so.1 pkg-a, pkg-b:amd64: /usr/lib/libfoo.so.1",
        "diversion by foo from: /usr/lib/libbar.so",
    ]

    assert abi.parse_owners(lines, "debian") == {"libyaml-0.so.2": ("libyaml-0-2",), "libfoo.so.1": ("pkg-a", "pkg-b")}


def test_apk_owners_give_package_names_without_version() -> None:
    lines = ["libyaml-0.so.2 /usr/lib/libyaml-0.so.2 is owned by yaml-0.2.5-r2"]

    assert abi.parse_owners(lines, "alpine") == {"libyaml-0.so.2": ("yaml",)}


def test_findings_read_as_one_line_each_with_the_package_to_add() -> None:
    result = {
        "checked": {"elf_files": 1, "wheels": 2},
        "findings": [
            {"file": "cextapp/_y.so", "kind": "library", "library": "libyaml-0.so.2", "wheel": CEXT},
            {
                "file": "g/_g.so",
                "kind": "symbol",
                "library": "libc.so.6",
                "newest": ["GLIBC_2.36"],
                "symbols": ["strlcpy@GLIBC_2.38"],
                "versions": ["GLIBC_2.38"],
                "wheel": "g-1.0-py3-none-linux_x86_64.whl",
            },
        ],
        "runtime": {"architecture": "x86_64", "tags": ["cp311-cp311-manylinux_2_36_x86_64"]},
    }
    report = abi.parse_result(["noise", "GROCKER-ABI:" + json.dumps(result)])
    assert report is not None
    findings = [abi.parse_finding(item) for item in report["findings"]]
    findings[0] = abi._with_packages(findings[0], ["libyaml-0-2"])

    details = abi.gate_details(findings, report["runtime"]).splitlines()

    assert details == [
        f"{CEXT}: cextapp/_y.so needs libyaml-0.so.2, found neither in the root "
        "image nor in the wheels; libyaml-0-2 provides it: add it to dependencies.run",
        "g-1.0-py3-none-linux_x86_64.whl: g/_g.so needs strlcpy@GLIBC_2.38 from libc.so.6, a version the "
        "runtime's libc.so.6 does not define (its newest is GLIBC_2.36)",
    ]


def test_checker_files_carry_its_libraries_without_bytecode() -> None:
    files = abi.checker_files()

    assert "check.py" in files
    assert "lib/elftools/elf/elffile.py" in files
    assert "lib/packaging/tags.py" in files
    assert not any("__pycache__" in path or path.endswith(".pyc") for path in files)


def test_names_from_a_wheel_cannot_reach_the_terminal_as_control_characters() -> None:
    finding = abi.parse_finding(
        {"wheel": "x-1.0-py3-none-any.whl", "file": "x/\x1b[2J.so", "kind": "library", "library": "lib\x07.so"}
    )

    assert finding.describe({}).startswith("x-1.0-py3-none-any.whl: x/?[2J.so needs lib?.so,")


def test_a_library_without_version_definitions_satisfies_any_version(tmp_path: Path) -> None:
    # ld.so only warns ("no version information available") when the provider has no verdefs.
    plain = _compile(tmp_path, "libplain.so.1", "int plain(void) { return 1; }\n", "-Wl,-soname,libplain.so.1")
    system = check.System({"libplain.so.1": str(plain)}, "EM_X86_64", 64)
    facts = {
        "type": "ET_DYN",
        "machine": "EM_X86_64",
        "class": 64,
        "needed": ["libplain.so.1"],
        "rpath": [],
        "runpath": [],
        "needs": {"libplain.so.1": ["PLAIN_1.0"]},
    }

    assert check.check_elf("w.whl", "x/_x.so", b"", facts, check.Tree([]), system, {}) == []


def _gate_engine(config: ProjectConfig, **outputs: list[str]) -> FakeEngine:
    """An engine with the root and compiler images and the wheel volume; what each role prints."""
    names = naming.internal_names(config, PipSettings())
    engine = FakeEngine()
    engine.add_image(names.root)
    engine.add_image(names.compiler)
    engine.create_volume(names.volume, {})
    engine.outputs.update({role.replace("_", "-"): (0, lines) for role, lines in outputs.items()})
    return engine


def test_the_gate_fails_the_build_naming_the_package_to_add(tmp_path: Path) -> None:
    config = api.load_config(cwd=tmp_path)
    names = naming.internal_names(config, PipSettings())
    finding = {"wheel": CEXT, "file": "cextapp/_y.so", "kind": "library", "library": "libyaml-0.so.2"}
    engine = _gate_engine(
        config,
        abi_check=["GROCKER-ABI:" + json.dumps({"findings": [finding], "checked": {"wheels": 1}})],
        abi_suggest=["libyaml-0.so.2 libyaml-0-2:amd64: /usr/lib/x86_64-linux-gnu/libyaml-0.so.2"],
    )

    with pytest.raises(BuildError) as raised:
        abi.check_wheels(engine, config, names, parse_release("demo==1.0", tmp_path), None, print)

    assert raised.value.exit_code == 5
    assert "libyaml-0-2 provides it: add it to dependencies.run" in raised.value.details
    checker, suggest = engine.containers_made
    assert checker["image"] == names.root
    cache = names.volume.replace("wheel-cache", "abi-cache")
    assert checker["volumes"] == {names.volume: ("/home/grocker/wheels", "ro"), cache: ("/var/tmp", "rw")}
    assert engine.volume_labels(cache) == naming.internal_labels(config, "abi-cache")
    request = json.loads(engine.files_put["abi-check"]["/tmp/grocker-abi/request.json"])
    assert request == {
        "lock": lock_key(parse_release("demo==1.0", tmp_path), None, names.index_domain),
        "wheel_dir": "/home/grocker/wheels",
        "lock_dir": "/home/grocker/wheels/.grocker/locks",
    }
    assert suggest["image"] == names.compiler
    assert suggest["command"] == ["libyaml-0.so.2"]


def test_a_library_missing_from_the_minimal_base_is_not_said_missing_from_the_root_image(tmp_path: Path) -> None:
    # uWSGI from its sdist needs libpcre2-8.so.0: grep's library, in the root image but not in the
    # minimal base (grep is cut). Saying "not in the root image" would send the user to the wrong image.
    config = api.load_config(cwd=tmp_path, overrides={"runner": "minimal"})
    names = naming.internal_names(config, PipSettings())
    finding = {"wheel": CEXT, "file": "cextapp/_y.so", "kind": "library", "library": "libpcre2-8.so.0"}
    engine = _gate_engine(
        config,
        abi_check=["GROCKER-ABI:" + json.dumps({"findings": [finding], "checked": {"wheels": 1}})],
        abi_suggest=["libpcre2-8.so.0 libpcre2-8-0:amd64: /usr/lib/x86_64-linux-gnu/libpcre2-8.so.0"],
    )
    engine.add_image(names.minimal)

    with pytest.raises(BuildError) as raised:
        abi.check_wheels(engine, config, names, parse_release("demo==1.0", tmp_path), None, print)

    assert raised.value.exit_code == 5
    assert raised.value.details == (
        f"{CEXT}: cextapp/_y.so needs libpcre2-8.so.0, found neither in the minimal base nor in the wheels; "
        "libpcre2-8-0 provides it: add it to dependencies.run"
    )
    assert "would not load in the minimal base of runtime trixie/3.13" in str(raised.value)
    assert "nor is a library of the root image: the minimal base keeps only" in str(raised.value)
    assert engine.containers_made[0]["image"] == names.minimal


def test_the_full_runner_s_gate_speaks_of_the_root_image_only(tmp_path: Path) -> None:
    config = api.load_config(cwd=tmp_path)
    findings = [abi.Finding(CEXT, "cextapp/_y.so", "library", library="libyaml-0.so.2")]

    message = abi.gate_message(findings, config)

    assert "would not load in the root image of runtime trixie/3.13" in message
    assert "minimal base" not in message


def test_the_gate_passes_a_clean_lock_without_asking_the_compiler_or_for_sbom_facts(tmp_path: Path) -> None:
    config = api.load_config(cwd=tmp_path)
    names = naming.internal_names(config, PipSettings())
    engine = _gate_engine(config, abi_check=["GROCKER-ABI:" + json.dumps({"findings": [], "checked": {"wheels": 3}})])

    report = abi.check_wheels(
        engine,
        config,
        names,
        parse_release("demo==1.0", tmp_path),
        None,
        print,
    )

    assert report is not None
    assert report.wheels == 3
    assert [made["role"] for made in engine.containers_made] == ["abi-check"]
    # Without --sbom, the gate's container is asked for no SBOM facts.
    assert report.sbom is None
    assert "sbom" not in json.loads(engine.files_put["abi-check"]["/tmp/grocker-abi/request.json"])


def test_tags_are_read_from_a_wheel_name_that_packaging_finds_invalid() -> None:
    supported = {"py3-none-any"}

    assert check.check_tags("Odd_Name-1.0_local-py3-none-any.whl", supported) is None
    assert check.check_tags("odd-1.0-py2-none-any.whl", supported)["tags"] == ["py2-none-any"]
    assert check.check_tags("nonsense.whl", supported)["detail"]


def test_the_checker_is_not_part_of_the_configuration_hash(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = api.load_config(cwd=tmp_path)
    before = naming.config_hash(config)
    naming._resources_digest.cache_clear()
    real_read = Path.read_bytes

    def edited(path: Path) -> bytes:
        content = real_read(path)
        return content + b"\n# edited\n" if path == CHECKER else content

    monkeypatch.setattr(Path, "read_bytes", edited)

    assert naming.config_hash(config) == before
    naming._resources_digest.cache_clear()


def test_files_no_loader_loads_are_not_opened() -> None:
    assert not check.may_be_loaded("jedi/third_party/typeshed/stdlib/os/__init__.pyi")
    assert not check.may_be_loaded("demo-1.0.dist-info/RECORD")
    assert check.may_be_loaded("demo/_ext.cpython-313-x86_64-linux-gnu.so")
    assert check.may_be_loaded("demo.libs/libfoo-1a2b3c.so.1.2")
    assert check.may_be_loaded("demo-1.0.data/scripts/tool")


def test_with_an_sbom_the_gate_asks_its_container_for_the_sbom_facts_too(tmp_path: Path) -> None:
    (tmp_path / ".grocker.yml").write_text("sbom: sbom.json\n")
    config = api.load_config(cwd=tmp_path)
    facts = {"os": {"id": "debian", "version_id": "13"}, "packages": [], "wheels": {}}
    output = {"findings": [], "checked": {"wheels": 3}, "sbom": facts}
    engine = _gate_engine(config, abi_check=["GROCKER-ABI:" + json.dumps(output)])
    wheel = {"sha256": "0" * 64}
    lock = parse_lock(
        {
            "application": {"file": "demo-1.0-py3-none-any.whl", **wheel},
            "dependencies": [{"file": "six-1.16.0-py2.py3-none-any.whl", **wheel}],
            "installer": {"file": "pip-25.0-py3-none-any.whl", **wheel},
        }
    )
    release = parse_release("demo==1.0", tmp_path)

    report = abi.check_wheels(engine, config, naming.internal_names(config, PipSettings()), release, lock, print)

    assert report is not None
    assert report.sbom == facts
    assert [made["role"] for made in engine.containers_made] == ["abi-check"]
    files = engine.files_put["abi-check"]
    request = json.loads(files["/tmp/grocker-abi/request.json"])
    # The runner installs the application and its dependencies, not pip: the SBOM lists those.
    assert request["sbom"] == {
        "lock": lock_key(release, None, index_domain(PipSettings())),
        "files": ["demo-1.0-py3-none-any.whl", "six-1.16.0-py2.py3-none-any.whl"],
        "wheel_dir": "/home/grocker/wheels",
        "lock_dir": "/home/grocker/wheels/.grocker/locks",
    }
    # The collector goes in beside the checker, which imports it.
    assert "/tmp/grocker-abi/collect.py" in files


def test_the_sbom_collector_is_not_part_of_the_configuration_hash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # It runs in the gate's container or with `python -c`, never in an image: editing it rebuilds nothing.
    collector = CHECKER.parents[1] / "sbom" / "collect.py"
    config = api.load_config(cwd=tmp_path)
    naming._resources_digest.cache_clear()
    before = naming.config_hash(config)
    naming._resources_digest.cache_clear()
    real_read = Path.read_bytes

    def edited(path: Path) -> bytes:
        content = real_read(path)
        return content + b"\n# edited\n" if path == collector else content

    monkeypatch.setattr(Path, "read_bytes", edited)

    assert naming.config_hash(config) == before
    naming._resources_digest.cache_clear()


PURE = WheelFile("six-1.16.0-py2.py3-none-any.whl", "1" * 64, elf=False)
NATIVE = WheelFile("wcwidth-0.9.4-cp310-abi3-manylinux2014_x86_64.whl", "2" * 64, elf=True)


def _lock(*dependencies: WheelFile, application: WheelFile | None = None) -> WheelLock:
    app = application or WheelFile("demo-1.0-py3-none-any.whl", "3" * 64, elf=False)
    return WheelLock(app, dependencies, WheelFile("pip-25.0-py3-none-any.whl", "4" * 64, elf=False))


@pytest.mark.parametrize(
    ("wheel", "expected"),
    [
        (PURE, False),
        (NATIVE, True),
        # A pure wheel's tags, but an ELF file inside (or a lock that did not record it): checked.
        (WheelFile("odd-1.0-py3-none-any.whl", "5" * 64, elf=True), True),
        (WheelFile("old-1.0-py3-none-any.whl", "5" * 64), True),
        # No ELF file, but tags for one interpreter or platform: checked.
        (WheelFile("typed-1.0-cp313-none-any.whl", "5" * 64, elf=False), True),
        (WheelFile("data-1.0-py3-none-manylinux_2_17_x86_64.whl", "5" * 64, elf=False), True),
    ],
)
def test_the_gate_checks_wheels_with_elf_files_or_specific_tags(wheel: WheelFile, expected: bool) -> None:
    assert abi.gated(wheel) is expected


def test_the_memo_depends_on_the_root_image_its_python_and_the_checked_wheels_only() -> None:
    lock = _lock(PURE, NATIVE)
    memo = abi.memo_key("sha256:root", "python3", lock)

    # A new version of a pure application keeps the memo; anything the verdict depends on changes it.
    bumped = replace(lock, application=WheelFile("demo-1.1-py3-none-any.whl", "6" * 64, elf=False))
    assert abi.memo_key("sha256:root", "python3", bumped) == memo
    assert abi.memo_key("sha256:other-root", "python3", lock) != memo
    assert abi.memo_key("sha256:root", "python3.12", lock) != memo
    rebuilt = replace(NATIVE, sha256="7" * 64)
    assert abi.memo_key("sha256:root", "python3", _lock(PURE, rebuilt)) != memo


def _passed_gate(engine: FakeEngine) -> None:
    engine.outputs["abi-check"] = (0, ["GROCKER-ABI:" + json.dumps({"findings": [], "checked": {"wheels": 4}})])


def _listed(engine: FakeEngine, listed: bool) -> Sequence[LabelledImage] | None:
    """The engine's runner images as the build lists them beforehand, or None: the gate asks the engine."""
    return engine.labelled_images({ROLE_LABEL: "runner"}) if listed else None


@pytest.mark.parametrize("listed", [False, True], ids=["asked", "listed"])
def test_the_gate_runs_once_for_the_same_wheels_on_the_same_root(tmp_path: Path, listed: bool) -> None:
    config = api.load_config(cwd=tmp_path)
    names = naming.internal_names(config, PipSettings())
    engine = _gate_engine(config)
    _passed_gate(engine)
    release = parse_release("demo==1.1", tmp_path)

    first = abi.check_wheels(engine, config, names, release, _lock(PURE, NATIVE), print)
    assert first is not None
    assert first.memo == abi.memo_key(str(engine.id_of(names.root)), config.runtime.python, _lock(PURE, NATIVE))
    assert [made["role"] for made in engine.containers_made] == ["abi-check"]

    # A runner built after that gate records its memo: the next build of the same wheels (a new
    # version of the pure application) starts no container for the gate.
    engine.add_image("demo:1.0", {ABI_CHECKED_LABEL: first.memo, **_runner_labels(config)})
    bumped = _lock(PURE, NATIVE, application=WheelFile("demo-1.1-py3-none-any.whl", "6" * 64, elf=False))
    second = abi.check_wheels(engine, config, names, release, bumped, print, _listed(engine, listed))
    assert second is not None
    assert (second.memo, second.findings) == (first.memo, ())
    assert [made["role"] for made in engine.containers_made] == ["abi-check"]

    # A new build of the native wheel is checked again.
    rebuilt = _lock(PURE, replace(NATIVE, sha256="7" * 64))
    abi.check_wheels(engine, config, names, release, rebuilt, print, _listed(engine, listed))
    assert [made["role"] for made in engine.containers_made] == ["abi-check", "abi-check"]


def test_the_gate_s_skip_names_the_base_it_passed_on(tmp_path: Path) -> None:
    # With the minimal runner the memo is of the minimal base: "on this root image" would be wrong.
    for runner, where in (("full", "root image"), ("minimal", "minimal base")):
        config = api.load_config(cwd=tmp_path, overrides={"runner": runner})
        names = naming.internal_names(config, PipSettings())
        engine = _gate_engine(config)
        engine.add_image(names.minimal)
        lock = _lock(PURE, NATIVE)
        memo = abi.memo_key(str(engine.id_of(names.runner_base(config))), config.runtime.python, lock)
        engine.add_image("demo:1.0", {ABI_CHECKED_LABEL: memo, **_runner_labels(config)})

        note = abi._passed_before(engine, config, lock, memo)

        assert note is not None
        assert f"with ELF files or tags passed it on this {where} for sha256:" in note


def _runner_labels(config: ProjectConfig, **changes: str) -> dict[str, str]:
    release = parse_release("demo==1.0", Path("."))
    return {**naming.runner_labels(release, config, "2026-12-06T00:00:00Z"), **changes}


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param({}, id="any image carrying the label"),
        pytest.param({ROLE_LABEL: "root"}, id="another role"),
        pytest.param({VERSION_LABEL: "0.0.1"}, id="another Grocker version"),
        pytest.param({RUNTIME_LABEL: "bookworm/3.11"}, id="another runtime"),
    ],
)
@pytest.mark.parametrize("listed", [False, True], ids=["asked", "listed"])
def test_the_memo_counts_only_on_grocker_s_own_runner_of_this_version_and_runtime(
    tmp_path: Path, labels: dict[str, str], listed: bool
) -> None:
    """Issue 20: `grocker.abi.checked=<memo>` on any other image does not skip the gate."""
    config = api.load_config(cwd=tmp_path)
    names = naming.internal_names(config, PipSettings())
    engine = _gate_engine(config)
    _passed_gate(engine)
    release = parse_release("demo==1.0", tmp_path)
    lock = _lock(PURE, NATIVE)
    memo = abi.memo_key(str(engine.id_of(names.root)), config.runtime.python, lock)
    forged = {ABI_CHECKED_LABEL: memo} if not labels else {ABI_CHECKED_LABEL: memo, **_runner_labels(config, **labels)}
    engine.add_image("someone/else:1", forged)

    abi.check_wheels(engine, config, names, release, lock, print, _listed(engine, listed))

    assert [made["role"] for made in engine.containers_made] == ["abi-check"]


def test_a_lock_of_pure_wheels_without_elf_files_needs_no_gate(tmp_path: Path) -> None:
    config = api.load_config(cwd=tmp_path)
    names = naming.internal_names(config, PipSettings())
    engine = _gate_engine(config)

    report = abi.check_wheels(engine, config, names, parse_release("demo==1.0", tmp_path), _lock(PURE), print)

    assert report is not None
    assert report.findings == ()
    assert engine.containers_made == []


def test_a_gate_miss_is_checked_again_on_the_next_build(tmp_path: Path) -> None:
    config = api.load_config(cwd=tmp_path)
    names = naming.internal_names(config, PipSettings())
    finding = {"wheel": NATIVE.file, "file": "w/_x.so", "kind": "architecture", "machine": "aarch64"}
    engine = _gate_engine(config, abi_check=["GROCKER-ABI:" + json.dumps({"findings": [finding]})])
    release = parse_release("demo==1.0", tmp_path)

    for _attempt in range(2):
        with pytest.raises(BuildError):
            abi.check_wheels(engine, config, names, release, _lock(NATIVE), print)

    # No runner was built, so nothing records a memo: the second build ran the gate again.
    assert [made["role"] for made in engine.containers_made] == ["abi-check", "abi-check"]
