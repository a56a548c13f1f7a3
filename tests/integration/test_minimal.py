"""The minimal runner on a real engine: no shell, no package manager, and the applications run.

Its files are checked by listing the exported file system (no shell runs in it: it has none).
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import textwrap
from pathlib import Path

import docker
import yaml

from tests.integration.conftest import MatrixEngine
from tests.integration.helpers import Grocker, manifest_digest

# Programs that a shell-less, package-manager-less image must not have, by file name under a bin folder.
SHELLS = {"sh", "bash", "dash", "ash", "zsh", "busybox", "toybox", "rbash"}
PACKAGE_TOOLS = {"apt", "apt-get", "apt-cache", "apt-key", "dpkg", "dpkg-query", "dpkg-deb", "dpkg-divert", "debconf"}
PERL = {"perl"}
COREUTILS = {"ls", "cat", "cp", "mv", "rm", "ln", "mkdir", "chmod", "chown", "echo", "env", "sleep", "true", "id"}
IPYTHON_MAX_BYTES = 110_000_000


def _files(client: docker.DockerClient, image: str) -> dict[str, tarfile.TarInfo]:
    """Every path of the image's file system, from `docker export` of a container never started."""
    container = client.containers.create(image)
    try:
        with tempfile.TemporaryFile() as stream:
            for chunk in container.export():
                stream.write(chunk)
            stream.seek(0)
            with tarfile.open(fileobj=stream) as archive:
                return {"/" + member.name.lstrip("./"): member for member in archive.getmembers()}
    finally:
        container.remove(v=True)


def _programs(files: dict[str, tarfile.TarInfo]) -> set[str]:
    bins = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/local/bin/", "/usr/local/sbin/")
    return {path.rsplit("/", 1)[1] for path in files if path.startswith(bins)}


def test_minimal_ipython_has_no_shell_and_runs(engine: MatrixEngine, tmp_path: Path) -> None:
    grocker = engine.grocker
    name = grocker.name("minimal-ipython", "8.18.1")
    sbom = tmp_path / "sbom.json"

    grocker.build(
        "ipython==8.18.1", "--runner", "minimal", "-e", "ipython", "-n", name, "--no-push", "--sbom", str(sbom)
    )

    assert grocker.docker_run(name, "--version").strip() == "8.18.1"
    files = _files(grocker.client, name)
    programs = _programs(files)
    assert not programs & SHELLS, programs & SHELLS
    assert not programs & PACKAGE_TOOLS, programs & PACKAGE_TOOLS
    assert not programs & PERL
    assert not programs & COREUTILS, programs & COREUTILS
    # The venv's python leads to the interpreter through /usr/bin/python3 (python3-minimal's link).
    assert files["/usr/bin/python3"].issym()
    assert files["/home/grocker/app.venv/bin/ipython"].isfile()
    # Package metadata where scanners and the SBOM read it, one file per package; no dpkg database.
    assert {"/var/lib/dpkg/status.d/python3.13", "/var/lib/dpkg/status.d/libc6"} <= set(files)
    assert "/var/lib/dpkg/status" not in files
    assert files["/home/grocker"].uid == 1000
    inspected = grocker.client.api.inspect_image(name)
    assert inspected["Config"]["User"] == "grocker"
    # The size of its files, the same on every engine (engines count an image's size each their own
    # way: Podman's is about 8% more than Docker's for the same layers). benchmarks/run.py measures
    # Docker's figure against the same target.
    content = sum(member.size for member in files.values() if member.isfile())
    assert content <= IPYTHON_MAX_BYTES, content
    # What the standard library needs: CA certificates through OpenSSL's default paths, time zones, sqlite.
    probe = textwrap.dedent(
        """
        import json, locale, sqlite3, ssl, sys, zoneinfo, ctypes.util, lzma, decimal
        stats = ssl.create_default_context().cert_store_stats()
        paris = str(zoneinfo.ZoneInfo("Europe/Paris"))
        # The runner's LANG (C.UTF-8) names a locale that exists: not Python's UTF-8 mode fallback.
        chosen = locale.setlocale(locale.LC_ALL, "")
        print(json.dumps({"ca": stats["x509_ca"], "tz": paris, "sqlite": sqlite3.sqlite_version,
                          "locale": chosen, "utf8_mode": sys.flags.utf8_mode,
                          "find_library": ctypes.util.find_library("ssl")}))
        """
    )
    facts = json.loads(grocker.docker_run(name, "-c", probe, entrypoint="/home/grocker/app.venv/bin/python"))
    assert facts["ca"] > 100
    assert facts["tz"] == "Europe/Paris"
    assert facts["locale"] == "C.UTF-8"
    assert facts["utf8_mode"] == 0
    # ctypes.util.find_library runs /sbin/ldconfig -p: libraries loaded by name are found.
    assert facts["find_library"] == "libssl.so.3"
    # The SBOM lists the packages of status.d (the gate's container, of the minimal base, read them).
    purls = {component.get("purl", "") for component in json.loads(sbom.read_text())["components"]}
    assert any(purl.startswith("pkg:deb/debian/python3.13@") for purl in purls), purls
    assert not any(purl.startswith(("pkg:deb/debian/bash@", "pkg:deb/debian/dpkg@")) for purl in purls)
    # The base's one layer, then the dependencies and the application apart, as in the full runner.
    assert len(inspected["RootFS"]["Layers"]) == 3


