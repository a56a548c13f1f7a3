"""A fresh engine of a fleet pulls the final image the registry holds from the same inputs.

The decision of grocker.chain.registry_freshness, through the in-memory engine
(tests/unit/fakes.py) and in-memory repositories that speak the part of the OCI distribution API
it reads (manifests by tag, blobs by digest); real engines and a real registry are in
tests/integration/test_fleet.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from grocker import __version__, api
from grocker.chain import build
from grocker.chain.freshness import inputs_digest
from grocker.chain.session import BuildRequest, BuildResult, Session
from grocker.labels import BASE_ID_LABEL, INPUTS_LABEL, ROLE_LABEL, RUNNER, VERSION_LABEL
from grocker.naming import internal_names, runner_labels
from grocker.sbom import referrers
from tests.unit.fakes import BASE, FakeEngine, chain_engine
from tests.unit.test_fleet import MemoryRegistry

PREFIX = "registry.example.com/team"
NAME = f"{PREFIX}/app:1.0"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _request(tmp_path: Path, release: str = "app==1.0", **options: Any) -> BuildRequest:
    config = api.load_config([], cwd=tmp_path, overrides={"docker_image_prefix": PREFIX})
    options.setdefault("result_file", tmp_path / "result.yml")
    return api.prepare_build(
        release, config, image_name=NAME, cwd=tmp_path, env={"HOME": str(tmp_path)}, push=True, **options
    )


class Fleet:
    """The registry's repositories (final image's, root's), opened by reference as oras-py would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.repositories: dict[str, MemoryRegistry] = {}
        monkeypatch.setattr(referrers, "open_repository", self.open)

    def open(self, reference: str, docker_config: object) -> MemoryRegistry:
        return self.repositories.setdefault(reference, MemoryRegistry())

    def put_image(self, name: str, labels: dict[str, str]) -> tuple[str, str]:
        """Store an image (manifest and config) under `name`: its (manifest, config) digests."""
        repository, tag = name.rsplit(":", 1)
        registry = self.open(repository, None)
        config = json.dumps({"architecture": "amd64", "config": {"Labels": labels}}).encode()
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        registry.blobs[config_digest] = config
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest},
                "layers": [],
            }
        ).encode()
        registry.manifests[tag] = manifest
        return "sha256:" + hashlib.sha256(manifest).hexdigest(), config_digest

    def requests(self) -> list[tuple[str, str]]:
        return [done for registry in self.repositories.values() for done in registry.requests]


def _publish(fleet: Fleet, engine: FakeEngine, request: BuildRequest, **changed: str) -> str:
    """What engine A's build of `request` pushed: its root, then its runner; the runner's manifest digest.

    `changed` replaces labels of the runner (a mismatch the test wants).
    """
    names = internal_names(request.config, request.pip)
    base = engine.image(BASE)
    assert base is not None
    _, root_id = fleet.put_image(names.root, {ROLE_LABEL: "root", BASE_ID_LABEL: base.id})
    session = Session(engine, request, names, BuildResult(request.release.text, NAME, "trixie/3.13"))
    labels = runner_labels(request.release, request.config, "2026-12-06T10:00:00Z")
    labels[INPUTS_LABEL] = inputs_digest(session, root_id)
    assert (labels[ROLE_LABEL], labels[VERSION_LABEL]) == (RUNNER, __version__)
    labels.update(changed)
    engine.registry[NAME] = labels  # what the engine's pull finds
    digest, _ = fleet.put_image(NAME, labels)
    return digest


def test_the_image_the_registry_holds_from_the_same_inputs_is_pulled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fleet, engine = Fleet(monkeypatch), chain_engine()
    request = _request(tmp_path)
    digest = _publish(fleet, engine, request)

    with caplog.at_level(logging.INFO, logger="grocker"):
        result = build.build(request, engine)

    # No image built, no container, nothing pushed: one pull.
    assert engine.did("pull") == [NAME]
    assert engine.did("build") == []
    assert engine.did("create_container") == []
    assert engine.did("push") == []
    assert result.up_to_date
    assert result.hash == digest
    assert result.image_id == engine.id_of(NAME)
    assert f"{NAME} is up to date in registry.example.com (built from the same inputs by Grocker" in caplog.text
    assert "on another engine): pulled" in caplog.text
    written = yaml.safe_load((tmp_path / "result.yml").read_text())
    assert written["pulled_from"] == "registry.example.com"
    assert written["hash"] == digest


