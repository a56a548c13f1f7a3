"""The SBOM on a real engine: complete against the image's file system, stable, pushed and fetched back."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.utils import canonicalize_name

from grocker.sbom import document as sbom
from tests.integration.helpers import Grocker, package_fixture

NESTED = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.6",
    "components": [
        {"type": "library", "name": "vendored-lib", "version": "4.2", "purl": "pkg:generic/vendored-lib@4.2"}
    ],
}


def _with_pep770_sbom(wheel: Path, target: Path) -> Path:
    """A copy of the wheel shipping a CycloneDX SBOM in .dist-info/sboms/, listed in RECORD."""
    with zipfile.ZipFile(wheel) as archive:
        record = next(name for name in archive.namelist() if name.endswith(".dist-info/RECORD"))
    return _with_file(wheel, target, record.rsplit("/", 1)[0] + "/sboms/vendored.cdx.json", json.dumps(NESTED).encode())


def _with_file(wheel: Path, target: Path, path: str, content: bytes) -> Path:
    """A copy of the wheel with one more file, listed in RECORD."""
    out = target / wheel.name
    with zipfile.ZipFile(wheel) as archive:
        items = {name: archive.read(name) for name in archive.namelist()}
    record = next(name for name in items if name.endswith(".dist-info/RECORD"))
    items[path] = content
    # RECORD must list every file: the archive is rewritten with the line added.
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    items[record] = items[record] + f"{path},sha256={digest},{len(content)}\n".encode()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in items.items():
            archive.writestr(name, data)
    return out


def _in_image(grocker: Grocker, image: str, script: str) -> list[str]:
    return grocker.docker_run(image, "-c", script, entrypoint="/bin/sh").splitlines()


def _dist_infos(grocker: Grocker, image: str) -> set[tuple[str, str]]:
    """(normalized name, version) of every *.dist-info directory of the image's venv."""
    lines = _in_image(grocker, image, "ls -d /home/grocker/app.venv/lib/python*/site-packages/*.dist-info")
    found = set()
    for line in lines:
        name, version = re.fullmatch(r".*/([^/]+)-([^-/]+)\.dist-info", line.strip()).groups()  # type: ignore[union-attr]
        found.add((canonicalize_name(name), version))
    return found


def _registry_get(url: str, accept: str = "") -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})  # noqa: S310 - http only
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the loopback registry
        return bytes(response.read())


def _components(document: dict) -> dict[str, dict]:
    return {item["bom-ref"]: item for item in document["components"]}


def _properties(component: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in component.get("properties", [])}


