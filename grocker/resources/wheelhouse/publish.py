"""Grocker's publisher: the only step that writes the wheel volume. It runs no package code.

It runs in a compiler container with the wheel volume mounted read-write, with the compiler's
Python and the standard library only (no pip). Every file it publishes is either
- downloaded from the index that lists it, under that exact file name, and checked against the
  SHA-256 the index publishes; or
- the one wheel of a project and version found in the outbox of an isolated sdist build (the
  sdist itself having been downloaded and checked the same way); or
- the application's own local file, given by the user; or
- the pip wheel bundled with the compiler's Python (ensurepip), which installs the runner, and
  the same wheel with its modules compiled by that Python (the runner's: the compiler is built
  FROM the root image), which the runner's steps run: pip run from its plain wheel compiles its
  own code on every start, and that was most of a version bump's runner step.
Files are written under a temporary name, synced, then linked into place: an existing name is
never overwritten (an earlier local file of the application's excepted), and every file
published gets a record of its SHA-256 under .grocker/sha256, so that a file nobody published is
never reused.

The candidates volume, mounted beside it, is what the resolve (package code) sees of the
domain: after each run, every wheel of this run whose origin another build may reuse is copied
there (`offer`). Nothing else of the wheel volume is: its locks, records, origins, local RELEASE
files and wheels built from them stay where no package code reads them.

The volume belongs to one index-settings domain (grocker.trust): every build that mounts it has
the same indexes. A wheel is reused only if its recorded origin is one of them (downloaded from
an index, or built from an index's sdist), never a local RELEASE file another build published;
a local file never replaces a file of the same name that came from an index or a build (the
publish is refused when the contents differ).

Input: a JSON request file (argv[1]). Output: one `GROCKER-PUBLISH:` line.
"""

import base64
import compileall
import hashlib
import html.parser
import json
import os
import py_compile
import re
import shutil
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

WHEELS = Path("/home/grocker/wheels")
STATE = WHEELS / ".grocker"
LOCKS = STATE / "locks"
RECORDS = STATE / "sha256"
# Where each published wheel came from (for the SBOM), written by the publisher that added it.
ORIGINS = STATE / "origins"
ELF_FLAGS = STATE / "elf"
"""has_elf's answer for each content, by SHA-256: looking at every member of every wheel of a lock
again at each publish took 0.3 s for ipython's 16 wheels."""
TEMPORARY = STATE / "tmp"
QUARANTINE = STATE / "quarantine"
# The resolve's view of the domain: copies of the wheels another build may reuse (offer).
CANDIDATES = Path("/home/grocker/candidates")
SDISTS = Path("/tmp/grocker-sdists")
PUBLISH_MARK = "GROCKER-PUBLISH:"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
ELF_MAGIC = b"\x7fELF"

WHEEL_RE = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._]*[A-Za-z0-9])?)-(?P<version>[A-Za-z0-9_.!+]+)"
    r"(?:-(?P<build>[0-9][A-Za-z0-9_.]*))?-(?P<python>[A-Za-z0-9_.]+)-(?P<abi>[A-Za-z0-9_.]+)"
    r"-(?P<platform>[A-Za-z0-9_.]+)\.whl"
)
# The compiled installer: the pip wheel's name, then the interpreter it is compiled for.
COMPILED_RE = re.compile(r"pip-[A-Za-z0-9_.!+]+-py3-none-any\.[a-z]+[0-9]+\.zip")
# pypa/installer compiled for this Python (wheel_installer): the same as grocker.wheels.WHEEL_INSTALLER_RE.
INSTALLER_RE = re.compile(r"installer-[0-9][A-Za-z0-9_.!+]*\.[a-z]+[0-9]+\.zip")
# ZIP entries need a date: the earliest one ZIP can record, so that the same pip gives the same file.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
SDIST_RE = re.compile(r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)-(?P<version>[A-Za-z0-9_.!+]+)\.(?:tar\.gz|zip)")


class PublishError(Exception):
    """A failure the host reports as a build failure."""


