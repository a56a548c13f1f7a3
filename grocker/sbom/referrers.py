"""Push a file to a registry as an OCI artifact whose `subject` is an image: its SBOM.

oras-py (the `oras` package) parses the reference and does the registry's authentication:
credentials from the Docker config (`docker login`), basic or token auth on a 401 challenge.
Its `push()` can set a subject but always builds the manifest itself, without `artifactType`
and with its own JSON bytes, knows nothing of the referrers tag schema, and its requests retry
for about two minutes with no timeout, so an unreachable registry would hang the build. So
this module writes the manifest and the referrers index against the OCI distribution spec 1.1
and sends them, and the blobs (monolithic upload: POST then PUT), through oras-py's
authenticating request function without its retry loop, with a timeout:

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import requests

from grocker.engine.endpoint import read_small_file
from grocker.errors import PushError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
EMPTY_CONTENT = b"{}"
TITLE = "org.opencontainers.image.title"
TIMEOUT = 60  # seconds per request
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
    """The referrers index with the manifest's descriptor added once (a new index when None).

    PushError when the registry's `index` is not an OCI image index (a JSON object whose
    `manifests` is a list of objects): the run says so instead of crashing after the push.
    """
    data: Any = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if index:
        try:
            data = json.loads(index)
        except ValueError:
            data = None
    manifests = data.get("manifests", []) if isinstance(data, dict) else None
    if not isinstance(manifests, list) or not all(isinstance(item, dict) for item in manifests):
        raise PushError(
            "The registry's referrers index of the image is not an OCI image index (a JSON object whose "
            "`manifests` is a list of descriptors), so the SBOM cannot be listed in it; the SBOM's manifest "
            "itself was pushed. Delete that tag in the registry (it is named sha256-<image digest>) and push again."
        )
    entry = descriptor(OCI_MANIFEST, manifest, artifactType=artifact_type)
    if not any(item.get("digest") == entry["digest"] for item in manifests):
        manifests.append(entry)
    data["manifests"] = manifests
    return _json(data)


def push_artifact(
    image: str, subject_digest: str, content: bytes, artifact_type: str, title: str, docker_config: Path | None = None
) -> Pushed:
    """Push `content` as an artifact referring to the image `image`@`subject_digest`.

    Registry logins come from `docker_config`/config.json (the folder DOCKER_CONFIG names, as for
    the engine's push), never from another one; None: no login (anonymous push).
    """
    import oras.container  # imported when used: see _Registry

    try:
        container = oras.container.Container(image)
    except (ValueError, AttributeError) as err:
        raise PushError(f"The SBOM cannot be pushed because {image!r} is not a registry reference: {err}.") from err
    registry = _Registry(container, docker_config)
    try:
        subject = _subject(registry, subject_digest)
        for media_type, blob in ((EMPTY_CONFIG, EMPTY_CONTENT), (artifact_type, content)):
            _upload_blob(registry, media_type, blob)
        manifest = artifact_manifest(artifact_type, content, title, subject)
        digest = _digest(manifest)
        response = _put(registry, f"manifests/{digest}", manifest, OCI_MANIFEST, "the SBOM's manifest")
        if response.headers.get("OCI-Subject"):
            return Pushed(digest, None)  # the registry indexes referrers itself
        tag = fallback_tag(subject_digest)
        current = registry.request("GET", f"manifests/{tag}", headers={"Accept": OCI_INDEX})
        if current.status_code not in (200, 404):
            raise PushError(f"Reading the referrers index {tag} of {image} failed: HTTP {current.status_code}.")
        index = add_referrer(current.content if current.status_code == 200 else None, manifest, artifact_type)
        _put(registry, f"manifests/{tag}", index, OCI_INDEX, f"the referrers index {tag}")
        return Pushed(digest, tag)
    except (requests.RequestException, ValueError, OSError) as err:
        # oras-py raises ValueError when the registry asks for credentials it cannot give.
        raise PushError(
            f"The push of the SBOM of {image} failed: {err}. Check that the registry is reachable and "
            f"that you are logged in to it (`docker login`, read from {_config_file(docker_config)}) with the "
            "right to push."
        ) from err


class _Registry:
    """One repository of a registry, spoken to through oras-py's authentication."""

    def __init__(self, container: Any, docker_config: Path | None) -> None:
        # Imported here, not with the module: oras-py imports jsonschema, whose format checkers
        # compile grammars (about 1 s on our machines), and every build that compiles imports
        # this module through grocker.fleet, used or not.
        import oras.provider

        self.oras = oras.provider.Registry(hostname=container.registry, insecure=is_loopback(container.registry))
        # oras-py's load_configs() always adds ~/.docker/config.json, whatever DOCKER_CONFIG says:
        # the logins are read here from the folder the rest of Grocker uses, and handed to it.
        # A non-empty settings mapping makes it skip its own reading.
        self.oras.auth._auth_config = _logins(docker_config)
        self.oras.auth.load_configs(container)
        self.base = f"{self.oras.prefix}://{container.registry}/v2/{container.api_prefix}/"
        session = self.oras.session
        plain = session.request

        def with_timeout(method: str, url: str, **kwargs: Any) -> requests.Response:
            kwargs.setdefault("timeout", TIMEOUT)
            response: requests.Response = plain(method, url, **kwargs)
            return response

        session.request = with_timeout
        # do_request without oras-py's retry decorator (functools.wraps keeps the function it wraps).
        self._request = getattr(type(self.oras).do_request, "__wrapped__", type(self.oras).do_request)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A request to `path` under the repository (or an absolute URL), authenticated."""
        response: requests.Response = self._request(self.oras, urljoin(self.base, path), method, **kwargs)
        return response


def _config_file(docker_config: Path | None) -> str:
    return str(docker_config / "config.json") if docker_config is not None else "no Docker configuration folder"


def _logins(docker_config: Path | None) -> dict[str, Any]:
    """The registry logins of config.json in `docker_config`, in the shape oras-py's auth expects.

    Missing or unreadable (a FIFO, a device, not JSON): no login, as the Docker CLI does.
    """
    data: Any = {}
    if docker_config is not None:
        try:
            data = json.loads(read_small_file(docker_config / "config.json"))
        except (OSError, ValueError):
            data = {}
    if not isinstance(data, dict):
        data = {}
    auths = data.get("auths")
    helpers = data.get("credHelpers")
    store = data.get("credsStore")
    return {
        "auths": auths if isinstance(auths, dict) else {},
        "credsStore": store if isinstance(store, str) else None,
        "credHelpers": helpers if isinstance(helpers, dict) else {},
    }


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


def _subject(registry: _Registry, digest: str) -> dict[str, Any]:
    response = registry.request("GET", f"manifests/{digest}", headers={"Accept": ", ".join(_MANIFEST_TYPES)})
    if response.status_code != 200:
        raise PushError(
            f"The SBOM cannot be pushed because the registry does not have the image manifest {digest} "
            f"(HTTP {response.status_code}). Push the image first."
        )
    media_type = response.headers.get("Content-Type", OCI_MANIFEST).split(";")[0].strip()
    if _digest(response.content) != digest:
        raise PushError(f"The registry answered a manifest whose digest is not {digest}: the SBOM is not pushed.")
    return {"mediaType": media_type, "digest": digest, "size": len(response.content)}


def open_repository(reference: str, docker_config: Path | None) -> _Registry:
    """One repository of a registry (`host[:port]/path`), spoken to as the SBOM's push speaks to it.

    Shared with grocker.chain.fleet, so that Grocker has one registry client (oras-py's authentication,
    with the logins of config.json in `docker_config`).
    """
    import oras.container  # imported when used: see _Registry

    return _Registry(oras.container.Container(reference), docker_config)


def upload_blob(registry: _Registry, blob: bytes, what: str) -> None:
    """Upload `blob` (`what`, for messages) unless the repository has it (grocker.chain.fleet's blobs)."""
    _upload_blob(registry, "application/octet-stream", blob, what)


def _upload_blob(registry: _Registry, media_type: str, blob: bytes, what: str = "the SBOM") -> None:
    """Upload a blob the repository does not have yet (the spec's monolithic upload)."""
    digest = _digest(blob)
    if registry.request("HEAD", f"blobs/{digest}").status_code == 200:
        return
    started = registry.request("POST", "blobs/uploads/")
    location = started.headers.get("Location")
    if started.status_code != 202 or not location:
        raise PushError(f"The registry refused to start a blob upload of {what} (HTTP {started.status_code}).")
    separator = "&" if "?" in location else "?"
    response = registry.request(
        "PUT",
        location + separator + urlencode({"digest": digest}),
        data=blob,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(blob))},
    )
    if response.status_code != 201:
        raise PushError(f"The registry refused a blob of {what} (HTTP {response.status_code}).")


def _put(registry: _Registry, path: str, body: bytes, media_type: str, what: str) -> requests.Response:
    response = registry.request("PUT", path, data=body, headers={"Content-Type": media_type})
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
