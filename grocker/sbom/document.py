"""The SBOM of a runner image: a CycloneDX 1.6 JSON document made from what Grocker knows.

Not a scan: the Python distributions are the wheels of the lock (each with the SHA-256 of the
file installed and where it came from), the system packages are the root image's package
database (the runner is FROM root and adds none), and the licences and PEP 770 SBOMs are read
from the wheels' metadata. Pure: the facts are collected elsewhere (grocker/sbom_collect.py).

The same facts give the same bytes: the serial number is derived from the image ID, the
timestamp is the image's creation time, components are sorted and their bom-refs are purls.
"""

from __future__ import annotations

import datetime
import json
import re
import uuid
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import License, LicenseAcknowledgement
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.utils import canonicalize_name, parse_wheel_filename

from grocker._version import __version__
from grocker.config.pipconf import public_url
from grocker.wheels import Origin

MEDIA_TYPE = "application/vnd.cyclonedx+json"
# Property names of Grocker's own facts, under its namespace as CycloneDX recommends.
ORIGIN_PROPERTY = "grocker:origin"
ORIGIN_TEXT = {
    "index": "downloaded from an index",
    "built": "compiled here from an sdist",
    "file": "built from the local file given as RELEASE",
    "unknown": "unknown (the wheel was compiled before Grocker recorded origins)",
}
_SERIAL_NAMESPACE = uuid.UUID("4b0f3c55-9c1e-4a55-8f43-7d2f6b1c9e10")


@dataclass(frozen=True)
class NestedSbom:
    """One SBOM a wheel ships in `.dist-info/sboms/` (PEP 770), as read from the wheel."""

    path: str
    sha256: str
    document: Mapping[str, Any] | None = None  # parsed JSON; None when not JSON


@dataclass(frozen=True)
class Distribution:
    """One Python distribution installed in the runner: its wheel and what its metadata says."""

    file: str
    sha256: str
    origin: Origin = field(default_factory=Origin)
    name: str | None = None  # the metadata's Name; the file name's when missing
    license_expression: str | None = None
    license: str | None = None
    classifiers: tuple[str, ...] = ()
    sboms: tuple[NestedSbom, ...] = ()

    @property
    def version(self) -> str:
        """The version, from the wheel's file name."""
        return str(parse_wheel_filename(self.file)[1])

    @property
    def purl(self) -> PackageURL:
        """`pkg:pypi/NAME@VERSION` with the normalized name."""
        return PackageURL(type="pypi", name=canonicalize_name(parse_wheel_filename(self.file)[0]), version=self.version)


@dataclass(frozen=True)
class SystemPackage:
    """One package of the distribution's package database."""

    name: str
    version: str
    architecture: str


@dataclass(frozen=True)
class SbomFacts:
    """Everything the SBOM says, collected from the lock, the root image and the wheels."""

    image_name: str
    image_id: str
    image_created: str  # RFC 3339, as the engine gives it
    runtime: str
    base_image: str
    base_image_id: str | None
    family: str  # "debian" or "alpine"
    os_id: str  # /etc/os-release ID, e.g. "debian"
    os_version: str  # /etc/os-release VERSION_ID, e.g. "13"
    application: Distribution
    dependencies: tuple[Distribution, ...]
    packages: tuple[SystemPackage, ...]
    grocker_version: str = __version__
    extras: tuple[str, ...] = field(default=())


