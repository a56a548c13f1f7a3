"""The indexes and find-links pages of the pip settings, as the publisher reads them."""

from __future__ import annotations

import base64
import html.parser
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.client import HTTPResponse
from typing import Any

from . import PublishError
from .names import normalize, sdist_of

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
Files = dict[str, tuple[str, "str | None"]]
"""A page's files: {file name: (absolute URL, sha256 or None)}."""


class _Links(html.parser.HTMLParser):
    """The anchors of a PEP 503 project page: (file name, href)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append(("".join(self._text).strip(), self._href))
            self._href = None


def parse_project_page(body: bytes, content_type: str, page_url: str) -> Files:
    """Files of a simple-API project page: {file name: (absolute URL, sha256 or None)}."""
    files: Files = {}
    if content_type.split(";")[0].strip() == JSON_TYPE:
        for entry in json.loads(body).get("files", []):
            url = urllib.parse.urljoin(page_url, entry["url"])
            files[entry["filename"]] = (url.split("#")[0], (entry.get("hashes") or {}).get("sha256"))
        return files
    parser = _Links()
    parser.feed(body.decode("utf-8", "replace"))
    for text, href in parser.links:
        url = urllib.parse.urljoin(page_url, href)
        base, _, fragment = url.partition("#")
        filename = urllib.parse.unquote(urllib.parse.urlsplit(base).path.rsplit("/", 1)[-1]) or text
        digest = None
        for part in fragment.split("&"):
            key, _, value = part.partition("=")
            if key == "sha256":
                digest = value.lower()
        files[filename] = (base, digest)
    return files


class Index:
    """One index of the pip settings: its URL without credentials, and how to reach it."""

    def __init__(
        self, url: str, cert: str | None, client_cert: str | None, trusted_hosts: list[str], timeout: float
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        self.authorization = None
        if parts.username is not None or parts.password is not None:
            user = urllib.parse.unquote(parts.username or "")
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.authorization = f"Basic {token}"
        host = parts.hostname or ""
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        self.netloc = netloc
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/", "", ""))
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=cert) if cert else ssl.create_default_context()
        if host in trusted_hosts or netloc in trusted_hosts:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        if client_cert:
            self.context.load_cert_chain(client_cert)

    def open(self, url: str, accept: str | None = None) -> HTTPResponse:
        """The response to a GET of `url`, with the index's credentials for its own host only."""
        request = urllib.request.Request(url)  # noqa: S310 (the indexes of the pip settings: http or https)
        if accept:
            request.add_header("Accept", accept)
        if self.authorization and urllib.parse.urlsplit(url).netloc.rsplit("@", 1)[-1] == self.netloc:
            # Never sent on to another host by a redirect.
            request.add_unredirected_header("Authorization", self.authorization)
        response: HTTPResponse = urllib.request.urlopen(request, timeout=self.timeout, context=self.context)  # noqa: S310
        return response

    def project_files(self, name: str) -> Files:
        """The files of project `name` on this index."""
        return self.page_files(urllib.parse.urljoin(self.url, normalize(name) + "/"), name)

    def page_files(self, page: str, name: str) -> Files:
        """The files of the page `page` (of project `name`); none when it is not found."""
        try:
            with self.open(page, f"{JSON_TYPE}, text/html;q=0.1") as response:
                body = response.read()
                content_type = response.headers.get("Content-Type", "text/html")
                final = response.geturl()
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return {}
            raise PublishError(f"the index {self.url} answered {err.code} for the project page of {name}") from err
        except (urllib.error.URLError, OSError) as err:
            raise PublishError(f"the index {self.url} cannot be reached ({err})") from err
        return parse_project_page(body, content_type, final)


Found = tuple[Index, str, "str | None", str]
"""Where a file is: its index, URL, SHA-256 (if the index gives one) and name."""


class Indexes:
    """The indexes of the request, then its remote find-links pages, each page read once."""

    def __init__(self, request: dict[str, Any]) -> None:
        def index(url: str) -> Index:
            return Index(
                url,
                request.get("cert"),
                request.get("client_cert"),
                request.get("trusted_hosts", []),
                request.get("timeout") or 15,
            )

        self.indexes = [index(url) for url in request.get("indexes") or ["https://pypi.org/simple/"]]
        # Remote find-links pages: flat pages of links, looked at after the indexes.
        self.links = [index(url) for url in request.get("find_links", [])]
        self.pages: dict[tuple[str, str], Files] = {}

    def listing(self, name: str) -> Iterator[tuple[Index, Files]]:
        """(index, its files of project `name`) for every index, then every find-links page."""
        for index in self.indexes + self.links:
            key = (index.url, normalize(name) if index in self.indexes else "")
            if key not in self.pages:
                if index in self.indexes:
                    self.pages[key] = index.project_files(name)
                else:
                    self.pages[key] = index.page_files(index.url.rstrip("/"), name)
            yield index, self.pages[key]

    def find(self, name: str, filename: str) -> Found | None:
        """Where the file `filename` of project `name` is listed first, or None."""
        for index, files in self.listing(name):
            if filename in files:
                url, digest = files[filename]
                return index, url, digest, filename
        return None

    def find_sdist(self, name: str, version: str) -> Found | None:
        """Where an sdist of project `name` at `version` is listed first, or None."""
        for index, files in self.listing(name):
            for filename, (url, digest) in sorted(files.items()):
                if sdist_of(filename, name, version):
                    return index, url, digest, filename
        return None

    @staticmethod
    def download(index: Index, url: str, filename: str) -> Iterator[bytes]:
        """The content of `url` on `index`, in blocks of 1 MiB."""
        try:
            with index.open(url) as response:
                yield from iter(lambda: response.read(1 << 20), b"")
        except (urllib.error.URLError, OSError) as err:
            raise PublishError(f"downloading {filename} from {index.url} failed ({err})") from err