def test_sbom_matches_the_image_and_is_pushed_with_it(
    grocker: Grocker, registry: str, dist_dir: Path, tmp_path: Path
) -> None:
    wheel = _with_pep770_sbom(package_fixture("pure-app", dist_dir, kind="wheel", version="1.0.7"), tmp_path)
    image = f"{registry}/{grocker.name('sbom')}"
    first, second, third = (tmp_path / f"sbom-{n}.json" for n in (1, 2, 3))

    grocker.build(str(wheel), "-n", image, "--sbom", str(first), "--result-file", str(tmp_path / "result.yml"))

    text = first.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = json.loads(text)
    # Every distribution of the venv, nothing missing, nothing extra.
    assert set(sbom.python_components(text)) == _dist_infos(grocker, image)
    # Every system package of the image, with its purl.
    packages = _in_image(grocker, image, "dpkg-query -W -f '${Package} ${Version} ${Architecture}\\n'")
    expected = {
        f"pkg:deb/debian/{name}@{version}?arch={arch}&distro=debian-13"
        for name, version, arch in (line.split() for line in packages)
    }
    listed = {ref for ref in _components(document) if ref.startswith("pkg:deb/")}
    assert {ref.replace("%2B", "+").replace("%3A", ":") for ref in listed} == expected
    # The root component, the wheels' origins and the nested PEP 770 SBOM.
    root = document["metadata"]["component"]
    name = canonicalize_name(wheel.name.split("-")[0])
    assert (root["version"], root["purl"]) == ("1.0.7", f"pkg:pypi/{name}@1.0.7")
    assert root["hashes"][0]["content"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert _properties(root)["grocker:origin"] == "built from the local file given as RELEASE"
    assert [item["name"] for item in root["components"]] == [
        f"{wheel.name.split('-')[0]}-1.0.7.dist-info/sboms/vendored.cdx.json"
    ]
    assert root["components"][0]["components"][0]["purl"] == "pkg:generic/vendored-lib@4.2"
    six = next(item for ref, item in _components(document).items() if ref.startswith("pkg:pypi/six@"))
    assert _properties(six)["grocker:origin"] == "downloaded from an index"
    # Where pip fetched it (the machine's index: https, or http on a CI mirror), no credentials.
    url = urlsplit(six["externalReferences"][0]["url"])
    assert url.scheme in {"http", "https"}
    assert url.path.endswith("/six-1.16.0-py2.py3-none-any.whl")
    assert url.username is None
    assert url.password is None
    assert _components(document)["base-image:debian:trixie"]["type"] == "container"

    # Byte-identical for the same image, run after run, also in the push phase alone, where the
    # lock is read from the wheel volume. (A rebuild is another image: its creation time differs.)
    for target in (second, third):
        grocker.build(str(wheel), "-n", image, "--no-build-dependencies", "--no-build-image", "--sbom", str(target))
        assert json.loads(target.read_text()) == document
        assert target.read_bytes() == first.read_bytes()

    # Fetched back from the registry by the image's manifest digest (referrers tag schema).
    results = yaml.safe_load((tmp_path / "result.yml").read_text())
    repository = image.split("/", 1)[1].rsplit(":", 1)[0]
    base = f"http://{registry}/v2/{repository}"
    tag = results["hash"].replace(":", "-")
    index = json.loads(_registry_get(f"{base}/manifests/{tag}", "application/vnd.oci.image.index.v1+json"))
    # Three runs pushed the same SBOM (the build and the two push phases): one referrer.
    (referrer,) = [item for item in index["manifests"] if item["artifactType"] == sbom.MEDIA_TYPE]
    assert referrer["digest"] == results["sbom_digest"]
    manifest = json.loads(
        _registry_get(f"{base}/manifests/{referrer['digest']}", "application/vnd.oci.image.manifest.v1+json")
    )
    assert manifest["subject"]["digest"] == results["hash"]
    assert manifest["layers"][0]["annotations"]["org.opencontainers.image.title"] == "sbom.cdx.json"
    assert _registry_get(f"{base}/blobs/{manifest['layers'][0]['digest']}") == first.read_bytes()


def test_wheel_compiled_from_an_sdist_names_its_compiler(grocker: Grocker, dist_dir: Path, tmp_path: Path) -> None:
    sdist = package_fixture("pure-app", dist_dir, kind="sdist", version="1.0.8")
    image = grocker.name("sbom-sdist")
    target = tmp_path / "sbom.json"

    grocker.build(str(sdist), "-n", image, "--no-push", "--sbom", str(target), "--result-file", str(tmp_path / "r.yml"))

    root = json.loads(target.read_text())["metadata"]["component"]
    compiler = yaml.safe_load((tmp_path / "r.yml").read_text())["compiler_image"]
    assert _properties(root)["grocker:origin"] == "compiled here from an sdist"
    assert _properties(root)["grocker:compiler-image-id"] == grocker.client.images.get(compiler).id
    assert set(sbom.python_components(target.read_text())) == _dist_infos(grocker, image)


# A .pth file runs whenever the venv's Python starts. This one acts only in the SBOM collector
# (its script's text is on its command line): it prints forged facts and ends the process.
FORGER = (
    b"import os; c = open('/proc/self/cmdline', 'rb').read(); "
    b'b\'SBOM collector\' in c and (print(\'{"os": {"id": "forged", "version_id": "0"}, '
    b'"packages": [], "wheels": {}}\', flush=True), os._exit(0))\n'
)


def test_package_code_cannot_forge_the_sbom_of_the_push_phase(grocker: Grocker, dist_dir: Path, tmp_path: Path) -> None:
    """Issue 20: the collector ran the venv's python3 in the runner, and so its .pth files."""
    wheel = _with_file(
        package_fixture("pure-app", dist_dir, kind="wheel", version="1.0.9"), tmp_path, "zz_forger.pth", FORGER
    )
    image = grocker.name("sbom-forge")
    grocker.build(str(wheel), "-n", image, "--no-push")
    target = tmp_path / "sbom.json"

    # The push phase alone: no gate, so a container of the runner collects the facts.
    grocker.build(str(wheel), "-n", image, "--no-build-dependencies", "--no-build-image", "--sbom", str(target))

    text = target.read_text()
    assert "forged" not in text
    document = json.loads(text)
    assert any(ref.startswith("pkg:deb/debian/libc6@") for ref in _components(document))
    # The control: the venv's python, given the collector's words, does run the .pth file.
    forged = grocker.docker_run(image, "-c", "'SBOM collector'", entrypoint="/home/grocker/app.venv/bin/python3")
    assert '"id": "forged"' in forged
