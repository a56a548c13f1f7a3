"""A fleet's build cache: compiled wheels and wheel locks shared through the prefix's registry.

When the image prefix names a registry, the engines that build with it share nothing else, and
that is enough: the publisher's checked output is published there as OCI content, and any other
engine of an identical build environment fetches it instead of compiling or resolving again.

- One blob per wheel, content-addressed (its digest is the wheel's SHA-256), in the repository
  `<prefix>/grocker-<runtime>-wheels`.
- An OCI image manifest per artifact (`artifactType` ARTIFACT_TYPE, the empty config), which
  `oras` and `crane` list: a wheel built from an sdist is tagged `sdist-<key>`, a wheel lock
  `lock-<key>` (the lock's JSON first, then every wheel it names).
- The key is a SHA-256 of the build environment's identity (configuration hash, root and
  compiler image IDs, index-settings digest: grocker.trust) and of the sdist's SHA-256 or the
  lock's key (grocker.wheels.lock_key): only an identical environment can match it.

What is trusted: nothing read from the registry is used unchecked. A fetched blob must have the
digest asked for (a lock's wheels: the SHA-256 the lock gives); the fetched files reach the wheel
volume only through the publisher, which checks their names and records them. A lock from the
registry is checked as one from the volume is (grocker.chain.wheel_report.check_lock).

The cache never breaks a build: any registry failure (unreachable, denied, missing, a blob that
does not match) gives one warning and the build goes on as it would without a fleet.
Credentials come from the Docker CLI configuration through oras-py (grocker.sbom.referrers) and are
only ever sent to the registry.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from packaging.utils import parse_wheel_filename

from grocker.errors import GrockerError
from grocker.log import counted, logger
from grocker.sbom import referrers
from grocker.wheels import Origin, WheelFile, WheelLock

if TYPE_CHECKING:
    from grocker.chain.session import Session

ARTIFACT_TYPE = "application/vnd.grocker.wheels.v1"
"""The artifact type of every manifest of a fleet's repository."""
WHEEL_TYPE = "application/vnd.grocker.wheel.v1+zip"
LOCK_TYPE = "application/vnd.grocker.lock.v1+json"
KEY_ANNOTATION = "org.grocker.fleet.key"
_SCHEME_VERSION = 1  # bumped when what a key covers changes
_TAG_RE = re.compile(r"(?:sdist|lock)-[0-9a-f]{64}")
# A registry host, as the Docker CLI tells one from a Docker Hub namespace.
_URL_RE = re.compile(r"https?://[^\s@]{1,2000}")
_ID_RE = re.compile(r"sha256:[0-9a-f]{64}")
_HOST_RE = re.compile(r"localhost(?::[0-9]+)?|[^/]*[.:][^/]*")


class FleetError(Exception):
    """The registry did not give what the fleet asked for (a warning, never a failed build).

    `broken`: the registry will not do for the rest of the build (unreachable, access denied).
    """

    def __init__(self, message: str, broken: bool = False) -> None:
        super().__init__(message)
        self.broken = broken


