"""Is the final image up to date in the fleet's registry? Then it is pulled, not built.

grocker.chain.freshness skips a build whose image is on the engine with the inputs digest this
build would record. A fresh engine of a fleet (grocker.fleet) has no such image, but the
registry may: when the final image's name and the image prefix both name a registry, and the
registry holds that tag with a runner's labels, this Grocker version and the inputs digest this
build would record, a build would make that same image again (with the fleet's lock, its layers
are byte-identical): the image is pulled instead, and nothing is pushed.

The inputs digest covers the root image's ID, which must be equal on every engine that holds
the same root. The root is read from the prefix's registry, not from the engine: its config
digest (the image ID of Docker with overlay2 and of Podman) and its manifest digest (the ID of
Docker with the containerd image store) are both what an engine that pulled or pushed that root
records, so either one matches. A root already on the engine is the one a build would use: its
own ID then. Read through oras-py's authentication (grocker.referrers.open_repository), as the
fleet's wheels and the SBOM's referrers are.

Never with --no-cache, --refresh or a version range (as the local check), nor without an image
to build. Any registry failure gives one warning and the build goes on as it would without it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from grocker._version import __version__
from grocker.chain import fleet
from grocker.chain.freshness import current_root_id, inputs_digest
from grocker.chain.session import Session
from grocker.chain.wheelhouse import reuses_lock
from grocker.engine.protocol import ImageInfo
from grocker.errors import GrockerError
from grocker.labels import BASE_ID_LABEL, INPUTS_LABEL, ROLE_LABEL, RUNNER, VERSION_LABEL
from grocker.log import logger, phase
from grocker.sbom import referrers

Opener = Callable[[str], Any]
"""Opens a repository `host/path` with the build's registry logins (grocker.referrers.open_repository)."""

