"""The trust domain of the wheel volume: a digest of the index settings, defined once.

A wheel one build published may be reused by another build only if both would get it from the
same place: the same indexes and find-links pages. So the wheel volume, its records, origins and
locks belong to one index-settings domain (grocker.naming puts the digest in the volume's name,
grocker.wheels in the lock key), and a build never sees a candidate another domain's index
offered. Registry artifacts that share wheels between machines are keyed by the same digest.

The digest is of the settings normalized: credentials and token-like path segments or query
values removed (they say who asks, not what is offered, and must never reach a name or a
label), scheme and host lower-cased, default ports dropped, one trailing slash; the default
index when none is set. Indexes are a set (pip gives `index-url` and `extra-index-url` the same
rank), find-links pages too. Trusted hosts, timeouts and certificates change how an index is
reached, not what it offers: they are left out.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit, urlunsplit

from grocker.pipconf import PipSettings, url_secrets

DEFAULT_INDEX = "https://pypi.org/simple/"
"""pip's index when the settings name none."""
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Bumped when the normalization changes: equal settings must keep giving equal digests.
_SCHEME_VERSION = 1


def public_url(url: str) -> str:
    """`url` without its credentials, normalized: what the domain digest is made of.

    User info goes; a path segment or query value that reads as a token becomes `*` (a Gemfury or
    Cloudsmith URL keeps its account, not its token); the fragment goes.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "*"  # not a URL pip could use either: nothing of it is kept
    secrets = set(url_secrets(url))
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    segments = ["*" if segment in secrets else segment for segment in parts.path.split("/")]
    path = "/".join(segments).rstrip("/") + "/"
    pairs = []
    for pair in parts.query.split("&") if parts.query else ():
        name, eq, value = pair.partition("=")
        pairs.append(f"{name}{eq}*" if value in secrets else pair)
    return urlunsplit((scheme, host, path, "&".join(pairs), ""))


def index_domain(pip: PipSettings) -> str:
    """The SHA-256 (hex) of the normalized index settings: the wheel volume's trust domain."""
    content = {
        "version": _SCHEME_VERSION,
        "indexes": sorted({public_url(url) for url in (pip.index_url or DEFAULT_INDEX, *pip.extra_index_urls)}),
        "find_links": sorted({public_url(link) for link in pip.find_links}),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()