UVICORN_PROBE = textwrap.dedent(
    """
    import asyncio, threading, time, urllib.request
    import httptools, uvloop, websockets, uvicorn

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"minimal ok"})

    config = uvicorn.Config(app, host="127.0.0.1", port=8765, loop="uvloop", http="httptools", log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(100):
        try:
            print(urllib.request.urlopen("http://127.0.0.1:8765/", timeout=2).read().decode())
            break
        except OSError:
            time.sleep(0.1)
    server.should_exit = True
    """
)


def test_minimal_uvicorn_standard_loads_its_extensions_answers_http_and_is_pushed(
    grocker: Grocker, registry: str, tmp_path: Path
) -> None:
    name = f"{registry}/{grocker.name('minimal-uvicorn', '0.32.0')}"
    release = ("uvicorn[standard]==0.32.0", "--runner", "minimal", "-e", "uvicorn", "-n", name)

    grocker.build(*release, "--result-file", str(tmp_path / "pushed.yml"))

    output = grocker.docker_run(name, "-c", UVICORN_PROBE, entrypoint="/home/grocker/app.venv/bin/python")
    assert output.strip().splitlines()[-1] == "minimal ok", output
    pushed = yaml.safe_load((tmp_path / "pushed.yml").read_text())
    assert pushed["hash"] == manifest_digest(name)
    layers = grocker.client.api.inspect_image(name)["RootFS"]["Layers"]

    again = grocker.build(*release, "--no-push")
    refreshed = grocker.build(*release, "--no-push", "--refresh")

    assert "is up to date" in again.stderr
    assert "is up to date" not in refreshed.stderr
    # Re-resolved to the same wheels: the same layers, byte for byte.
    assert grocker.client.api.inspect_image(name)["RootFS"]["Layers"] == layers


PSYCOPG_PROBE = "import psycopg2; print('libpq', psycopg2.__libpq_version__ // 10000)"


def test_minimal_sdist_with_a_run_library_builds_and_without_it_fails_at_the_gate(
    grocker: Grocker, tmp_path: Path
) -> None:
    name = grocker.name("minimal-psycopg2", "2.9.10")
    (tmp_path / ".grocker.yml").write_text("runner: minimal\ndependencies:\n  build: [libpq-dev]\n")

    failed = grocker.run("build", "psycopg2==2.9.10", "-e", "python", "-n", name, "--no-push", cwd=tmp_path)

    assert failed.returncode == 5, failed.output
    assert "needs libpq.so.5, found neither in the minimal base nor in the wheels" in failed.stderr
    assert "libpq5 provides it: add it to dependencies.run" in failed.stderr
    assert "Traceback" not in failed.output
    assert name not in {tag for image in grocker.client.images.list() for tag in image.tags}

    (tmp_path / ".grocker.yml").write_text("runner: minimal\ndependencies:\n  run: [libpq5]\n  build: [libpq-dev]\n")
    grocker.build("psycopg2==2.9.10", "-e", "python", "-n", name, "--no-push", cwd=tmp_path)

    assert grocker.docker_run(name, "-c", PSYCOPG_PROBE).strip() == "libpq 17"
    files = _files(grocker.client, name)
    assert "/var/lib/dpkg/status.d/libpq5" in files
    assert not _programs(files) & SHELLS
