"""The SBOM document: valid CycloneDX 1.6, complete, and the same bytes for the same facts."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from grocker import api
from grocker.engine.protocol import ImageInfo
from grocker.errors import ConfigError, UsageError
from grocker.sbom import document as sbom
from grocker.sbom import facts as sbom_facts
from grocker.sbom.document import Distribution, NestedSbom, SbomFacts, SystemPackage
from grocker.wheels import Origin

NESTED_CDX = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.6",
    "components": [
        {"type": "library", "name": "openssl", "version": "3.0.15", "purl": "pkg:generic/openssl@3.0.15"},
        {"type": "weird", "name": "zlib", "components": [{"name": "inner"}]},
    ],
}
NESTED_SPDX = {
    "spdxVersion": "SPDX-2.3",
    "packages": [
        {
            "name": "libffi",
            "versionInfo": "3.4.6",
            "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:generic/libffi@3.4.6"}],
        }
    ],
}


def _facts(**changes: object) -> SbomFacts:
    values: dict[str, object] = {
        "image_name": "localhost:5000/myapp:1.0",
        "image_id": "sha256:" + "1" * 64,
        "image_created": "2026-11-28T18:00:00.123456789Z",
        "runtime": "trixie/3.13",
        "base_image": "debian:trixie",
        "base_image_id": "sha256:" + "2" * 64,
        "family": "debian",
        "os_id": "debian",
        "os_version": "13",
        "application": Distribution(
            "My_App-1.0-py3-none-any.whl",
            "a" * 64,
            Origin("file"),
            name="My_App",
            license_expression="MIT OR Apache-2.0",
        ),
        "dependencies": (
            Distribution(
                "six-1.16.0-py2.py3-none-any.whl",
                "b" * 64,
                Origin(
                    "index",
                    "https://files.pythonhosted.org/packages/d9/5a/six-1.16.0-py2.py3-none-any.whl",
                    "https://pypi.org/simple/six/",
                ),
                name="six",
                license="MIT",
            ),
            Distribution(
                "cryptography-44.0.0-cp39-abi3-manylinux_2_34_x86_64.whl",
                "c" * 64,
                Origin("built", compiler="sha256:" + "3" * 64),
                name="cryptography",
                classifiers=("License :: OSI Approved :: Apache Software License", "Programming Language :: Python"),
                sboms=(
                    NestedSbom("cryptography-44.0.0.dist-info/sboms/openssl.cdx.json", "d" * 64, NESTED_CDX),
                    NestedSbom("cryptography-44.0.0.dist-info/sboms/libffi.spdx.json", "e" * 64, NESTED_SPDX),
                    NestedSbom("cryptography-44.0.0.dist-info/sboms/notes.txt", "f" * 64, None),
                ),
            ),
            Distribution("old-2.0-py3-none-any.whl", "9" * 64, name="old", license="Long text\nof a licence"),
            Distribution("legacy-0.1-py3-none-any.whl", "8" * 64, name="legacy", license="UNKNOWN"),
        ),
        "packages": (
            SystemPackage("python3.13", "3.13.5-2", "amd64"),
            SystemPackage("libc6", "2.41-12", "amd64"),
            SystemPackage("tzdata", "2025b-4", "all"),
        ),
    }
    values.update(changes)
    return SbomFacts(**values)  # type: ignore[arg-type]


def test_document_is_valid_cyclonedx_1_6() -> None:
    text = sbom.document(_facts())

    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None


def test_same_facts_give_the_same_bytes() -> None:
    assert sbom.document(_facts()) == sbom.document(_facts())


def test_serial_number_and_timestamp_come_from_the_image() -> None:
    data = json.loads(sbom.document(_facts()))
    other = json.loads(sbom.document(_facts(image_id="sha256:" + "4" * 64)))

    assert data["serialNumber"].startswith("urn:uuid:")
    assert data["serialNumber"] != other["serialNumber"]
    assert data["metadata"]["timestamp"] == "2026-11-28T18:00:00+00:00"


def test_every_python_distribution_is_listed_with_its_purl() -> None:
    text = sbom.document(_facts())

    assert sbom.python_components(text) == [
        ("cryptography", "44.0.0"),
        ("legacy", "0.1"),
        ("my-app", "1.0"),
        ("old", "2.0"),
        ("six", "1.16.0"),
    ]
    root = json.loads(text)["metadata"]["component"]
    assert root["type"] == "application"
    assert root["purl"] == "pkg:pypi/my-app@1.0"
    assert root["hashes"] == [{"alg": "SHA-256", "content": "a" * 64}]
    assert root["licenses"] == [{"expression": "MIT OR Apache-2.0", "acknowledgement": "declared"}]


def _component(text: str, ref: str) -> dict:
    return next(item for item in json.loads(text)["components"] if item["bom-ref"] == ref)


def _properties(component: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in component.get("properties", [])}


def test_origin_index_url_or_compiled_here() -> None:
    text = sbom.document(_facts())

    six = _component(text, "pkg:pypi/six@1.16.0")
    assert six["externalReferences"] == [
        {
            "type": "distribution",
            "url": "https://files.pythonhosted.org/packages/d9/5a/six-1.16.0-py2.py3-none-any.whl",
            "hashes": [{"alg": "SHA-256", "content": "b" * 64}],
        }
    ]
    assert _properties(six)["grocker:index"] == "https://pypi.org/simple/six/"
    assert _properties(six)["grocker:origin"] == "downloaded from an index"
    built = _properties(_component(text, "pkg:pypi/cryptography@44.0.0"))
    assert built["grocker:origin"] == "compiled here from an sdist"
    assert built["grocker:compiler-image-id"] == "sha256:" + "3" * 64
    assert _properties(_component(text, "pkg:pypi/old@2.0"))["grocker:origin"].startswith("unknown")


def test_licences_from_metadata() -> None:
    text = sbom.document(_facts())

    assert _component(text, "pkg:pypi/six@1.16.0")["licenses"] == [
        {"license": {"id": "MIT", "acknowledgement": "declared"}}
    ]
    assert _component(text, "pkg:pypi/cryptography@44.0.0")["licenses"] == [
        {"license": {"name": "Apache Software License", "acknowledgement": "declared"}}
    ]
    assert "licenses" not in _component(text, "pkg:pypi/old@2.0")
    assert "licenses" not in _component(text, "pkg:pypi/legacy@0.1")


def test_system_packages_have_deb_purls() -> None:
    text = sbom.document(_facts())

    libc = _component(text, "pkg:deb/debian/libc6@2.41-12?arch=amd64&distro=debian-13")
    assert (libc["name"], libc["version"]) == ("libc6", "2.41-12")
    assert _component(text, "pkg:deb/debian/tzdata@2025b-4?arch=all&distro=debian-13")
    base = _component(text, "base-image:debian:trixie")
    assert base["type"] == "container"


def test_alpine_packages_have_apk_purls() -> None:
    text = sbom.document(_facts(family="alpine", os_id="alpine", os_version="3.22.2"))

    assert _component(text, "pkg:apk/alpine/libc6@2.41-12?arch=amd64&distro=alpine-3.22.2")


def test_wheel_sboms_are_nested_under_their_wheel() -> None:
    wheel = _component(sbom.document(_facts()), "pkg:pypi/cryptography@44.0.0")

    nested = {item["name"]: item for item in wheel["components"]}
    assert sorted(nested) == [
        "cryptography-44.0.0.dist-info/sboms/libffi.spdx.json",
        "cryptography-44.0.0.dist-info/sboms/notes.txt",
        "cryptography-44.0.0.dist-info/sboms/openssl.cdx.json",
    ]
    cdx = nested["cryptography-44.0.0.dist-info/sboms/openssl.cdx.json"]
    assert cdx["hashes"] == [{"alg": "SHA-256", "content": "d" * 64}]
    assert [(item["name"], item.get("version")) for item in cdx["components"]] == [
        ("inner", None),
        ("openssl", "3.0.15"),
        ("zlib", None),
    ]
    spdx = nested["cryptography-44.0.0.dist-info/sboms/libffi.spdx.json"]
    assert [(item["name"], item["purl"]) for item in spdx["components"]] == [("libffi", "pkg:generic/libffi@3.4.6")]


def test_sbom_option_reaches_the_configuration(grocker, tmp_path: Path) -> None:
    run = grocker("build", "--sbom", "out/sbom.json", "--no-push", "app==1.0")

    assert run.exit_code == 0, run.stderr
    assert run.request.config.sbom == tmp_path / "out" / "sbom.json"


def test_sbom_key_is_relative_to_its_file(tmp_path: Path) -> None:
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "grocker.yml").write_text("sbom: reports/sbom.cdx.json\n")

    config = api.load_config([tmp_path / "ci" / "grocker.yml"], cwd=tmp_path)

    assert config.sbom == (tmp_path / "ci" / "reports" / "sbom.cdx.json").resolve()


def test_sbom_key_must_be_a_path(tmp_path: Path) -> None:
    (tmp_path / "grocker.yml").write_text("sbom: [a, b]\n")

    with pytest.raises(ConfigError, match="`sbom` must be a non-empty string"):
        api.load_config([tmp_path / "grocker.yml"], cwd=tmp_path)


def test_unwritable_sbom_path_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")

    with pytest.raises(UsageError, match=r"Writing the SBOM to .* failed because .* Give --sbom"):
        sbom_facts.write(tmp_path / "file" / "sbom.json", "{}")


class _CollectorEngine:
    """The engine calls of the SBOM facts: the final image, its wheel volume, the collector's container."""

    def __init__(self, output: dict[str, object] | None) -> None:
        self.output = output
        self.containers: list[str] = []
        self.options: list[dict[str, object]] = []

    def image(self, name: str) -> ImageInfo:
        return ImageInfo("sha256:" + "1" * 64, (name,), {"org.opencontainers.image.created": "2026-11-28T18:00:00Z"}, 1)

    def volume_labels(self, name: str) -> dict[str, str]:
        return {}

    @contextlib.contextmanager
    def container(self, image: str, **options: object) -> Iterator[object]:
        if self.output is None:
            raise AssertionError("the SBOM step started a container")
        self.containers.append(str(options["role"]))
        self.options.append(options)
        lines = [json.dumps(self.output, sort_keys=True)]
        yield SimpleNamespace(run=lambda _on_line: (0, lines))


