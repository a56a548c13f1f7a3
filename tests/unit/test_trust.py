"""The wheel volume's trust domain: one build's index settings never decide what another installs.

The digest of the index settings (grocker.trust) names the wheel volume and keys the locks; the
resolve script (run here with the test venv's pip against a loopback index) sees as candidates
only the volume's files of its own indexes, yanked versions stay yanked; the publisher never lets
a local RELEASE file and a file from an index or a build stand for each other.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from grocker import api, layout
from grocker.chain import build
from grocker.chain.wheel_steps import script_path
from grocker.config.pipconf import PipSettings
from grocker.naming import internal_names
from grocker.trust import index_domain, normalized_url
from grocker.wheels import lock_key
from grocker.wire.wheelhouse import REPORT_MARK
from tests.unit.conftest import PublisherKit, load_module, load_publishing
from tests.unit.fakes import SIX, FakeEngine, chain_engine

TOKEN = "Zq9x7Lk2Vb8Np4Rt6Ym1"


# The digest


def test_the_same_settings_give_the_same_digest_whatever_their_spelling() -> None:
    plain = PipSettings(index_url="https://mirror.example/simple/", extra_index_urls=("https://extra.example/simple/",))
    spelled = PipSettings(
        index_url="HTTPS://Mirror.Example:443/simple",
        extra_index_urls=("https://extra.example/simple/", "https://extra.example/simple"),
        trusted_hosts=("mirror.example",),
        timeout="30",
    )
    # pip gives index-url and extra-index-url the same rank: swapping them offers the same files.
    swapped = PipSettings(
        index_url="https://extra.example/simple/", extra_index_urls=("https://mirror.example/simple/",)
    )

    assert index_domain(plain) == index_domain(spelled) == index_domain(swapped)
    # No index set: pip's default.
    assert index_domain(PipSettings()) == index_domain(PipSettings(index_url="https://pypi.org/simple"))


def test_credentials_do_not_change_the_digest() -> None:
    with_user = PipSettings(index_url=f"https://reader:{TOKEN}@private.example/simple/")
    with_token_user = PipSettings(index_url=f"https://{TOKEN}@private.example/simple/")
    without = PipSettings(index_url="https://private.example/simple/")

    assert index_domain(with_user) == index_domain(with_token_user) == index_domain(without)
    assert TOKEN not in normalized_url(f"https://u:{TOKEN}@h.example:8443/simple")


def test_two_repositories_of_one_host_are_two_domains() -> None:
    # Repository names can look like tokens (long, letters and digits): they are never evened out.
    first = PipSettings(index_url="https://repo.example/api/pypi/curated-2026q1-approved/simple/")
    second = PipSettings(index_url="https://repo.example/api/pypi/upstream-2026q1-mirrored/simple/")

    assert index_domain(first) != index_domain(second)


@pytest.mark.parametrize(
    "other",
    [
        PipSettings(index_url="https://mirror.example/simple/"),
        PipSettings(extra_index_urls=("https://extra.example/simple/",)),
        PipSettings(find_links=("https://links.example/wheels/",)),
        PipSettings(index_url="https://pypi.org/other/"),
        PipSettings(index_url="http://pypi.org/simple/"),
        PipSettings(index_url="https://pypi.org:8443/simple/"),
    ],
)
def test_other_indexes_or_find_links_give_another_domain(other: PipSettings) -> None:
    assert index_domain(other) != index_domain(PipSettings())


def test_the_volume_and_the_lock_key_belong_to_the_domain(tmp_path: Path) -> None:
    config = api.load_config([], cwd=tmp_path)
    release = api.prepare_build("app==1.0", config, image_name="app:1.0", cwd=tmp_path, env={}).release
    pypi = internal_names(config, PipSettings())
    curated = internal_names(config, PipSettings(index_url="https://curated.example/simple/"))

    assert (pypi.root, pypi.compiler) == (curated.root, curated.compiler)
    assert pypi.volume != curated.volume
    assert pypi.volume.endswith(pypi.index_domain[:12])
    assert lock_key(release, None, pypi.index_domain) != lock_key(release, None, curated.index_domain)


# The chain, on the in-memory engine


def _request(tmp_path: Path, pip_conf: Path | None, release: str = "app==1.0") -> build.BuildRequest:
    config = api.load_config([], cwd=tmp_path)
    return api.prepare_build(
        release, config, image_name="app:1.0", cwd=tmp_path, env={"HOME": str(tmp_path)}, pip_conf=pip_conf
    )


def _mounts(engine: FakeEngine, role: str) -> list[set[str]]:
    return [set(made["volumes"]) for made in engine.containers_made if made["role"] == role]


def test_a_project_that_moves_to_another_index_resolves_and_builds_again(tmp_path: Path) -> None:
    engine = chain_engine()
    first = _request(tmp_path, None)
    build.build(first, engine)
    curated = tmp_path / "curated.conf"
    curated.write_text("[global]\nindex-url = https://curated.example/simple/\n")
    moved = _request(tmp_path, curated)
    engine.containers_made.clear()
    engine.calls.clear()

    result = build.build(moved, engine)

    # Not up to date, and its dependencies resolved against the new index, not locked from the old.
    assert not result.up_to_date
    assert result.dependencies == "resolved now"
    old, new = (internal_names(request.config, request.pip) for request in (first, moved))
    assert old.volume != new.volume
    # The resolve mounts the new index's candidates alone, the publisher its volumes alone.
    assert _mounts(engine, "compile") == [{new.candidates}]
    # (the lock's reader, a container never started, mounts the new wheel volume alone, read-only).
    assert {new.volume, new.candidates} in _mounts(engine, "publish")
    assert all(mounts <= {new.volume, new.candidates} for mounts in _mounts(engine, "publish"))
    # And back to the first index: the image is built again (other inputs), from the lock that is
    # still in that index's volume, with no resolve.
    engine.calls.clear()
    back = build.build(first, engine)
    assert not back.up_to_date
    assert back.dependencies.startswith("locked on")
    assert "compile" not in engine.did("create_container")


# Package code sees only its own build: the mounts of each container


def test_no_container_that_runs_package_code_mounts_the_wheel_volume(tmp_path: Path) -> None:
    engine = chain_engine()
    items = [
        {"name": "app", "version": "1.0", "filename": "app-1.0.tar.gz", "in_volume": False},
        {"name": "six", "version": "1.16.0", "filename": SIX, "in_volume": True},
    ]
    engine.outputs["compile"] = (0, [REPORT_MARK + json.dumps({"items": items})])
    # A local sdist as RELEASE: the resolve reads it from its input, its build gets an outbox.
    sdist = tmp_path / "app-1.0.tar.gz"
    sdist.write_bytes(b"the user's own sdist")
    request = _request(tmp_path, None, str(sdist))
    names = internal_names(request.config, request.pip)

    build.build(request, engine)

    made = {(entry["role"], tuple(sorted(entry["volumes"].items()))) for entry in engine.containers_made}
    by_role: dict[str, list[dict[str, tuple[str, str]]]] = {}
    for role, volumes in made:
        by_role.setdefault(role, []).append(dict(volumes))
    # The resolve: the candidates volume, read-only, and nothing else of the domain.
    assert by_role["compile"] == [{names.candidates: (layout.CANDIDATES_MOUNT, "ro")}]
    # The sdist's build: its own fresh outbox alone.
    (outbox,) = by_role["build-sdist"]
    assert list(outbox.values()) == [(layout.COMPILE_MOUNT, "rw")]
    assert next(iter(outbox)).startswith("grocker-outbox-")
    # The publisher, which runs no package code, keeps both volumes (and reads the outboxes); the
    # lock's reader, a container never started, mounts the wheel volume alone, read-only.
    for volumes in by_role["publish"]:
        if volumes[names.volume] == (layout.COMPILE_MOUNT, "ro"):
            assert set(volumes) == {names.volume}
        else:
            assert volumes[names.volume] == (layout.COMPILE_MOUNT, "rw")
            assert volumes[names.candidates] == (layout.CANDIDATES_MOUNT, "rw")
    assert any(volumes.get(next(iter(outbox))) == ("/outbox/0", "ro") for volumes in by_role["publish"])
    # The resolve's local file came by copy, into its input folder.
    assert engine.files_put["compile"]["/tmp/grocker-input/dist/app-1.0.tar.gz"] == b"the user's own sdist"
    untrusted = [volumes for role in ("compile", "build-sdist") for volumes in by_role[role]]
    assert not [volumes for volumes in untrusted if names.volume in volumes]


# The resolve script, with pip, against a loopback index


def _dist_wheel(folder: Path, version: str, tag: str = "py3-none-any") -> Path:
    """A wheel of the project demo-dep, which pip can read the metadata of."""
    path = folder / f"demo_dep-{version}-{tag}.whl"
    info = f"demo_dep-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("demo_dep/__init__.py", f"VERSION = {version!r}\n")
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: demo-dep\nVersion: {version}\n")
        archive.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n")
        archive.writestr(f"{info}/RECORD", "")
    return path


@contextlib.contextmanager
def _loopback_index(root: Path, files: dict[str, bool], project: str = "demo-dep") -> Iterator[str]:
    """Serve a PEP 503 page of `project` with `files` (name: yanked) from `root`; yield the index URL."""
    page = root / "simple" / project
    page.mkdir(parents=True)
    anchors = []
    for name, yanked in files.items():
        digest = hashlib.sha256((root / name).read_bytes()).hexdigest()
        flag = ' data-yanked="broken"' if yanked else ""
        anchors.append(f'<a href="../../{name}#sha256={digest}"{flag}>{name}</a>')
    (page / "index.html").write_text("<html><body>" + "".join(anchors) + "</body></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *args: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()


def _script(name: str) -> ModuleType:
    return load_module(script_path(name), f"grocker_trust_{name[:-3]}")


@pytest.fixture
def volume(publisher: PublisherKit) -> Path:
    """The candidates volume the publisher keeps for a wheel volume of demo-dep: 2.0 downloaded
    from the index (yanked there since), 3.0 a local RELEASE another build published, 4.0 with no
    publisher record (planted, or an older Grocker), 5.0 built from a local sdist."""
    recorded = {
        "2.0": {"kind": "index", "url": "http://127.0.0.1/demo_dep-2.0-py3-none-any.whl", "index": "x"},
        "3.0": {"kind": "file"},
        "5.0": {"kind": "built", "compiler": "sha256:c0", "local": True},
    }
    for version in ("2.0", "3.0", "4.0", "5.0"):
        wheel = _dist_wheel(publisher.wheels, version)
        if version in recorded:
            publisher.volume.write_origin(wheel.name, recorded[version])
            publisher.volume.write_record(wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest())
        publisher.volume.offer(wheel.name)
    return Path(publisher.candidates)


def _resolve(
    tmp_path: Path, volume: Path, target: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> list[dict[str, object]]:
    index_root = tmp_path / "index"
    index_root.mkdir()
    for version in ("1.0", "2.0"):
        _dist_wheel(index_root, version)
    resolve = _script("resolve.py")
    request = tmp_path / "request.json"
    request.write_text(
        json.dumps({"target": target, "constraint": None, "candidates": str(volume), "links": str(tmp_path / "links")})
    )
    # Only the loopback index: none of the machine's pip settings or proxies.
    for name in list(os.environ):
        if name.startswith("PIP_") or name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with _loopback_index(
        index_root, {"demo_dep-1.0-py3-none-any.whl": False, "demo_dep-2.0-py3-none-any.whl": True}
    ) as url:
        monkeypatch.setenv("PIP_INDEX_URL", url)
        capfd.readouterr()
        assert resolve.main(["resolve.py", str(request)]) == 0
    lines = [line for line in capfd.readouterr().out.splitlines() if line.startswith(REPORT_MARK)]
    return list(json.loads(lines[-1][len(REPORT_MARK) :])["items"])


def test_the_resolve_sees_only_the_volumes_files_of_its_indexes(tmp_path: Path, volume: Path) -> None:
    resolve = _script("resolve.py")

    linked = resolve.link_candidates(str(volume), str(tmp_path / "view"))

    # The candidates volume, all the resolve mounts: not another build's local file, nor a wheel
    # built from one, nor a file nobody recorded, nor any lock, record or origin.
    assert sorted(os.listdir(volume)) == ["demo_dep-2.0-py3-none-any.whl"]
    assert linked == ["demo_dep-2.0-py3-none-any.whl"]
    assert sorted(os.listdir(tmp_path / "view")) == linked


def test_the_publisher_offers_each_reusable_wheel_once_and_mends_a_stale_copy(publisher: PublisherKit) -> None:
    wheel = _dist_wheel(publisher.wheels, "2.0")
    publisher.volume.write_origin(wheel.name, {"kind": "index", "url": "http://127.0.0.1/x.whl", "index": "x"})
    publisher.volume.write_record(wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest())

    assert publisher.volume.offer(wheel.name) is True
    assert publisher.volume.offer(wheel.name) is False  # a bump's reused wheels cost a stat, not a copy
    (publisher.candidates / wheel.name).write_bytes(b"cut short")
    assert publisher.volume.offer(wheel.name) is True

    assert (publisher.candidates / wheel.name).read_bytes() == wheel.read_bytes()
    assert not list(publisher.candidates.glob(".offer-*"))


def test_a_newer_version_in_the_volume_that_the_index_does_not_offer_is_not_chosen(
    tmp_path: Path, volume: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    items = _resolve(tmp_path, volume, "demo-dep", monkeypatch, capfd)

    # 3.0, 4.0 and 5.0 are newer but not this index's; 2.0 is the index's but yanked there.
    assert [(item["version"], item["in_volume"]) for item in items] == [("1.0", False)]


def test_a_yanked_version_stays_pinnable_from_the_index(
    tmp_path: Path, volume: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    items = _resolve(tmp_path, volume, "demo-dep==2.0", monkeypatch, capfd)

    # PEP 592: pinned, a yanked version is still chosen, as pip chooses it from the index alone.
    assert [(item["version"], item["in_volume"]) for item in items] == [("2.0", False)]


# The publisher: a local RELEASE file and a published file never stand for each other


def _temporary(publisher: PublisherKit, content: bytes) -> tuple[Path, str]:
    temporary, digest = publisher.volume.write_temporary(iter([content]))
    return Path(temporary), str(digest)


def test_a_local_file_never_replaces_a_file_from_an_index(publisher: PublisherKit) -> None:
    name = "app-1.0-py3-none-any.whl"
    origin = {"kind": "index", "url": "https://h.example/app.whl", "index": "https://h.example/simple/"}
    temporary, digest = _temporary(publisher, b"the index's")
    publisher.job({}).publish(temporary, name, digest, origin=origin)

    local, other = _temporary(publisher, b"the user's own")
    with pytest.raises(publisher.error, match="give the local build its own version"):
        publisher.job({}).publish(local, name, other, local=True, origin={"kind": "file"})

    assert (publisher.wheels / name).read_bytes() == b"the index's"
    assert publisher.volume.origin_of(name) == origin
    # The same bytes are the same file: reused.
    same, digest = _temporary(publisher, b"the index's")
    job = publisher.job({})
    assert job.publish(same, name, digest, local=True, origin={"kind": "file"}) == name
    assert job.reused == [name]


def test_a_local_file_replaces_an_earlier_local_file(publisher: PublisherKit) -> None:
    name = "app-1.0-py3-none-any.whl"
    first, digest = _temporary(publisher, b"first local")
    publisher.job({}).publish(first, name, digest, local=True, origin={"kind": "file"})
    second, digest = _temporary(publisher, b"second local")

    publisher.job({}).publish(second, name, digest, local=True, origin={"kind": "file"})

    assert (publisher.wheels / name).read_bytes() == b"second local"


def _six_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> contextlib.AbstractContextManager[str]:
    """A loopback index of six whose one file `name` holds b"the index's six", reached without a proxy."""
    root = tmp_path / "index"
    root.mkdir()
    (root / name).write_bytes(b"the index's six")
    for variable in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    return _loopback_index(root, {name: False}, project="six")


def test_a_file_from_an_index_is_never_taken_for_a_local_one_of_the_same_name(
    publisher: PublisherKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "six-1.16.0-py2.py3-none-any.whl"
    local, digest = _temporary(publisher, b"a local six")
    publisher.job({}).publish(local, name, digest, local=True, origin={"kind": "file"})
    with _six_index(tmp_path, monkeypatch, name) as url:
        job = publisher.job({"indexes": [url], "timeout": 5})
        # The resolve says the volume has it: the publisher does not reuse another build's local
        # file; it downloads the index's, whose other bytes cannot take the local file's place.
        with pytest.raises(publisher.error, match="is a local file given as RELEASE"):
            job.reuse({"name": "six", "version": "1.16.0", "filename": name})

    assert "no publisher record of an index of these settings" in job.warnings[0]
    assert (publisher.wheels / name).read_bytes() == b"a local six"


def test_a_candidate_whose_wheel_volume_copy_is_gone_is_downloaded_without_a_warning(
    publisher: PublisherKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wheel volume was removed after the candidates volume took its copy: a plain miss.
    name = "six-1.16.0-py2.py3-none-any.whl"
    (publisher.candidates / name).write_bytes(b"the index's six")
    with _six_index(tmp_path, monkeypatch, name) as url:
        job = publisher.job({"indexes": [url], "timeout": 5})
        job.reuse({"name": "six", "version": "1.16.0", "filename": name})

    assert job.warnings == []
    assert job.added == [name]
    assert (publisher.wheels / name).read_bytes() == b"the index's six"
    assert publisher.reusable(publisher.volume.origin_of(name))


def test_a_wheel_built_from_a_local_sdist_is_marked_local(publisher: PublisherKit, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / "app-1.0-py3-none-any.whl").write_bytes(b"built from the user's sdist")
    job = publisher.job({"compiler_image": "sha256:c0"})

    job.collect({"path": str(outbox), "name": "app", "version": "1.0", "replace": True})

    assert publisher.volume.origin_of("app-1.0-py3-none-any.whl") == {
        "kind": "built",
        "compiler": "sha256:c0",
        "local": True,
    }
    assert not publisher.reusable(publisher.volume.origin_of("app-1.0-py3-none-any.whl"))


def test_the_scripts_spell_no_mount_point_and_lay_the_volume_out_as_grocker_does() -> None:
    resolve, publish = _script("resolve.py"), _script("publish.py")
    volume = load_publishing("volume").Volume(Path(layout.COMPILE_MOUNT), Path(layout.CANDIDATES_MOUNT))

    # The host gives the mount points in the requests (grocker.wire.wheelhouse); inside the
    # wheel volume, the publisher keeps its state where the host reads it (grocker.layout).
    assert str(volume.origins) == f"{layout.COMPILE_MOUNT}/{layout.ORIGINS_DIR}"
    assert str(volume.locks) == f"{layout.COMPILE_MOUNT}/{layout.LOCKS_DIR}"
    for script in (resolve, publish):
        assert not [name for name in ("WHEELS", "CANDIDATES", "ORIGINS", "LOCKS") if hasattr(script, name)]