def main():
    with open(sys.argv[1]) as stream:
        request = json.load(stream)
    for folder in (LOCKS, RECORDS, ORIGINS, ELF_FLAGS, TEMPORARY, QUARANTINE, CANDIDATES):
        folder.mkdir(parents=True, exist_ok=True)
    clean_temporary()
    publisher = Publisher(request)
    try:
        result = publisher.run()
    except PublishError as err:
        print(f"grocker: {err}", flush=True)
        return 1
    print(PUBLISH_MARK + json.dumps(result, sort_keys=True), flush=True)
    return 0


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def same_version(left, right):
    return re.sub(r"[-_.]+", ".", left.lower()) == re.sub(r"[-_.]+", ".", right.lower())


def wheel_of(filename, name, version):
    """True when `filename` is, as a whole, a wheel name of project `name` at `version`."""
    match = WHEEL_RE.fullmatch(filename)
    return bool(match and normalize(match["name"]) == normalize(name) and same_version(match["version"], version))


def sdist_of(filename, name, version):
    """True when `filename` is, as a whole, an sdist name of project `name` at `version`."""
    match = SDIST_RE.fullmatch(filename)
    if not match:
        return False
    # A hyphen may belong to the name or the version: the version is what follows the last one.
    return normalize(match["name"]) == normalize(name) and same_version(match["version"], version)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def interpreter_tag():
    """This Python's name in the file names of what is compiled for it, e.g. cpython313."""
    return f"{sys.implementation.name}{sys.version_info[0]}{sys.version_info[1]}"


def has_elf(path):
    """True when a member of the wheel at `path` starts as an ELF file does: what the ABI gate checks.

    The gate looks only at members the loader may load; this looks at every one, so a wheel
    recorded without ELF files has nothing for the gate to check.
    """
    with zipfile.ZipFile(path) as wheel:
        for info in wheel.infolist():
            if info.is_dir() or info.file_size < len(ELF_MAGIC):
                continue
            with wheel.open(info) as member:
                if member.read(len(ELF_MAGIC)) == ELF_MAGIC:
                    return True
    return False