def test_facts_gathered_by_the_gate_start_no_container_and_give_the_same_sbom(tmp_path: Path) -> None:
    config = api.load_config(cwd=tmp_path)
    lock = {
        "application": {"file": "demo-1.0-py3-none-any.whl", "sha256": "a" * 64},
        "dependencies": [{"file": "six-1.16.0-py2.py3-none-any.whl", "sha256": "b" * 64}],
        "installer": {"file": "pip-25.0-py3-none-any.whl", "sha256": "c" * 64},
    }
    gathered = {
        "os": {"id": "debian", "version_id": "13"},
        "packages": [{"name": "libc6", "version": "2.41-12", "architecture": "amd64"}],
        "wheels": {
            "demo-1.0-py3-none-any.whl": {"name": "demo", "license_expression": "MIT", "sboms": []},
            "six-1.16.0-py2.py3-none-any.whl": {"name": "six", "license": "MIT", "sboms": []},
        },
        "lock": lock,
    }
    request = sbom_facts.SbomRequest(image_name="demo:1.0", volume="wheels", lock_key="demo-1")
    by_container = _CollectorEngine(gathered)

    from_container = sbom.document(sbom_facts.collect(by_container, config, request))  # type: ignore[arg-type]
    from_gate = sbom.document(
        sbom_facts.collect(_CollectorEngine(None), config, dataclasses.replace(request, gathered=gathered))  # type: ignore[arg-type]
    )

    assert by_container.containers == ["sbom"]
    assert from_gate == from_container
    assert [name for name, _version in sbom.python_components(from_gate)] == ["demo", "six"]