# The manifests an engine's push writes: Docker's schema 2 (Docker 20.10, 26) and OCI (Podman, containerd).
_IMAGE_MANIFESTS = (referrers.OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


class _UnansweredError(Exception):
    """The registry did not give what the check asked for (a warning, then the build goes on)."""


@dataclass(frozen=True)
class RemoteImage:
    """An image in a registry: its manifest digest, config digest and labels."""

    digest: str
    config_digest: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Pulled:
    """The up-to-date image pulled from the registry: where from, its manifest digest, its local image."""

    registry: str
    digest: str
    image: ImageInfo


def pull_if_up_to_date(session: Session) -> Pulled | None:
    """Pull the final image when the registry holds it built from this build's inputs; else None."""
    request, config = session.request, session.config
    name = request.image_name
    host = fleet.registry_host(name) if "/" in name else None
    if (
        request.no_cache
        or not request.build_image
        or not reuses_lock(request)
        or host is None
        or fleet.registry_host(config.image_prefix) is None
    ):
        return None

    def open_repository(reference: str) -> Any:
        return referrers.open_repository(reference, request.docker_config)

    try:
        remote = _up_to_date_remote(session, open_repository)
    except (_UnansweredError, GrockerError) as err:
        _warn(name, str(err))
        return None
    except (requests.RequestException, OSError) as err:
        _warn(name, f"the registry cannot be reached ({type(err).__name__})")
        return None
    except ValueError:
        # oras-py's answer when the registry asks for credentials the Docker configuration lacks.
        _warn(name, "access denied: log in with `docker login`")
        return None
    if remote is None:
        return None
    with phase(f"pull {name}") as note:
        pulled = session.engine.pull(name)
        image = session.engine.image(name) if pulled else None
        note("pulled from the registry" if image is not None else "the pull failed")
    if image is None or any(image.labels.get(key) != remote.labels.get(key) for key in (INPUTS_LABEL, VERSION_LABEL)):
        _warn(name, "the engine could not pull the image the registry holds")
        return None
    return Pulled(host, remote.digest, image)


def _up_to_date_remote(session: Session, open_repository: Opener) -> RemoteImage | None:
    """The registry's final image, when its labels say a build now would make it again; else None."""
    name = session.request.image_name
    final = _read_image(open_repository, name)
    if final is None:
        return None  # not in the registry: nothing to say, the build goes on
    labels = final.labels
    if labels.get(ROLE_LABEL) != RUNNER or labels.get(VERSION_LABEL) != __version__:
        logger.debug("%s in the registry is not a runner of Grocker %s: building it", name, __version__)
        return None
    recorded = labels.get(INPUTS_LABEL)
    if not recorded or recorded not in {
        inputs_digest(session, root_id) for root_id in _root_ids(session, open_repository)
    }:
        logger.debug("%s in the registry was built from other inputs than this build's: building it", name)
        return None
    return final


def _root_ids(session: Session, open_repository: Opener) -> set[str]:
    """The IDs the root image a build would use has on the engines of the fleet (empty: unknown)."""
    engine, names = session.engine, session.names
    if engine.image(names.root) is not None:
        # The engine's root is the one a build here uses (none when it is stale: it would be rebuilt).
        local = current_root_id(session)
        return {local} if local is not None else set()
    root = _read_image(open_repository, names.root)
    if root is None:
        return set()
    base = engine.image(session.config.runtime.image)
    built_from = root.labels.get(BASE_ID_LABEL)
    if base is not None and built_from and built_from != base.id:
        return set()  # this engine's base image is another one: a build would make another root
    return {root.config_digest, root.digest}


def _read_image(open_repository: Opener, name: str) -> RemoteImage | None:
    """The manifest and config labels of `name` (`host/path:tag`) in its registry; None when missing."""
    repository, tag = _split(name)
    registry = open_repository(repository)
    response = registry.request("GET", f"manifests/{tag}", headers={"Accept": ", ".join(_IMAGE_MANIFESTS)})
    if response.status_code == 404:
        return None
    _expect(response, f"the manifest of {name}")
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    try:
        manifest = json.loads(response.content)
        config_digest = str(manifest["config"]["digest"])
    except (ValueError, KeyError, TypeError) as err:
        raise _UnansweredError(f"the manifest of {name} is malformed ({type(err).__name__})") from err
    if media_type not in _IMAGE_MANIFESTS and manifest.get("mediaType") not in _IMAGE_MANIFESTS:
        return None  # an index (several platforms) or an artifact: not an image this build would make
    if not _DIGEST_RE.fullmatch(config_digest):
        raise _UnansweredError(f"the manifest of {name} names the config {config_digest!r}")
    blob = registry.request("GET", f"blobs/{config_digest}")
    _expect(blob, f"the config of {name}")
    if "sha256:" + hashlib.sha256(blob.content).hexdigest() != config_digest:
        raise _UnansweredError(f"the registry's config of {name} is not the one its manifest names: refused")
    try:
        labels = json.loads(blob.content).get("config", {}).get("Labels") or {}
    except (ValueError, AttributeError) as err:
        raise _UnansweredError(f"the config of {name} is malformed ({type(err).__name__})") from err
    if not isinstance(labels, dict):
        raise _UnansweredError(f"the config of {name} has malformed labels")
    digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
    return RemoteImage(digest, config_digest, {str(key): str(value) for key, value in labels.items()})


def _split(name: str) -> tuple[str, str]:
    """`host/path:tag` -> (`host/path`, `tag`); a name without a tag is `latest`, as the engine's."""
    last = name.rsplit("/", 1)[-1]
    if "@" in last:
        raise _UnansweredError(f"{name} names a digest, not a tag")
    if ":" in last:
        repository, tag = name.rsplit(":", 1)
        return repository, tag
    return name, "latest"


def _expect(response: requests.Response, what: str) -> None:
    if response.status_code in (401, 403):
        raise _UnansweredError(f"access to {what} denied (HTTP {response.status_code}): log in with `docker login`")
    if response.status_code != 200:
        raise _UnansweredError(f"the registry answered HTTP {response.status_code} for {what}")


def _warn(name: str, message: str) -> None:
    logger.warning("registry up-to-date check of %s: %s; building it", name, message)
