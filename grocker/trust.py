"""The trust domain of the wheel volume: a digest of the index settings, defined once.

A wheel one build published may be reused by another build only if both would get it from the
same place: the same indexes and find-links pages. So the wheel volume, its records, origins and
locks belong to one index-settings domain (grocker.naming puts the digest in the volume's name,
grocker.wheels in the lock key), and a build never sees a candidate another domain's index
offered. Registry artifacts that share wheels between machines are keyed by the same digest.

The digest is of the settings normalized: the user info of each URL removed (credentials say who
asks, not what is offered), scheme and host lower-cased, default ports dropped, one trailing
slash, no fragment; the default index when none is set. Indexes are a set (pip gives
`index-url` and `extra-index-url` the same rank), find-links pages too. Everything else of a URL
stays in what is hashed, a token in its path included: two repositories of one host must never
share a domain, and a token-like segment cannot be told from a repository's name. Only the
SHA-256 is ever written, from which no part can be read back. Trusted hosts, timeouts and
certificates change how an index is reached, not what it offers: they are left out.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit, urlunsplit

from grocker.config.pipconf import PipSettings

DEFAULT_INDEX = "https://pypi.org/simple/"
"""pip's index when the settings name none."""
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Bumped when the normalization changes: equal settings must keep giving equal digests.
_SCHEME_VERSION = 1


def normalized_url(url: str) -> str:
    """`url` as the domain digest takes it: no user info, scheme and host lower-cased, no default port.

    Never shown: its path or query may hold a token (see the module's docstring).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url  # not a URL pip could use either: hashed as it is
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path.rstrip("/") + "/", parts.query, ""))


def index_domain(pip: PipSettings) -> str:
    """The SHA-256 (hex) of the normalized index settings: the wheel volume's trust domain."""
    content = {
        "version": _SCHEME_VERSION,
        "indexes": sorted({normalized_url(url) for url in (pip.index_url or DEFAULT_INDEX, *pip.extra_index_urls)}),
        "find_links": sorted({normalized_url(link) for link in pip.find_links}),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()
