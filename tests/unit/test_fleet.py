"""The fleet's cache (grocker.chain.fleet): keys, publish and fetch decisions, and every failure a warning.

The registry here is an in-memory one that speaks the part of the OCI distribution API the fleet
uses (blobs by digest, monolithic uploads, manifests by tag); the real one is in
tests/integration/test_fleet.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from grocker import api
from grocker.chain import build
from grocker.chain import fleet as fleets
from grocker.chain.session import BuildRequest, BuildResult
from grocker.naming import internal_names
from grocker.sbom import referrers
from grocker.wheels import Origin, WheelFile, WheelLock
from grocker.wire.wheelhouse import PUBLISH_MARK
from tests.unit.fakes import APP, SIX, FakeEngine, chain_engine

ENVIRONMENT = fleets.Environment("c" * 64, "sha256:" + "1" * 64, "sha256:" + "2" * 64, "d" * 64)
SDIST = hashlib.sha256(b"an sdist").hexdigest()
WHEEL = "app-1.0-py3-none-any.whl"


def _response(status: int, content: bytes = b"", headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = content
    response.headers.update(headers or {})
    return response


class MemoryRegistry:
    """One repository: blobs and manifests in dictionaries, as a distribution registry keeps them."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.status: int | None = None  # answer every request with this status
        self.error: Exception | None = None  # raise this on every request

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        self.requests.append((method, path))
        if self.error is not None:
            raise self.error
        if self.status is not None:
            return _response(self.status)
        kind, _, name = path.partition("/")
        if kind == "blobs" and name == "uploads/":
            return _response(202, headers={"Location": "/v2/upload/1"})
        if path.startswith("/v2/upload/"):
            digest = path.split("digest=")[1].replace("%3A", ":")
            self.blobs[digest] = kwargs["data"]
            return _response(201)
        store = self.blobs if kind == "blobs" else self.manifests
        if method == "PUT":
            store[name] = kwargs["data"]
            return _response(201)
        if name not in store:
            return _response(404)
        content = store[name]
        return _response(200, content if method == "GET" else b"", {"Content-Length": str(len(content))})


def _fleet(registry: MemoryRegistry, publishing: bool = True) -> fleets.Fleet:
    return fleets.Fleet("localhost:5000/team/grocker-trixie-3.13-wheels", ENVIRONMENT, publishing, lambda _: registry)


def test_the_key_changes_with_every_part_of_the_environment() -> None:
    keys = {ENVIRONMENT.identity}
    for field in ("config_hash", "root_id", "compiler_id", "index_domain"):
        changed = fleets.Environment(**{**ENVIRONMENT.__dict__, field: "e" * 64})
        keys.add(changed.identity)
    assert len(keys) == 5
    assert ENVIRONMENT.sdist_tag(SDIST) != ENVIRONMENT.sdist_tag("0" * 64)
    assert ENVIRONMENT.lock_tag("app-1") != ENVIRONMENT.lock_tag("app-2")
    for tag in (ENVIRONMENT.sdist_tag(SDIST), ENVIRONMENT.lock_tag("app-1")):
        assert fleets._TAG_RE.fullmatch(tag)
        assert len(tag) <= 128


@pytest.mark.parametrize(
    ("prefix", "host"),
    [
        ("localhost:5000/team", "localhost:5000"),
        ("registry.example.com", "registry.example.com"),
        ("127.0.0.1:24650/fleet", "127.0.0.1:24650"),
        ("myaccount", None),
        ("myaccount/team", None),
        (None, None),
    ],
)
def test_only_a_prefix_that_names_a_registry_has_a_fleet(prefix: str | None, host: str | None) -> None:
    assert fleets.registry_host(prefix) == host


def test_a_published_wheel_is_fetched_by_its_sdist_digest() -> None:
    registry = MemoryRegistry()
    _fleet(registry).publish_sdist_wheel(SDIST, WHEEL, b"wheel bytes")

    fleet = _fleet(registry)
    assert fleet.fetch_sdist_wheel(SDIST) == (WHEEL, b"wheel bytes")
    assert fleet.fetched == {WHEEL}
    manifest = json.loads(registry.manifests[ENVIRONMENT.sdist_tag(SDIST)])
    assert manifest["artifactType"] == fleets.ARTIFACT_TYPE
    assert manifest["layers"][0]["digest"] == "sha256:" + hashlib.sha256(b"wheel bytes").hexdigest()
    assert fleet.fetch_sdist_wheel("0" * 64) is None