def test_the_collector_runs_no_package_code_and_reaches_no_network(tmp_path: Path) -> None:
    """In the runner image, the collector's python is the system's, isolated, offline (issue 20)."""
    config = api.load_config(cwd=tmp_path)
    engine = _CollectorEngine({"os": {}, "packages": [], "wheels": {}, "lock": _LOCK})
    request = sbom_facts.SbomRequest(image_name="demo:1.0", volume="wheels", lock_key="demo-1")

    sbom_facts.collect(engine, config, request)  # type: ignore[arg-type]

    options = engine.options[0]
    entrypoint = list(options["entrypoint"])  # type: ignore[call-overload]
    assert entrypoint[:4] == [config.runtime.python, "-I", "-S", "-c"]
    path = options["environment"]["PATH"]  # type: ignore[index]
    assert "app.venv" not in path
    assert path.split(":")[0] == "/usr/local/sbin"
    assert options["network"] == "none"
    assert options["volumes"] == {"wheels": ("/home/grocker/wheels", "ro")}


_LOCK = {
    "application": {"file": "demo-1.0-py3-none-any.whl", "sha256": "a" * 64},
    "dependencies": [],
    "installer": {"file": "pip-25.0-py3-none-any.whl", "sha256": "c" * 64},
}


def test_no_path_token_reaches_the_sbom() -> None:
    """Origins recorded by an older Grocker kept Gemfury's and Cloudsmith's path tokens (issue 20)."""
    fury = Origin(
        "index",
        "https://pypi.fury.io/Sh0rtT0k/team/-/six-1.16.0-py2.py3-none-any.whl",
        "https://pypi.fury.io/Sh0rtT0k/team/",
    )
    smith = Origin(
        "index",
        "https://dl.cloudsmith.io/CsT0ken9/org/repo/python/simple/six/six-1.16.0-py2.py3-none-any.whl",
        "https://dl.cloudsmith.io/CsT0ken9/org/repo/python/simple/",
    )
    for origin in (fury, smith):
        six = Distribution("six-1.16.0-py2.py3-none-any.whl", "b" * 64, origin, name="six")
        text = sbom.document(_facts(dependencies=(six,)))

        assert "Sh0rtT0k" not in text
        assert "CsT0ken9" not in text
        assert (
            "six-1.16.0-py2.py3-none-any.whl" in _component(text, "pkg:pypi/six@1.16.0")["externalReferences"][0]["url"]
        )