def document(facts: SbomFacts) -> str:
    """The CycloneDX 1.6 JSON text of the SBOM, byte-identical for identical facts."""
    app = _python_component(facts.application, ComponentType.APPLICATION)
    libraries = [_python_component(dist, ComponentType.LIBRARY) for dist in facts.dependencies]
    system = [_system_component(package, facts) for package in facts.packages]
    bom = Bom(
        serial_number=uuid.uuid5(_SERIAL_NAMESPACE, facts.image_id),
        metadata=BomMetaData(
            timestamp=_timestamp(facts.image_created),
            component=app,
            properties=[
                Property(name="grocker:image", value=facts.image_name),
                Property(name="grocker:image-id", value=facts.image_id),
                Property(name="grocker:runtime", value=facts.runtime),
                *([Property(name="grocker:app-extras", value=",".join(facts.extras))] if facts.extras else []),
            ],
        ),
        components=[*libraries, *system, _base_image_component(facts), _os_component(facts)],
    )
    bom.metadata.tools.components.add(
        Component(
            type=ComponentType.APPLICATION,
            name="grocker",
            version=facts.grocker_version,
            bom_ref=f"pkg:pypi/grocker@{facts.grocker_version}",
            purl=PackageURL(type="pypi", name="grocker", version=facts.grocker_version),
        )
    )
    # Every distribution of the venv was resolved from the application's requirements.
    bom.register_dependency(app, libraries)
    with warnings.catch_warnings():
        # The library warns about components without dependencies of their own: the wheels'
        # requirements are not part of what Grocker records.
        warnings.simplefilter("ignore")
        text = JsonV1Dot6(bom).output_as_string(indent=2)
    return text + "\n"


def _python_component(dist: Distribution, kind: ComponentType) -> Component:
    purl = dist.purl
    ref = purl.to_string()
    properties = [Property(name=ORIGIN_PROPERTY, value=ORIGIN_TEXT.get(dist.origin.kind, dist.origin.kind))]
    references = []
    # Recorded without secrets by the publisher; cleaned again for records of older Grocker
    # versions, which kept a token in the path (Gemfury, Cloudsmith).
    if dist.origin.kind == "index" and dist.origin.url:
        references.append(
            ExternalReference(
                type=ExternalReferenceType.DISTRIBUTION,
                url=XsUri(public_url(dist.origin.url, dist.origin.index)),
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=dist.sha256)],
            )
        )
    if dist.origin.index:
        properties.append(Property(name="grocker:index", value=public_url(dist.origin.index)))
    if dist.origin.compiler:
        properties.append(Property(name="grocker:compiler-image-id", value=dist.origin.compiler))
    properties.append(Property(name="grocker:wheel", value=dist.file))
    return Component(
        type=kind,
        name=dist.name or purl.name,
        version=dist.version,
        bom_ref=ref,
        purl=purl,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=dist.sha256)],
        licenses=_licenses(dist),
        external_references=references,
        properties=properties,
        components=[_nested_sbom(ref, nested) for nested in dist.sboms],
    )


def _licenses(dist: Distribution) -> list[License]:
    """The licence the metadata declares: License-Expression, else License, else classifiers."""
    factory = LicenseFactory()
    declared = LicenseAcknowledgement.DECLARED
    if dist.license_expression:
        return [factory.make_from_string(dist.license_expression, license_acknowledgement=declared)]
    # License is free text: a short one-line value names the licence; a full text says nothing usable.
    # "UNKNOWN" is what old setuptools wrote when the field was not set.
    text = (dist.license or "").strip()
    if text and text.upper() != "UNKNOWN" and "\n" not in text and len(text) <= 100:
        return [factory.make_from_string(text, license_acknowledgement=declared)]
    names = sorted(
        {c.split("::")[-1].strip() for c in dist.classifiers if c.startswith("License ::") and c.count("::") >= 2}
    )
    return [factory.make_with_name(name, acknowledgement=declared) for name in names]


def _nested_sbom(parent_ref: str, nested: NestedSbom) -> Component:
    """A PEP 770 SBOM as a file component under its wheel, with the components it lists."""
    ref = f"{parent_ref}#{nested.path}"
    return Component(
        type=ComponentType.FILE,
        name=nested.path,
        bom_ref=ref,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=nested.sha256)],
        properties=[Property(name="grocker:sbom-format", value=_format(nested.document))],
        components=[
            Component(
                type=kind,
                name=name,
                version=version,
                purl=_purl(purl),
                bom_ref=f"{ref}#{index}",
            )
            for index, (kind, name, version, purl) in enumerate(_listed(nested.document))
        ],
    )


