"""A private package index of the tests: a PEP 503 simple index behind basic auth, on the engine.

It runs in a container of Grocker's default root image (which has python3), on the engine's
default bridge, where Grocker's compile containers reach it by its address. Its container is not
named grocker-*: it is the test's server, not a container Grocker runs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import secrets
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker

from grocker.naming import InternalNames
from tests.integration.helpers import Grocker, package_fixture, poll_until

USER = "ci-reader"
PORT = 8080

SERVER = """\
import functools, http.server

EXPECTED = open("/srv/auth").read().strip()


class Handler(http.server.SimpleHTTPRequestHandler):
    def allowed(self):
        if self.headers.get("Authorization") == EXPECTED:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="private"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_GET(self):
        if self.allowed():
            super().do_GET()

    def do_HEAD(self):
        if self.allowed():
            super().do_HEAD()


handler = functools.partial(Handler, directory="/srv/index")
http.server.ThreadingHTTPServer(("", PORT), handler).serve_forever()
""".replace("PORT", str(PORT))

# Asks the server from inside its container: prints the HTTP status with and without the token.
PROBE = """\
import sys, urllib.error, urllib.request
def status(headers):
    request = urllib.request.Request("http://127.0.0.1:PORT/PREFIX/simple/", headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=5).status
    except urllib.error.HTTPError as err:
        return err.code
print(status({}), status({"Authorization": open("/srv/auth").read().strip()}))
""".replace("PORT", str(PORT))


def tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar of these files, for put_archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def index_files(projects: dict[str, list[Path]], prefix: str) -> dict[str, bytes]:
    """A PEP 503 simple index of these projects and files under /PREFIX/, with their sha256 in the links."""
    files: dict[str, bytes] = {}
    for project, paths in projects.items():
        links = "".join(
            f'<a href="../../packages/{p.name}#sha256={hashlib.sha256(p.read_bytes()).hexdigest()}">{p.name}</a>\n'
            for p in paths
        )
        files[f"srv/index/{prefix}/simple/{project}/index.html"] = f"<html><body>\n{links}</body></html>\n".encode()
        files.update({f"srv/index/{prefix}/packages/{p.name}": p.read_bytes() for p in paths})
    anchors = "".join(f'<a href="{project}/">{project}</a>\n' for project in projects)
    files[f"srv/index/{prefix}/simple/index.html"] = f"<html><body>\n{anchors}</body></html>\n".encode()
    return files


@dataclass
class PrivateIndex:
    """The running index: where it is, its token, and what it serves.

    Its pages are under a path of its own (`prefix`), so that each index a test serves is an index
    domain of its own (grocker.trust): what an earlier run on the same engine, at the same address,
    left in its domain's volumes is never this run's.
    """

    client: docker.DockerClient
    container: str
    address: str
    token: str
    projects: dict[str, list[Path]]
    prefix: str

    @property
    def location(self) -> str:
        """The index's URL without its scheme and credentials."""
        return f"{self.address}:{PORT}/{self.prefix}/simple/"

    @property
    def url(self) -> str:
        return f"http://{USER}:{self.token}@{self.location}"

    def pip_conf_beside_pypi(self, path: Path) -> Path:
        """Write at `path` pip settings with PyPI as the index and this one as the extra index."""
        path.write_text(
            "[global]\n"
            "index-url = https://pypi.org/simple\n"
            f"extra-index-url = {self.url}\n"
            f"trusted-host = {self.address}\n"
            "cert = /etc/ssl/certs/ca-certificates.crt\n"
        )
        return path

    @property
    def needles(self) -> tuple[bytes, ...]:
        """The token as written, and inside the Authorization header pip sends."""
        header = base64.b64encode(f"{USER}:{self.token}".encode())
        return self.token.encode(), header

    def publish(self, project: str, path: Path) -> None:
        """Add a file to a project, as a new release on an index does."""
        self.projects.setdefault(project, []).append(path)
        self.client.api.put_archive(self.container, "/", tar(index_files(self.projects, self.prefix)))


@contextlib.contextmanager
def serve(
    grocker: Grocker, dist_dir: Path, names: InternalNames, projects: dict[str, list[Path]], name: str
) -> Iterator[PrivateIndex]:
    """Serve `projects` until the end of the block; the root image of `names` is built if missing."""
    client = grocker.client
    try:
        client.images.get(names.root)
    except docker.errors.ImageNotFound:
        bootstrap = package_fixture("pure-app", dist_dir, kind="wheel", version="1.0.0")
        grocker.build(str(bootstrap), "-n", grocker.name("bootstrap"), "--no-push", "--no-build-image")
    token = secrets.token_hex(20)
    prefix = uuid.uuid4().hex[:12]
    files = index_files(projects, prefix)
    files["srv/server.py"] = SERVER.encode()
    files["srv/probe.py"] = PROBE.replace("PREFIX", prefix).encode()
    files["srv/auth"] = ("Basic " + base64.b64encode(f"{USER}:{token}".encode()).decode()).encode()
    created = client.api.create_container(
        names.root, command=["python3", "/srv/server.py"], name=f"{name}-{uuid.uuid4().hex[:8]}", user="root"
    )
    try:
        client.api.put_archive(created["Id"], "/", tar(files))
        client.api.start(created["Id"])

        def answers() -> bool:
            probe = client.api.exec_create(created["Id"], ["python3", "/srv/probe.py"])
            return bool(client.api.exec_start(probe["Id"]).decode().strip() == "401 200")

        poll_until(answers, 30, "the private index answering 401 without and 200 with its token")
        address = client.api.inspect_container(created["Id"])["NetworkSettings"]["IPAddress"]
        assert address, "the private index has no address on the default bridge"
        yield PrivateIndex(client, created["Id"], address, token, projects, prefix)
    finally:
        client.api.remove_container(created["Id"], force=True)
