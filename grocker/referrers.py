"""Push a file to a registry as an OCI artifact whose `subject` is an image: its SBOM.

oras-py (the `oras` package) does the registry talk: credentials from the Docker config,
token auth, blob uploads. Its `push()` can set a subject but always builds the manifest
itself, without `artifactType` and with its own JSON bytes, and it knows nothing of the
referrers tag schema. So this module writes the manifest and the referrers index against the
OCI distribution spec 1.1 and sends them with oras-py's authenticated `do_request`:

1. the SBOM blob and the empty config blob (`application/vnd.oci.empty.v1+json`);
2. an image manifest with `artifactType: application/vnd.cyclonedx+json` and `subject` =
   the image's manifest descriptor, pushed by digest;
3. when the registry does not answer with an `OCI-Subject` header (it has no referrers API, as
   CNCF distribution 2.x), the fallback: the image index tagged `sha256-<hex of the image
   digest>` gets a descriptor of the new manifest (read, appended once, written back).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oras.container
import oras.provider
import requests

from grocker.errors import PushError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
EMPTY_CONTENT = b"{}"
TITLE = "org.opencontainers.image.title"
_MANIFEST_TYPES = (
    OCI_MANIFEST,
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


@dataclass(frozen=True)
class Pushed:
    """Where the artifact went: its manifest digest, and the fallback tag updated (if any)."""

    digest: str
    fallback_tag: str | None


def descriptor(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    """An OCI content descriptor of `content`."""
    return {"mediaType": media_type, "digest": _digest(content), "size": len(content), **extra}


def artifact_manifest(artifact_type: str, content: bytes, title: str, subject: dict[str, Any]) -> bytes:
    """The manifest bytes of a one-file artifact whose subject is `subject` (deterministic)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(EMPTY_CONFIG, EMPTY_CONTENT),
        "layers": [descriptor(artifact_type, content, annotations={TITLE: title})],
        "subject": subject,
    }
    return _json(manifest)


def fallback_tag(subject_digest: str) -> str:
    """The referrers tag schema's tag of a subject: `<alg>-<hex>`."""
    algorithm, _, encoded = subject_digest.partition(":")
    return f"{algorithm}-{encoded}"[:128]


def add_referrer(index: bytes | None, manifest: bytes, artifact_type: str) -> bytes:
    """The referrers index with the manifest's descriptor added once (a new index when None)."""
    data: dict[str, Any] = json.loads(index) if index else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    entry = descriptor(OCI_MANIFEST, manifest, artifactType=artifact_type)
    if not any(item.get("digest") == entry["digest"] for item in data.get("manifests", [])):
        data.setdefault("manifests", []).append(entry)
    return _json(data)


def push_artifact(image: str, subject_digest: str, content: bytes, artifact_type: str, title: str) -> Pushed:
    """Push `content` as an artifact referring to the image `image`@`subject_digest`."""
    try:
        container = oras.container.Container(image)
    except (ValueError, AttributeError) as err:
        raise PushError(f"The SBOM cannot be pushed because {image!r} is not a registry reference: {err}.") from err
    registry = oras.provider.Registry(hostname=container.registry, insecure=is_loopback(container.registry))
    registry.auth.load_configs(container)
    scheme = registry.prefix
    base = f"{scheme}://{container.registry}/v2/{container.api_prefix}"
    try:
        subject = _subject(registry, base, subject_digest)
        for media_type, blob in ((EMPTY_CONFIG, EMPTY_CONTENT), (artifact_type, content)):
            _upload_blob(registry, container, media_type, blob)
        manifest = artifact_manifest(artifact_type, content, title, subject)
        digest = _digest(manifest)
        response = _put(registry, f"{base}/manifests/{digest}", manifest, OCI_MANIFEST, "the SBOM's manifest")
        if response.headers.get("OCI-Subject"):
            return Pushed(digest, None)  # the registry indexes referrers itself
        tag = fallback_tag(subject_digest)
        current = registry.do_request(f"{base}/manifests/{tag}", "GET", headers={"Accept": OCI_INDEX})
        if current.status_code not in (200, 404):
            raise PushError(f"Reading the referrers index {tag} of {image} failed: HTTP {current.status_code}.")
        index = add_referrer(current.content if current.status_code == 200 else None, manifest, artifact_type)
        _put(registry, f"{base}/manifests/{tag}", index, OCI_INDEX, f"the referrers index {tag}")
        return Pushed(digest, tag)
    except (requests.RequestException, ValueError, OSError) as err:
        # oras-py raises ValueError when the registry asks for credentials it cannot give.
        raise PushError(
            f"The push of the SBOM of {image} failed: {err}. Check that the registry is reachable and "
            "that you are logged in to it (`docker login`, read from ~/.docker/config.json) with the right to push."
        ) from err


def is_loopback(registry: str) -> bool:
    """A registry on loopback: spoken to over plain HTTP, as the Docker engine allows by default."""
    found = re.fullmatch(r"\[(?P<v6>[^\]]+)\](?::\d+)?|(?P<host>[^:]+)(?::\d+)?", registry)
    if not found:
        return False
    host = found.group("v6") or found.group("host")
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def _subject(registry: oras.provider.Registry, base: str, digest: str) -> dict[str, Any]:
    response = registry.do_request(f"{base}/manifests/{digest}", "GET", headers={"Accept": ", ".join(_MANIFEST_TYPES)})
    if response.status_code != 200:
        raise PushError(
            f"The SBOM cannot be pushed because the registry does not have the image manifest {digest} "
            f"(HTTP {response.status_code}). Push the image first."
        )
    media_type = response.headers.get("Content-Type", OCI_MANIFEST).split(";")[0].strip()
    if _digest(response.content) != digest:
        raise PushError(f"The registry answered a manifest whose digest is not {digest}: the SBOM is not pushed.")
    return {"mediaType": media_type, "digest": digest, "size": len(response.content)}


def _upload_blob(
    registry: oras.provider.Registry, container: oras.container.Container, media_type: str, blob: bytes
) -> None:
    layer = descriptor(media_type, blob)
    with tempfile.TemporaryDirectory(prefix="grocker-sbom-") as folder:
        path = Path(folder) / "blob"
        path.write_bytes(blob)
        response = registry.upload_blob(str(path), container, layer)
    if response.status_code not in (200, 201, 202):
        raise PushError(f"The registry refused a blob of the SBOM (HTTP {response.status_code}): {response.text[:200]}")


def _put(registry: oras.provider.Registry, url: str, body: bytes, media_type: str, what: str) -> requests.Response:
    response: requests.Response = registry.do_request(url, "PUT", data=body, headers={"Content-Type": media_type})
    if response.status_code not in (200, 201):
        raise PushError(
            f"The registry refused {what} (HTTP {response.status_code}): {response.text[:300].strip()}. "
            "It must accept OCI image manifests and indexes (OCI distribution spec 1.0 or later)."
        )
    return response


def _digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")