def elf_flag(path, digest):
    """has_elf(path), for a file whose SHA-256 is `digest`, answered once per content."""
    try:
        return (ELF_FLAGS / digest).read_text().strip() == "yes"
    except FileNotFoundError:
        pass
    found = has_elf(path)
    fd, temporary = tempfile.mkstemp(dir=TEMPORARY, prefix=".elf-")
    with os.fdopen(fd, "w") as stream:
        stream.write("yes\n" if found else "no\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, ELF_FLAGS / digest)
    return found


def record_of(filename):
    try:
        return (RECORDS / filename).read_text().strip()
    except FileNotFoundError:
        return None


def write_record(filename, digest):
    fd, temporary = tempfile.mkstemp(dir=TEMPORARY, prefix=".record-")
    with os.fdopen(fd, "w") as stream:
        stream.write(digest + "\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, RECORDS / filename)


# A path segment that looks like a token (grocker/pipconf.py's rule, kept the same here: this
# script has the standard library only): 16 or more of these, with letters and digits both.
PATH_TOKEN_RE = re.compile(r"[A-Za-z0-9_.~+=-]{16,}")


def public_url(url, index=None):
    """`url` without its credentials, query, fragment or path tokens: what may be written in an SBOM.

    The same rule as grocker.pipconf.public_url (tests/unit/test_origins.py holds them together):
    the token-like segments of the index URL (`index`, else `url` itself) wherever they stand in
    `url`, Gemfury's first segment when another follows, Cloudsmith's first segment unless
    `public` or `basic`: each becomes `****`. A file's own name and hash folders are kept.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    tokens = {segment for segment in urllib.parse.urlsplit(index or url).path.split("/") if is_token(segment)}
    segments = parts.path.split("/")
    first = segments[1] if len(segments) > 1 else ""
    name = (parts.hostname or "").rstrip(".")
    known = bool(first) and (
        ((name == "fury.io" or name.endswith(".fury.io")) and len(segments) > 2 and bool(segments[2]))
        or (name == "dl.cloudsmith.io" and first.lower() not in ("public", "basic"))
    )
    cleaned = [
        "****" if segment in tokens or (index_ == 1 and known) else segment for index_, segment in enumerate(segments)
    ]
    return urllib.parse.urlunsplit((parts.scheme, host, "/".join(cleaned), "", ""))


def is_token(segment):
    return (
        PATH_TOKEN_RE.fullmatch(segment) is not None
        and any(char.isdigit() for char in segment)
        and any(char.isalpha() for char in segment)
    )


def is_local(origin):
    """True for the origin of a local RELEASE file, or of a wheel built from a local sdist."""
    return isinstance(origin, dict) and (origin.get("kind") == "file" or bool(origin.get("local")))


def reusable(origin):
    """True for a recorded origin that another build of these index settings may reuse."""
    return isinstance(origin, dict) and origin.get("kind") in ("index", "built") and not is_local(origin)


def origin_of(filename):
    try:
        return json.loads((ORIGINS / filename).read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_origin(filename, origin):
    fd, temporary = tempfile.mkstemp(dir=TEMPORARY, prefix=".origin-")
    with os.fdopen(fd, "w") as stream:
        json.dump(origin, stream, sort_keys=True)
    os.chmod(temporary, 0o644)
    os.replace(temporary, ORIGINS / filename)


def offer(filename):
    """Copy the volume's wheel `filename` into the candidates volume if another build may reuse it.

    Only a wheel an index of these settings offered, or built from one of their sdists: never a
    local RELEASE file, a wheel built from one, or a file without a record. A copy that is there
    with the same size is kept: the publisher is its only writer, and it copies recorded files.
    """
    source = WHEELS / filename
    if not WHEEL_RE.fullmatch(filename) or record_of(filename) is None or not reusable(origin_of(filename)):
        return False
    target = CANDIDATES / filename
    if target.is_file() and not target.is_symlink() and target.stat().st_size == source.stat().st_size:
        return False
    fd, temporary = tempfile.mkstemp(dir=CANDIDATES, prefix=".offer-")
    with os.fdopen(fd, "wb") as stream, open(source, "rb") as origin:
        shutil.copyfileobj(origin, stream, 1 << 20)
    os.chmod(temporary, 0o644)
    os.replace(temporary, target)
    return True


def clean_temporary():
    """Remove the temporary files of publishers that died more than an hour ago."""
    limit = time.time() - 3600
    for path in [*TEMPORARY.iterdir(), *CANDIDATES.glob(".offer-*")]:
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
        except FileNotFoundError:
            continue


def write_temporary(chunks):
    """Write chunks to a new temporary file of the volume, synced; return its path and SHA-256."""
    digest = hashlib.sha256()
    fd, temporary = tempfile.mkstemp(dir=TEMPORARY, prefix=".part-")
    with os.fdopen(fd, "wb") as stream:
        for chunk in chunks:
            digest.update(chunk)
            stream.write(chunk)
        stream.flush()
        os.fsync(stream.fileno())
    os.chmod(temporary, 0o644)
    return Path(temporary), digest.hexdigest()


def file_chunks(path):
    with open(path, "rb") as stream:
        yield from iter(lambda: stream.read(1 << 20), b"")


class _Links(html.parser.HTMLParser):
    """The anchors of a PEP 503 project page: (file name, href)."""

    def __init__(self):
        super().__init__()
        self.links = []
        self._href = None
        self._text = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = []

    def handle_data(self, data):
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.links.append(("".join(self._text).strip(), self._href))
            self._href = None


def parse_project_page(body, content_type, page_url):
    """Files of a simple-API project page: {file name: (absolute URL, sha256 or None)}."""
    files = {}
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

    def __init__(self, url, cert, client_cert, trusted_hosts, timeout):
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

    def open(self, url, accept=None):
        request = urllib.request.Request(url)
        if accept:
            request.add_header("Accept", accept)
        if self.authorization and urllib.parse.urlsplit(url).netloc.rsplit("@", 1)[-1] == self.netloc:
            # Never sent on to another host by a redirect.
            request.add_unredirected_header("Authorization", self.authorization)
        return urllib.request.urlopen(request, timeout=self.timeout, context=self.context)

    def project_files(self, name):
        return self.page_files(urllib.parse.urljoin(self.url, normalize(name) + "/"), name)

    def page_files(self, page, name):
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


class Publisher:
    def __init__(self, request):
        self.request = request
        self.indexes = [
            Index(url, request.get("cert"), request.get("client_cert"), request.get("trusted_hosts", []), request.get("timeout") or 15)
            for url in request.get("indexes") or ["https://pypi.org/simple/"]
        ]
        # Remote find-links pages: flat pages of links, looked at after the indexes.
        self.links = [
            Index(url, request.get("cert"), request.get("client_cert"), request.get("trusted_hosts", []), request.get("timeout") or 15)
            for url in request.get("find_links", [])
        ]
        self.pages = {}
        self.added = []
        self.reused = []
        self.warnings = []
        self.ignored = []
        self.sdists = []
        self.wheels = dict(request.get("wheels") or {})

    def run(self):
        for item in self.request.get("reuse", []):
            self.reuse(item)
        for item in self.request.get("fetch", []):
            self.fetch(item)
        for item in self.request.get("local", []):
            self.publish_local(item)
        for outbox in self.request.get("outboxes", []):
            self.collect(outbox)
        for filename in sorted(set(self.wheels.values())):
            offer(filename)
        result = {
            "added": self.added,
            "reused": self.reused,
            "warnings": self.warnings,
            "ignored": self.ignored,
            "sdists": self.sdists,
            "wheels": self.wheels,
            "lock": None,
        }
        lock = self.request.get("lock")
        if lock and not self.sdists:
            result["lock"] = self.write_lock(lock)
        return result

    # Where each file comes from

    def reuse(self, item):
        """A wheel the resolve step found in the volume: reused only if a publisher recorded it."""
        filename = item["filename"]
        if not wheel_of(filename, item["name"], item["version"]):
            raise PublishError(f"the resolve step chose {filename!r} for {item['name']} {item['version']}, not a wheel of it")
        path = WHEELS / filename
        recorded = record_of(filename)
        if path.is_file() and recorded is not None and sha256_of(path) == recorded and reusable(origin_of(filename)):
            self.wheels[normalize(item["name"])] = filename
            self.reused.append(filename)
            return
        self.warnings.append(
            f"{filename} in the wheel volume has no publisher record of an index of these settings "
            "(an older Grocker, a local file, or planted): fetching it from the index instead"
        )
        self.fetch(item, rebuild=True)

    def fetch(self, item, rebuild=False):
        """A file the resolve step chose on an index: download it from the index that lists it."""
        name, version, filename = item["name"], item["version"], item["filename"]
        is_wheel = wheel_of(filename, name, version)
        if not is_wheel and not sdist_of(filename, name, version):
            raise PublishError(f"the resolve step chose {filename!r} for {name} {version}, not a distribution of it")
        recorded = record_of(filename) if is_wheel else None
        if recorded is not None and (WHEELS / filename).is_file() and reusable(origin_of(filename)):
            self.wheels[normalize(name)] = filename
            self.reused.append(filename)
            return
        found = self.find(name, filename)
        if found is None and rebuild:
            # A wheel built from an sdist by an older Grocker: build it again from the index's sdist.
            found = self.find_sdist(name, version)
        if found is None:
            raise PublishError(f"no index of the pip settings lists {filename} ({name} {version})")
        index, url, digest, filename = found
        temporary, actual = write_temporary(self.download(index, url, filename))
        try:
            if digest is None:
                self.warnings.append(f"the index {index.url} publishes no SHA-256 for {filename}: accepted unchecked")
            elif actual != digest.lower():
                raise PublishError(
                    f"{filename} downloaded from {index.url} has SHA-256 {actual}, not the {digest} the index publishes"
                )
            if filename.endswith(".whl"):
                origin = {"kind": "index", "url": public_url(url, index.url), "index": public_url(index.url)}
                self.wheels[normalize(name)] = self.publish(
                    temporary, filename, actual, replace_unrecorded=True, origin=origin
                )
            else:
                SDISTS.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(temporary, SDISTS / filename)
                self.sdists.append({"name": name, "version": version, "filename": filename, "sha256": actual})
        finally:
            temporary.unlink(missing_ok=True)

    def listing(self, name):
        """(index, its files of project `name`) for every index, then every find-links page."""
        for index in self.indexes + self.links:
            key = (index.url, normalize(name) if index in self.indexes else "")
            if key not in self.pages:
                if index in self.indexes:
                    self.pages[key] = index.project_files(name)
                else:
                    self.pages[key] = index.page_files(index.url.rstrip("/"), name)
            yield index, self.pages[key]

    def find(self, name, filename):
        for index, files in self.listing(name):
            if filename in files:
                url, digest = files[filename]
                return index, url, digest, filename
        return None

    def find_sdist(self, name, version):
        for index, files in self.listing(name):
            for filename, (url, digest) in sorted(files.items()):
                if sdist_of(filename, name, version):
                    return index, url, digest, filename
        return None

    def download(self, index, url, filename):
        try:
            with index.open(url) as response:
                yield from iter(lambda: response.read(1 << 20), b"")
        except (urllib.error.URLError, OSError) as err:
            raise PublishError(f"downloading {filename} from {index.url} failed ({err})") from err

    def publish_local(self, item):
        """The application's own wheel, given by the user: it replaces an older local file of that name only."""
        filename = item["filename"]
        if not wheel_of(filename, item["name"], item["version"]):
            raise PublishError(f"the application's file {filename!r} is not a wheel of {item['name']} {item['version']}")
        temporary, actual = write_temporary(file_chunks(item["path"]))
        try:
            self.wheels[normalize(item["name"])] = self.publish(
                temporary, filename, actual, local=True, origin={"kind": "file"}
            )
        finally:
            temporary.unlink(missing_ok=True)

    def collect(self, outbox):
        """Accept the one wheel of the sdist's project and version from an isolated build's outbox.

        Or from a folder of this container's input: a wheel Grocker fetched from the fleet's
        registry and checked against its digest, published as checked as an outbox's.
        """
        name, version = outbox["name"], outbox["version"]
        folder = Path(outbox["path"])
        accepted = []
        for entry in sorted(os.listdir(folder)):
            path = folder / entry
            if wheel_of(entry, name, version) and path.is_file() and not path.is_symlink():
                accepted.append(entry)
                continue
            match = WHEEL_RE.fullmatch(entry)
            if match and normalize(match["name"]) != normalize(name):
                self.warnings.append(
                    f"TAMPERING: the build of {name} {version} left a wheel of another project, {entry!r}: ignored"
                )
            else:
                self.ignored.append(f"{name} {version}: {entry!r}")
        if len(accepted) != 1:
            raise PublishError(f"the build of {name} {version} produced {len(accepted)} wheels of it, not one")
        filename = accepted[0]
        temporary, actual = write_temporary(file_chunks(folder / filename))
        try:
            # Compiled here from an sdist (an index's, or the local file given as RELEASE: then
            # marked local, never a candidate for another build).
            local = bool(outbox.get("replace"))
            origin = {"kind": "built", "compiler": self.request.get("compiler_image")}
            # A wheel of the fleet's registry (grocker.fleet): the origin its lock recorded.
            if isinstance(outbox.get("origin"), dict) and not local:
                origin = outbox["origin"]
            if local:
                origin["local"] = True
            self.wheels[normalize(name)] = self.publish(
                temporary, filename, actual, local=local, replace_unrecorded=True, origin=origin
            )
        finally:
            temporary.unlink(missing_ok=True)

    def installer(self):
        """The pip wheel bundled with the compiler's Python, chosen by the version ensurepip names."""
        import ensurepip

        version = ensurepip.version()
        filename = f"pip-{version}-py3-none-any.whl"
        folders = [getattr(ensurepip, "_WHEEL_PKG_DIR", None), Path(ensurepip.__file__).parent / "_bundled"]
        folders.append("/usr/share/python-wheels")
        for folder in folders:
            if folder and (Path(folder) / filename).is_file():
                source = Path(folder) / filename
                break
        else:
            raise PublishError(f"the compiler's Python has no bundled {filename} (ensurepip names pip {version})")
        temporary, actual = write_temporary(file_chunks(source))
        try:
            return self.publish(temporary, filename, actual, replace_unrecorded=True)
        finally:
            temporary.unlink(missing_ok=True)

    def compiled_installer(self, wheel):
        """The pip wheel `wheel` of the volume with a .pyc beside each module, for this Python.

        Made once per volume. The bytecode is hash-based and unchecked (PEP 552), beside its
        source (zipimport's layout), so pip started from this file compiles nothing. The file
        never enters an image.
        """
        filename = f"{wheel[: -len('.whl')]}.{interpreter_tag()}.zip"
        if self.reuse_made(filename):
            return filename
        with tempfile.TemporaryDirectory() as folder:
            tree = Path(folder) / "tree"
            with zipfile.ZipFile(WHEELS / wheel) as source:
                source.extractall(tree)
            return self.publish_compiled(tree, filename)

    def wheel_installer(self):
        """pypa/installer, from Grocker's installation, with its bytecode for this Python; or None.

        What the runner's steps install the wheels with: it starts faster than pip, and its
        modules come from Grocker (copied into this container), not from an index. Made once per
        volume and version, like the compiled pip. None when the request has no such folder or
        this Python is older than installer supports (the steps then run pip).
        """
        given = self.request.get("wheel_installer") or {}
        version = str(given.get("version", ""))
        if not given.get("folder") or sys.version_info < (3, 10):
            return None
        filename = f"installer-{version}.{interpreter_tag()}.zip"
        if not INSTALLER_RE.fullmatch(filename):
            raise PublishError(f"refusing to publish pypa/installer as {filename!r}: not a version")
        if self.reuse_made(filename):
            return filename
        with tempfile.TemporaryDirectory() as folder:
            tree = Path(folder) / "tree"
            shutil.copytree(given["folder"], tree)
            return self.publish_compiled(tree, filename)

    def reuse_made(self, filename):
        """True when a file this publisher makes is in the volume, as recorded."""
        if (WHEELS / filename).is_file() and record_of(filename) == sha256_of(WHEELS / filename):
            self.reused.append(filename)
            return True
        return False

    def publish_compiled(self, tree, filename):
        """Compile the modules of `tree` beside their sources, zip it deterministically, publish it."""
        # ddir "": the modules are named by their path in the archive, not this temporary one.
        compileall.compile_dir(
            str(tree),
            ddir="",
            quiet=2,
            legacy=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        archive = tree.parent / "compiled.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
            for path in sorted(item for item in tree.rglob("*") if item.is_file()):
                entry = zipfile.ZipInfo(path.relative_to(tree).as_posix(), ZIP_EPOCH)
                entry.external_attr = 0o644 << 16
                entry.compress_type = zipfile.ZIP_DEFLATED
                out.writestr(entry, path.read_bytes())
        temporary, actual = write_temporary(file_chunks(archive))
        try:
            return self.publish(temporary, filename, actual, replace_unrecorded=True)
        finally:
            temporary.unlink(missing_ok=True)

    # Publishing

    def publish(self, temporary, filename, digest, local=False, replace_unrecorded=False, origin=None):
        """Link a checked temporary file into place under `filename`; return the name used.

        When the name exists already, the existing file stays if a publisher recorded it (it was
        checked too): two builds publishing one name concurrently both use the first one's file.
        A `local` file (the user's RELEASE) replaces only an earlier local file; a local file and
        a file from an index or a build never stand for each other unless their contents are equal.
        """
        if not (WHEEL_RE.fullmatch(filename) or COMPILED_RE.fullmatch(filename) or INSTALLER_RE.fullmatch(filename)):
            raise PublishError(f"refusing to publish {filename!r}: not a wheel file name")
        final = WHEELS / filename
        recorded = record_of(filename) if final.is_file() else None
        if recorded is not None and recorded == digest and sha256_of(final) == digest:
            self.reused.append(filename)
            return filename
        if recorded is not None and is_local(origin_of(filename)) != local:
            raise PublishError(self.collision(filename, local))
        if local:
            os.replace(temporary, final)
            self.record(filename, digest, origin)
            return filename
        try:
            os.link(temporary, final)
        except FileExistsError:
            pass
        else:
            self.record(filename, digest, origin)
            return filename
        recorded = record_of(filename)
        if recorded is None:
            # Another publisher may be between its link and its record: give it a moment.
            time.sleep(1)
            recorded = record_of(filename)
        if recorded is None:
            if sha256_of(final) == digest:
                write_record(filename, digest)
            elif replace_unrecorded:
                self.warnings.append(f"{filename} in the wheel volume had no publisher record and other content: quarantined")
                os.replace(final, QUARANTINE / f"{int(time.time())}-{os.getpid()}-{filename}")
                os.link(temporary, final)
                self.record(filename, digest, origin)
                return filename
            else:
                raise PublishError(f"{filename} in the wheel volume has no publisher record and other content")
        self.reused.append(filename)
        return filename

    def collision(self, filename, local):
        """What to do when a local file and a published one share a name but not their content."""
        if local:
            return (
                f"the local file {filename} has other content than the {filename} an index or a build "
                "published in the wheel volume, which other builds use: give the local build its own "
                "version (a local version label, e.g. 1.0+mine) or build it from the index"
            )
        return (
            f"{filename} in the wheel volume is a local file given as RELEASE, with other content than "
            "the one this build chose: give the local build its own version (a local version label, "
            "e.g. 1.0+mine), or remove the wheel volume (grocker purge -a)"
        )

    def record(self, filename, digest, origin):
        """A file this publisher added: its SHA-256 and where it came from."""
        if origin is not None:
            write_origin(filename, origin)
        write_record(filename, digest)
        self.added.append(filename)

    def write_lock(self, lock):
        """The lock of this release: every wheel with its SHA-256, computed here."""

        def entry(filename):
            if not (WHEEL_RE.fullmatch(filename) or COMPILED_RE.fullmatch(filename) or INSTALLER_RE.fullmatch(filename)):
                raise PublishError(f"refusing to lock {filename!r}: not a wheel file name")
            found = {"file": filename, "sha256": sha256_of(WHEELS / filename)}
            if WHEEL_RE.fullmatch(filename):
                found["elf"] = elf_flag(WHEELS / filename, found["sha256"])
            origin = origin_of(filename)
            if origin is not None:
                found["origin"] = origin
            return found

        installer = self.installer()
        application = normalize(lock["application"])
        names = [normalize(name) for name in lock["names"]]
        missing = [name for name in names if name not in self.wheels]
        if application not in names or missing:
            raise PublishError(f"no wheel was published for {missing or application}")
        content = {
            "application": entry(self.wheels[application]),
            "dependencies": [entry(self.wheels[name]) for name in sorted(names) if name != application],
            "installer": entry(installer),
            "installer_compiled": entry(self.compiled_installer(installer)),
            # When the release's dependencies were resolved: a rebuild reuses this lock and says so.
            "locked": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tool = self.wheel_installer()
        if tool is not None:
            content["wheel_installer"] = entry(tool)
        fd, temporary = tempfile.mkstemp(dir=TEMPORARY, prefix=".lock-")
        with os.fdopen(fd, "w") as stream:
            json.dump(content, stream, sort_keys=True)
        os.chmod(temporary, 0o644)
        os.replace(temporary, LOCKS / (lock["key"] + ".json"))
        return content


if __name__ == "__main__":
    sys.exit(main())