def test_the_first_engine_to_publish_wins() -> None:
    registry = MemoryRegistry()
    _fleet(registry).publish_sdist_wheel(SDIST, WHEEL, b"first compile")
    _fleet(registry).publish_sdist_wheel(SDIST, WHEEL, b"second compile")

    assert _fleet(registry).fetch_sdist_wheel(SDIST) == (WHEEL, b"first compile")


class RacingRegistry(MemoryRegistry):
    """Two engines that both find the tag missing before either writes it (the window of a race)."""

    def __init__(self) -> None:
        super().__init__()
        self.both_looked = threading.Barrier(2, timeout=10)
        self.lock = threading.Lock()
        self.looked = 0

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        if path.startswith("manifests/") and method in ("GET", "HEAD"):
            with self.lock:
                answer = super().request(method, path, **kwargs)
                self.looked += 1
                first_looks = self.looked <= 2
            if first_looks:
                self.both_looked.wait()  # the other engine looks too before anyone writes
            return answer
        with self.lock:
            return super().request(method, path, **kwargs)


def test_two_engines_publishing_the_same_sdist_at_once_both_succeed_and_leave_one_whole_artifact() -> None:
    registry = RacingRegistry()
    errors: list[BaseException] = []

    def compile_and_publish(content: bytes) -> None:
        try:
            _fleet(registry).publish_sdist_wheel(SDIST, WHEEL, content)
        except BaseException as err:
            errors.append(err)

    engines = [threading.Thread(target=compile_and_publish, args=(content,)) for content in (b"one", b"two")]
    for engine in engines:
        engine.start()
    for engine in engines:
        engine.join(20)

    assert errors == []
    assert not registry.both_looked.broken  # both did look before either wrote: the race happened
    # One manifest under the tag, every blob it names present and matching its digest.
    manifest = json.loads(registry.manifests[ENVIRONMENT.sdist_tag(SDIST)])
    for layer in manifest["layers"]:
        assert "sha256:" + hashlib.sha256(registry.blobs[layer["digest"]]).hexdigest() == layer["digest"]
    assert _fleet(registry).fetch_sdist_wheel(SDIST) in {
        (WHEEL, b"one"),
        (WHEEL, b"two"),
    }


def test_a_run_that_does_not_push_publishes_nothing() -> None:
    registry = MemoryRegistry()
    _fleet(registry, publishing=False).publish_sdist_wheel(SDIST, WHEEL, b"wheel bytes")

    assert registry.requests == []