def _format(document: Mapping[str, Any] | None) -> str:
    if document is None:
        return "unknown"
    if document.get("bomFormat") == "CycloneDX":
        return f"CycloneDX {document.get('specVersion', '')}".strip()
    if "spdxVersion" in document:
        return str(document["spdxVersion"])
    return "unknown"


def _listed(document: Mapping[str, Any] | None) -> list[tuple[ComponentType, str, str | None, str | None]]:
    """The components a nested SBOM lists (CycloneDX components, SPDX packages), sorted."""
    found: list[tuple[ComponentType, str, str | None, str | None]] = []
    if document is None:
        return found
    if document.get("bomFormat") == "CycloneDX":
        for item in _walk(document.get("components") or []):
            kind = _component_type(item.get("type"))
            found.append((kind, str(item["name"]), _text(item.get("version")), _text(item.get("purl"))))
    for package in document.get("packages") or []:  # SPDX 2.x JSON
        if not isinstance(package, Mapping) or not package.get("name"):
            continue
        purls = [
            ref.get("referenceLocator")
            for ref in package.get("externalRefs") or []
            if isinstance(ref, Mapping) and ref.get("referenceType") == "purl"
        ]
        found.append(
            (
                ComponentType.LIBRARY,
                str(package["name"]),
                _text(package.get("versionInfo")),
                _text(next(iter(purls), None)),
            )
        )
    return sorted(found, key=lambda item: (item[1], item[2] or "", item[3] or ""))


def _walk(items: Iterable[Any]) -> Iterable[Mapping[str, Any]]:
    for item in items:
        if isinstance(item, Mapping) and item.get("name"):
            yield item
            yield from _walk(item.get("components") or [])


def _component_type(value: object) -> ComponentType:
    try:
        return ComponentType(str(value))
    except ValueError:
        return ComponentType.LIBRARY


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _purl(text: str | None) -> PackageURL | None:
    if not text:
        return None
    try:
        return PackageURL.from_string(text)
    except ValueError:
        return None


def _system_component(package: SystemPackage, facts: SbomFacts) -> Component:
    if facts.family == "alpine":
        purl = PackageURL(
            type="apk",
            namespace="alpine",
            name=package.name,
            version=package.version,
            qualifiers={"arch": package.architecture, "distro": f"alpine-{facts.os_version}"},
        )
    else:
        purl = PackageURL(
            type="deb",
            namespace=facts.os_id,
            name=package.name,
            version=package.version,
            qualifiers={"arch": package.architecture, "distro": f"{facts.os_id}-{facts.os_version}"},
        )
    return Component(
        type=ComponentType.LIBRARY,
        name=package.name,
        version=package.version,
        bom_ref=purl.to_string(),
        purl=purl,
    )


def _base_image_component(facts: SbomFacts) -> Component:
    properties = [Property(name="grocker:image-id", value=facts.base_image_id)] if facts.base_image_id else []
    return Component(
        type=ComponentType.CONTAINER,
        name=facts.base_image,
        version=facts.base_image_id,
        bom_ref=f"base-image:{facts.base_image}",
        properties=properties,
    )


def _os_component(facts: SbomFacts) -> Component:
    return Component(
        type=ComponentType.OPERATING_SYSTEM,
        name=facts.os_id,
        version=facts.os_version,
        bom_ref=f"os:{facts.os_id}-{facts.os_version}",
    )


def _timestamp(created: str) -> datetime.datetime:
    """The engine's RFC 3339 time (nanoseconds, `Z`) as an aware datetime, to the second."""
    found = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", created)
    if not found:
        return datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return datetime.datetime.fromisoformat(found.group(1)).replace(tzinfo=datetime.timezone.utc)


def python_components(text: str) -> list[tuple[str, str]]:
    """(normalized name, version) of the Python distributions an SBOM lists, root included."""
    data = json.loads(text)
    found = [data["metadata"]["component"], *data.get("components", [])]
    return sorted(
        (item["purl"].split("/", 1)[1].split("@")[0], item["version"])
        for item in found
        if str(item.get("purl", "")).startswith("pkg:pypi/")
    )
