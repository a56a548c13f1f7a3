"""`import grocker` is a library: the CLI's operations, with frozen configuration objects."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import grocker
from grocker import api
from grocker import purge as purge_module


def test_the_package_exposes_the_operations_and_their_types() -> None:
    assert grocker.run_build is api.build
    assert grocker.run_purge is api.purge
    assert set(grocker.__all__) >= {"load_config", "prepare_build", "run_build", "run_purge", "PurgeOptions"}


def test_a_script_prepares_a_frozen_request_without_the_cli(tmp_path: Path) -> None:
    (tmp_path / ".grocker.yml").write_text("dependencies: {run: [libpq5], build: [libpq-dev]}\n")

    config = grocker.load_config(cwd=tmp_path)
    request = grocker.prepare_build("ipython==8.18.1", config, cwd=tmp_path, env={"HOME": str(tmp_path)})

    assert isinstance(request, grocker.BuildRequest)
    assert request.image_name == "ipython:8.18.1"
    assert request.config.run_packages == ("libpq5",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.image_name = "other:1"  # type: ignore[misc]
    assert "FROM debian:trixie" in grocker.dry_run(request)


def test_purge_reaches_the_engine_through_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def fake_purge(options: grocker.PurgeOptions, env: dict[str, str]) -> grocker.PurgeReport:
        seen.append((options, env))
        return grocker.PurgeReport()

    monkeypatch.setattr(purge_module, "purge", fake_purge)
    options = grocker.PurgeOptions(all_versions=True, including_final_images=False)

    grocker.run_purge(options, {"DOCKER_HOST": "tcp://engine:2376"})

    assert seen == [(options, {"DOCKER_HOST": "tcp://engine:2376"})]