def test_a_tampered_blob_is_refused_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    registry = MemoryRegistry()
    _fleet(registry).publish_sdist_wheel(SDIST, WHEEL, b"wheel bytes")
    digest = "sha256:" + hashlib.sha256(b"wheel bytes").hexdigest()
    registry.blobs[digest] = b"evil bytes"

    fleet = _fleet(registry)
    with caplog.at_level(logging.WARNING):
        assert fleet.fetch_sdist_wheel(SDIST) is None
    assert "is not the file its digest names: refused" in caplog.text
    assert fleet.fetched == set()
    assert not fleet.broken, "a bad blob does not stop the other fetches"


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        (requests.ConnectionError("refused"), "cannot be reached"),
        (401, "denied (HTTP 401)"),
        (403, "denied (HTTP 403)"),
        (503, "HTTP 503"),
    ],
)
def test_a_registry_that_fails_gives_one_warning_and_nothing(
    failure: Exception | int, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = MemoryRegistry()
    if isinstance(failure, int):
        registry.status = failure
    else:
        registry.error = failure
    fleet = _fleet(registry)
    with caplog.at_level(logging.WARNING):
        assert fleet.fetch_lock("app-1") is None
        assert fleet.fetch_sdist_wheel(SDIST) is None
        fleet.publish_sdist_wheel(SDIST, WHEEL, b"wheel bytes")
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert said in caplog.text
    assert "the build goes on without it" in caplog.text
    assert len(registry.requests) == 1, "nothing more is asked of a registry that failed"


def test_a_missing_artifact_is_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert _fleet(MemoryRegistry()).fetch_lock("app-1") is None
    assert caplog.text == ""


def _lock(content: bytes) -> dict[str, Any]:
    return {
        "application": {"file": WHEEL, "sha256": hashlib.sha256(content).hexdigest()},
        "dependencies": [],
        "installer": {"file": "pip-25.1-py3-none-any.whl", "sha256": "0" * 64},
    }


def test_a_lock_is_published_with_its_wheels_and_fetched_checked() -> None:
    registry = MemoryRegistry()
    lock = _lock(b"wheel bytes")
    _fleet(registry).publish_lock("app-1", lock, {WHEEL: b"wheel bytes"}.get)

    fleet = _fleet(registry)
    found = fleet.fetch_lock("app-1")
    assert found == (lock, {WHEEL: b"wheel bytes"})
    manifest = json.loads(registry.manifests[ENVIRONMENT.lock_tag("app-1")])
    assert [layer["mediaType"] for layer in manifest["layers"]] == [fleets.LOCK_TYPE, fleets.WHEEL_TYPE]


def test_a_volume_file_that_is_not_the_locked_one_is_not_published(caplog: pytest.LogCaptureFixture) -> None:
    registry = MemoryRegistry()
    with caplog.at_level(logging.WARNING):
        _fleet(registry).publish_lock("app-1", _lock(b"wheel bytes"), {WHEEL: b"other bytes"}.get)

    assert registry.manifests == {}
    assert "is not the one its lock names" in caplog.text


def test_a_locked_wheel_whose_blob_was_replaced_makes_the_lock_unusable(caplog: pytest.LogCaptureFixture) -> None:
    registry = MemoryRegistry()
    _fleet(registry).publish_lock("app-1", _lock(b"wheel bytes"), {WHEEL: b"wheel bytes"}.get)
    registry.blobs["sha256:" + hashlib.sha256(b"wheel bytes").hexdigest()] = b"evil"

    with caplog.at_level(logging.WARNING):
        assert _fleet(registry).fetch_lock("app-1") is None
    assert "refused" in caplog.text


def test_only_plain_origins_are_taken_from_a_fleet_lock() -> None:
    assert fleets.plain_origin(Origin("index", "https://files.example/app.whl", "https://pypi.org/simple/")) == {
        "kind": "index",
        "url": "https://files.example/app.whl",
        "index": "https://pypi.org/simple/",
    }
    assert fleets.plain_origin(Origin("index", "https://user:token@files.example/a.whl", "https://x/")) is None
    assert fleets.plain_origin(Origin("built", compiler="sha256:" + "2" * 64)) == {
        "kind": "built",
        "compiler": "sha256:" + "2" * 64,
    }
    assert fleets.plain_origin(Origin("built", compiler="anything")) is None
    assert fleets.plain_origin(Origin("file")) is None


def _wheel(name: str) -> WheelFile:
    return WheelFile(f"{name}-1.0-py3-none-any.whl", "0" * 64)


def test_the_sources_of_a_lock_are_counted_and_said() -> None:
    lock = WheelLock(
        application=_wheel("app"),
        dependencies=(_wheel("built"), _wheel("fetched"), _wheel("downloaded"), _wheel("kept")),
        installer=_wheel("pip"),
        added=(_wheel("built").file, _wheel("fetched").file, _wheel("downloaded").file),
    )
    sources = fleets.count_sources(lock, {_wheel("fetched").file, _wheel("app").file}, ["built"])

    assert sources == {"total": 5, "registry": 2, "downloaded": 1, "compiled": 1, "reused": 1}
    assert fleets.sources_line(sources) == (
        "5 wheels: 2 from the registry, 1 downloaded, 1 compiled, 1 reused from the wheel volume"
    )
    result = BuildResult(release="app==1.0", image="app:1.0", runtime="trixie/3.13", wheels=sources)
    assert result.as_dict()["wheels"] == sources


# The fleet in the build chain (fake engine, in-memory registry)

PREFIX = "registry.example.com/team"
CONTENTS = {APP: b"the app's wheel", SIX: b"six's wheel"}


def _request(tmp_path: Path, push: bool) -> BuildRequest:
    config = api.load_config([], cwd=tmp_path, overrides={"docker_image_prefix": PREFIX})
    return api.prepare_build(
        "app==1.0", config, image_name="app:1.0", cwd=tmp_path, env={"HOME": str(tmp_path)}, push=push
    )


def _engine(tmp_path: Path) -> FakeEngine:
    """A fresh engine whose publisher writes a lock of real SHA-256s; the volume holds those wheels."""
    engine = chain_engine()
    lock = {
        "application": {"file": APP, "sha256": hashlib.sha256(CONTENTS[APP]).hexdigest()},
        "dependencies": [{"file": SIX, "sha256": hashlib.sha256(CONTENTS[SIX]).hexdigest()}],
        "installer": {"file": "pip-25.0-py3-none-any.whl", "sha256": "c" * 64},
    }
    line = {"added": [APP, SIX], "reused": [], "wheels": {}, "lock": lock}
    engine.outputs["publish"] = (0, [PUBLISH_MARK + json.dumps(line)])
    engine.volume_files[internal_names(_request(tmp_path, False).config, _request(tmp_path, False).pip).volume] = dict(
        CONTENTS
    )
    return engine


def test_a_fresh_engine_takes_the_lock_and_its_wheels_from_the_fleet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    registry = MemoryRegistry()
    logins: list[object] = []

    def open_repository(reference: str, docker_config: object) -> MemoryRegistry:
        logins.append(docker_config)
        return registry

    monkeypatch.setattr(referrers, "open_repository", open_repository)
    first = _engine(tmp_path)
    build.build(_request(tmp_path, push=True), first)
    assert any(tag.startswith("lock-") for tag in registry.manifests), "the first engine shares its lock"
    # The registry's logins come from the Docker CLI configuration folder of the build's environment.
    assert set(logins) == {tmp_path / ".docker"}

    fresh = chain_engine()  # an empty volume; the same images (IDs) as the first engine's
    fresh.outputs["publish"] = first.outputs["publish"]
    with caplog.at_level(logging.WARNING):
        result = build.build(_request(tmp_path, push=False), fresh)

    assert "compile" not in fresh.did("create_container"), "no resolve: the fleet's lock is used"
    request = json.loads(fresh.files_put["publish"]["/tmp/grocker-input/publish.json"])
    assert [entry["name"] for entry in request["outboxes"]] == ["app", "six"]
    assert result.wheels == {"total": 2, "registry": 2, "downloaded": 0, "compiled": 0, "reused": 0}
    assert "fleet cache" not in caplog.text


def test_a_build_whose_registry_is_unreachable_goes_on_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        result = build.build(_request(tmp_path, push=True), _engine(tmp_path))

    assert result.image_id is not None
    assert caplog.text.count("fleet cache") == 1
    assert "the registry cannot be reached" in caplog.text


def test_a_lock_the_fleet_has_is_not_published_again() -> None:
    registry = MemoryRegistry()
    fleet = _fleet(registry)
    assert not fleet.shares_lock("app-1")
    fleet.publish_lock("app-1", _lock(b"wheel bytes"), {WHEEL: b"wheel bytes"}.get)
    assert fleet.shares_lock("app-1")
    assert _fleet(registry, publishing=False).shares_lock("app-2"), "a run that does not push shares nothing"


def test_credentials_the_docker_configuration_lacks_are_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    registry = MemoryRegistry()
    registry.error = ValueError("no credentials for registry.example.com")  # what oras-py raises
    fleet = _fleet(registry)
    with caplog.at_level(logging.WARNING):
        assert fleet.fetch_lock("app-1") is None
        assert fleet.fetch_sdist_wheel(SDIST) is None

    assert caplog.text.count("fleet cache") == 1
    assert "docker login" in caplog.text


def test_a_malformed_manifest_is_a_warning_for_that_artifact_only(caplog: pytest.LogCaptureFixture) -> None:
    registry = MemoryRegistry()
    registry.manifests[ENVIRONMENT.sdist_tag(SDIST)] = b"not json"
    fleet = _fleet(registry)
    with caplog.at_level(logging.WARNING):
        assert fleet.fetch_sdist_wheel(SDIST) is None
    assert "malformed" in caplog.text
    assert not fleet.broken