@dataclass(frozen=True)
class Environment:
    """What makes two builds' compiled wheels interchangeable: equal environments, equal wheels."""

    config_hash: str
    root_id: str
    compiler_id: str
    index_domain: str

    @property
    def identity(self) -> str:
        """The SHA-256 (hex) of the environment."""
        content = {
            "version": _SCHEME_VERSION,
            "config": self.config_hash,
            "root": self.root_id,
            "compiler": self.compiler_id,
            "index": self.index_domain,
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()

    def sdist_tag(self, sdist_sha256: str) -> str:
        """The tag of the wheel this environment builds from the sdist of that SHA-256."""
        return "sdist-" + _hash(self.identity, "sdist", sdist_sha256)

    def lock_tag(self, lock_key: str) -> str:
        """The tag of the lock called `lock_key` (grocker.wheels.lock_key) in this environment."""
        return "lock-" + _hash(self.identity, "lock", lock_key)


def registry_host(prefix: str | None) -> str | None:
    """The registry the image prefix names, or None (no prefix, or a Docker Hub namespace)."""
    if not prefix:
        return None
    first = prefix.split("/", 1)[0]
    return first if _HOST_RE.fullmatch(first) else None


def for_session(session: Session) -> Fleet | None:
    """The fleet of the build, or None when its prefix names no registry (or its images are missing).

    Published to only when the run pushes (the internal images go to the registry too).
    """
    prefix = session.config.image_prefix
    if prefix is None or registry_host(prefix) is None:
        return None
    root = session.engine.image(session.names.root)
    compiler = session.engine.image(session.names.compiler)
    if root is None or compiler is None:
        return None
    environment = Environment(session.names.config_hash, root.id, compiler.id, session.names.index_domain)
    return Fleet(
        repository(prefix, session.config.runtime.slug),
        environment,
        publishing=session.request.push,
        docker_config=session.request.docker_config,
    )


def repository(prefix: str, slug: str) -> str:
    """The fleet's repository of a runtime under the prefix."""
    return f"{prefix}/grocker-{slug}-wheels"


def wheel_manifest(files: Sequence[tuple[str, str, int]], key: str, lock: bytes | None = None) -> bytes:
    """The manifest of wheels (file name, SHA-256, size), after the lock's JSON if any (deterministic)."""
    layers = []
    if lock is not None:
        layers.append(referrers.descriptor(LOCK_TYPE, lock, annotations={referrers.TITLE: "wheel-lock.json"}))
    for filename, sha256, size in files:
        layers.append(
            {
                "mediaType": WHEEL_TYPE,
                "digest": f"sha256:{sha256}",
                "size": size,
                "annotations": {referrers.TITLE: filename},
            }
        )
    manifest = {
        "schemaVersion": 2,
        "mediaType": referrers.OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": referrers.descriptor(referrers.EMPTY_CONFIG, referrers.EMPTY_CONTENT),
        "layers": layers,
        "annotations": {KEY_ANNOTATION: key},
    }
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")


def parse_manifest(content: bytes) -> tuple[dict[str, Any] | None, list[tuple[str, str, int]]]:
    """The lock's descriptor (or None) and the wheels (file name, SHA-256, size) of a fleet manifest."""
    try:
        data = json.loads(content)
        if data.get("artifactType") != ARTIFACT_TYPE:
            raise FleetError(f"it is not a Grocker wheels artifact ({data.get('artifactType')!r})")
        lock = None
        wheels = []
        for layer in data["layers"]:
            digest = str(layer["digest"])
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                raise FleetError(f"it names the digest {digest!r}")
            if layer["mediaType"] == LOCK_TYPE:
                lock = layer
            elif layer["mediaType"] == WHEEL_TYPE:
                wheels.append((str(layer["annotations"][referrers.TITLE]), digest[7:], int(layer["size"])))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise FleetError(f"its manifest is malformed ({err})") from err
    return lock, wheels


@dataclass
class Fleet:
    """The fleet's repository for one build: fetch and publish, each failure a warning once."""

    reference: str
    environment: Environment
    publishing: bool
    opener: Callable[[str], Any] | None = None
    """Opens the repository (tests give their own registry); grocker.sbom.referrers.open_repository."""
    docker_config: Path | None = None
    """The Docker CLI configuration folder whose logins the registry gets (DOCKER_CONFIG)."""
    broken: bool = False
    fetched: set[str] = field(default_factory=set)
    """The wheels this build took from the registry."""
    _registry: Any = None

    def fetch_sdist_wheel(self, sdist_sha256: str) -> tuple[str, bytes] | None:
        """The wheel (file name, content) the environment built from that sdist, if the fleet has it."""
        tag = self.environment.sdist_tag(sdist_sha256)
        found = self._guarded(f"the wheel of the sdist {sdist_sha256[:12]}", lambda: self._fetch(tag))
        if not found:
            return None
        _lock, wheels = found
        if len(wheels) != 1:
            self._warn(f"{tag} names {len(wheels)} wheels, not one", broken=False)
            return None
        filename, sha256, _size = wheels[0]
        content = self._guarded(filename, lambda: self._blob(sha256, filename))
        if content is None:
            return None
        self.fetched.add(filename)
        return filename, content

    def fetch_lock(self, lock_key: str) -> tuple[dict[str, Any], dict[str, bytes]] | None:
        """The lock's JSON and its wheels' contents (each checked against the lock's SHA-256), or None."""

        def fetch() -> tuple[dict[str, Any], dict[str, bytes]] | None:
            found = self._fetch(self.environment.lock_tag(lock_key))
            lock_layer = found[0] if found is not None else None
            if lock_layer is None:
                return None
            data = json.loads(self._blob(str(lock_layer["digest"])[7:], "the wheel lock"))
            if not isinstance(data, dict):
                raise FleetError("the wheel lock is not a JSON object")
            contents = {}
            for entry in (data["application"], *data["dependencies"]):
                contents[str(entry["file"])] = self._blob(str(entry["sha256"]), str(entry["file"]))
            return data, contents

        found = self._guarded(f"the wheel lock {lock_key}", fetch)
        if found:
            self.fetched.update(found[1])
        return found or None

    def shares_lock(self, lock_key: str) -> bool:
        """True when the fleet has the lock already, or cannot take it: nothing to publish."""
        if not self.publishing:
            return True
        tag = self.environment.lock_tag(lock_key)
        found = self._guarded("the wheel lock", lambda: self._open().request("HEAD", f"manifests/{tag}").status_code)
        return found is None or found == 200

    def publish_sdist_wheel(self, sdist_sha256: str, filename: str, content: bytes) -> None:
        """Share a wheel compiled here from that sdist, unless the fleet has one already (first one wins)."""
        if not self.publishing:
            return
        tag = self.environment.sdist_tag(sdist_sha256)
        self._guarded(f"publishing {filename}", lambda: self._publish(tag, [(filename, content)], None))

    def publish_lock(self, lock_key: str, lock: Mapping[str, Any], read: Callable[[str], bytes | None]) -> None:
        """Share the lock and its wheels (read from the volume by `read`, each checked), unless shared already."""
        if not self.publishing:
            return
        tag = self.environment.lock_tag(lock_key)
        entries = [lock["application"], *lock["dependencies"]]

        def publish() -> None:
            registry = self._open()
            if registry.request("HEAD", f"manifests/{tag}").status_code == 200:
                return
            files = []
            for entry in entries:
                filename, sha256 = str(entry["file"]), str(entry["sha256"])
                head = registry.request("HEAD", f"blobs/sha256:{sha256}")
                if head.status_code == 200 and head.headers.get("Content-Length"):
                    files.append((filename, sha256, int(head.headers["Content-Length"])))
                    continue
                content = read(filename)
                if content is None or hashlib.sha256(content).hexdigest() != sha256:
                    raise FleetError(f"{filename} in the wheel volume is not the one its lock names")
                referrers.upload_blob(registry, content, f"the wheel {filename}")
                files.append((filename, sha256, len(content)))
            body = json.dumps(dict(lock), sort_keys=True, separators=(",", ":")).encode("utf-8")
            referrers.upload_blob(registry, body, "the wheel lock")
            referrers.upload_blob(registry, referrers.EMPTY_CONTENT, "an empty config")
            manifest = wheel_manifest(files, tag, body)
            self._put_manifest(registry, tag, manifest)

        self._guarded("publishing the wheel lock", publish)

    # The registry

    def _open(self) -> Any:
        if self._registry is None:
            if self.opener is not None:
                self._registry = self.opener(self.reference)
            else:
                self._registry = referrers.open_repository(self.reference, self.docker_config)
        return self._registry

    def _fetch(self, tag: str) -> tuple[dict[str, Any] | None, list[tuple[str, str, int]]] | None:
        response = self._open().request("GET", f"manifests/{tag}", headers={"Accept": referrers.OCI_MANIFEST})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _answer(response.status_code, tag)
        return parse_manifest(response.content)

    def _blob(self, sha256: str, what: str) -> bytes:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise FleetError(f"{what} has no SHA-256")
        response = self._open().request("GET", f"blobs/sha256:{sha256}")
        if response.status_code != 200:
            raise _answer(response.status_code, f"the blob of {what}")
        if hashlib.sha256(response.content).hexdigest() != sha256:
            raise _TamperedError(f"the registry's blob of {what} is not the file its digest names: refused")
        content: bytes = response.content
        return content

    def _publish(self, tag: str, wheels: Sequence[tuple[str, bytes]], lock: bytes | None) -> None:
        registry = self._open()
        if registry.request("HEAD", f"manifests/{tag}").status_code == 200:
            return  # another engine shared its build first: keep one consistent artifact
        files = []
        for filename, content in wheels:
            referrers.upload_blob(registry, content, f"the wheel {filename}")
            files.append((filename, hashlib.sha256(content).hexdigest(), len(content)))
        referrers.upload_blob(registry, referrers.EMPTY_CONTENT, "an empty config")
        self._put_manifest(registry, tag, wheel_manifest(files, tag, lock))

    def _put_manifest(self, registry: Any, tag: str, manifest: bytes) -> None:
        headers = {"Content-Type": referrers.OCI_MANIFEST}
        response = registry.request("PUT", f"manifests/{tag}", data=manifest, headers=headers)
        if response.status_code not in (200, 201):
            raise FleetError(f"the registry refused the manifest {tag} (HTTP {response.status_code})")

    def _guarded(self, what: str, action: Callable[[], Any]) -> Any:
        """Run `action` against the registry; on any failure, warn (once) and return None."""
        if self.broken:
            return None
        try:
            return action()
        except FleetError as err:
            self._warn(f"{what}: {err}", broken=err.broken)
        except GrockerError as err:  # the registry refused an upload (grocker.sbom.referrers)
            self._warn(f"{what}: {err}", broken=True)
        except (requests.RequestException, OSError) as err:
            self._warn(f"{what}: the registry cannot be reached ({type(err).__name__})", broken=True)
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            self._warn(f"{what}: the registry's content is malformed ({type(err).__name__} {err})", broken=False)
        except ValueError:
            # oras-py's answer when the registry asks for credentials the Docker configuration lacks.
            self._warn(f"{what}: access denied: log in with `docker login`", broken=True)
        return None

    def warn(self, message: str) -> None:
        """A warning about what the fleet gave (the build does without it)."""
        self._warn(message, broken=False)

    def _warn(self, message: str, broken: bool) -> None:
        if broken:
            self.broken = True  # one warning: the rest of the build does without the fleet
        logger.warning(
            "fleet cache %s: %s; the build goes on without it%s",
            self.reference,
            message,
            "" if broken else " for this file",
        )


def collect_entries(
    wheels: Sequence[WheelFile], contents: Mapping[str, bytes], input_dir: str
) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """The publisher's `outboxes` entries of fetched wheels, and the files to put in its input.

    One folder per wheel, as the publisher accepts the one wheel of a project and version from
    each (resources/wheelhouse/publish.py), with the origin the lock recorded, if it is plain.
    """
    entries, files = [], {}
    for index, wheel in enumerate(wheels):
        name, version, _build, _tags = parse_wheel_filename(wheel.file)
        folder = f"fleet/lock-{index}"
        files[f"{folder}/{wheel.file}"] = contents[wheel.file]
        entry: dict[str, Any] = {"path": f"{input_dir}/{folder}", "name": str(name), "version": str(version)}
        origin = plain_origin(wheel.origin)
        if origin is not None:
            entry["origin"] = origin
        entries.append(entry)
    return entries, files


def plain_origin(origin: Origin) -> dict[str, str] | None:
    """A lock's origin as the volume records it, only if its values are plain (no credentials)."""
    if origin.kind == "index" and all(
        value is not None and _URL_RE.fullmatch(value) for value in (origin.url, origin.index)
    ):
        return {"kind": "index", "url": str(origin.url), "index": str(origin.index)}
    if origin.kind == "built" and origin.compiler is not None and _ID_RE.fullmatch(origin.compiler):
        return {"kind": "built", "compiler": origin.compiler}
    return None


def lock_files(lock: WheelLock) -> dict[str, str]:
    """The application's and dependencies' files of a lock, with their SHA-256."""
    return {wheel.file: wheel.sha256 for wheel in (lock.application, *lock.dependencies)}


def count_sources(lock: WheelLock, fetched: set[str], compiled: Sequence[str]) -> dict[str, int]:
    """How many of the lock's wheels came from the registry, an index, a compile, or the volume."""
    files = lock_files(lock)
    built = set(compiled)
    from_registry = sum(1 for name in files if name in fetched)
    compiled_now = sum(1 for name in files if name not in fetched and parse_wheel_filename(name)[0] in built)
    added = set(lock.added)
    downloaded = sum(
        1 for name in files if name in added and name not in fetched and parse_wheel_filename(name)[0] not in built
    )
    return {
        "total": len(files),
        "registry": from_registry,
        "downloaded": downloaded,
        "compiled": compiled_now,
        "reused": len(files) - from_registry - downloaded - compiled_now,
    }


def sources_line(sources: Mapping[str, int]) -> str:
    """ "16 wheels: 14 from the registry, 1 downloaded, 1 compiled" (the parts that are not zero)."""
    parts = [
        f"{sources[key]} {text}"
        for key, text in (
            ("registry", "from the registry"),
            ("downloaded", "downloaded"),
            ("compiled", "compiled"),
            ("reused", "reused from the wheel volume"),
        )
        if sources.get(key)
    ]
    return f"{counted(sources['total'], 'wheel')}: {', '.join(parts)}"


class _TamperedError(FleetError):
    """A blob whose content does not have its digest."""


def _answer(status: int, what: str) -> FleetError:
    if status in (401, 403):
        return FleetError(
            f"access to {what} denied (HTTP {status}): log in with `docker login` (with the right to push "
            "to share wheels)",
            broken=True,
        )
    return FleetError(f"the registry answered HTTP {status} for {what}", broken=status >= 500)


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()