@pytest.mark.parametrize(
    ("changed", "why"),
    [
        ({ROLE_LABEL: "root"}, "not a runner"),
        ({VERSION_LABEL: "6.4.0"}, "another Grocker version"),
        ({INPUTS_LABEL: "0" * 64}, "other inputs"),
    ],
)
def test_an_image_of_other_labels_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, changed: dict[str, str], why: str
) -> None:
    fleet, engine = Fleet(monkeypatch), chain_engine()
    request = _request(tmp_path)
    _publish(fleet, engine, request, **changed)

    with caplog.at_level(logging.WARNING):
        result = build.build(request, engine)

    assert not result.up_to_date, why
    assert engine.did("pull").count(NAME) == 0, why
    assert "runner image" in engine.did("build"), why
    assert engine.did("push")[-1] == NAME
    assert "up-to-date check" not in caplog.text, "a mismatch is no warning"


def test_a_root_built_from_another_base_image_is_not_this_build_s_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, engine = Fleet(monkeypatch), chain_engine()
    request = _request(tmp_path)
    _publish(fleet, engine, request)
    names = internal_names(request.config, request.pip)
    fleet.put_image(names.root, {ROLE_LABEL: "root", BASE_ID_LABEL: "sha256:" + "9" * 64})

    result = build.build(request, engine)

    assert not result.up_to_date
    assert "runner image" in engine.did("build")


@pytest.mark.parametrize(
    "failure",
    [requests.ConnectionError("refused"), ValueError("no credentials"), 500, 401],
    ids=["unreachable", "credentials", "server-error", "denied"],
)
def test_a_registry_error_is_one_warning_and_the_build_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, failure: object
) -> None:
    fleet, engine = Fleet(monkeypatch), chain_engine()
    request = _request(tmp_path)
    _publish(fleet, engine, request)
    final = fleet.open(NAME.rsplit(":", 1)[0], None)
    if isinstance(failure, int):
        final.status = failure
    else:
        assert isinstance(failure, Exception)
        final.error = failure

    with caplog.at_level(logging.WARNING):
        result = build.build(request, engine)

    assert not result.up_to_date
    assert "runner image" in engine.did("build")
    warnings = [message for message in caplog.messages if "up-to-date check" in message]
    assert len(warnings) == 1, caplog.text
    assert warnings[0].startswith(f"registry up-to-date check of {NAME}: ")
    assert warnings[0].endswith("; building it")


@pytest.mark.parametrize(
    ("release", "options"),
    [("app>=1.0", {}), ("app==1.0", {"no_cache": True}), ("app==1.0", {"refresh": True})],
    ids=["version-range", "no-cache", "refresh"],
)
def test_no_registry_check_for_a_range_no_cache_or_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release: str, options: dict[str, object]
) -> None:
    fleet, engine = Fleet(monkeypatch), chain_engine()
    _publish(fleet, engine, _request(tmp_path))
    for registry in fleet.repositories.values():
        registry.requests.clear()

    result = build.build(_request(tmp_path, release, **options), engine)

    assert not result.up_to_date
    assert "runner image" in engine.did("build")
    final = NAME.rsplit(":", 1)[0]
    assert [done for done in fleet.requests() if done[1] == "manifests/1.0"] == [], final


def test_a_bump_after_a_pull_builds_on_the_pulled_image_s_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, engine = Fleet(monkeypatch), chain_engine()
    request = _request(tmp_path)
    _publish(fleet, engine, request)
    build.build(request, engine)
    pulled = engine.id_of(NAME)

    bump = api.prepare_build(
        "app==1.1",
        request.config,
        image_name=f"{PREFIX}/app:1.1",
        cwd=tmp_path,
        env={"HOME": str(tmp_path)},
        push=True,
    )
    build.build(bump, engine)

    # The pulled runner is the runner build's cache: its dependencies' layer is not built again.
    assert engine.cache_from["runner image"] == [pulled]


def test_no_cache_gives_no_cache_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet, engine = Fleet(monkeypatch), chain_engine()
    request = _request(tmp_path)
    _publish(fleet, engine, request)
    build.build(request, engine)

    build.build(_request(tmp_path, no_cache=True), engine)

    assert engine.cache_from["runner image"] == []
