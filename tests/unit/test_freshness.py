"""When a build is skipped as up to date, and when the release's wheel lock is reused or resolved.

Through the in-memory engine (tests/unit/fakes.py): its compile container prints the release's
lock when the request names one that exists in the volume, as resources/wheelhouse/resolve.py does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grocker import __version__, api, build, layout
from grocker.build import BuildRequest, BuildResult
from grocker.chain.wheelhouse import LOCKED_MARK, script_path
from grocker.labels import INPUTS_LABEL, VERSION_LABEL
from grocker.naming import internal_names
from grocker.wheels import lock_key
from tests.unit.fakes import BASE, FakeEngine, chain_engine

LOCKED = "2026-11-02T10:20:30Z"


@pytest.fixture
def engine() -> FakeEngine:
    return chain_engine()


def request_for(
    tmp_path: Path,
    release: str = "app==1.0",
    *,
    name: str = "app:1.0",
    overrides: dict[str, object] | None = None,
    **options: object,
) -> BuildRequest:
    """A request with the default configuration, changed by `overrides`."""
    config = api.load_config([], cwd=tmp_path, overrides=overrides)
    return api.prepare_build(
        release,
        config,
        image_name=name,
        cwd=tmp_path,
        env={"HOME": str(tmp_path)},
        **options,  # type: ignore[arg-type]
    )


def run(engine: FakeEngine, request: BuildRequest) -> BuildResult:
    try:
        return build.build(request, engine)
    finally:
        assert engine.live == []


def built(engine: FakeEngine, tmp_path: Path, **options: object) -> BuildRequest:
    """Build app==1.0 once, then forget the calls; the request of that build."""
    request = request_for(tmp_path, **options)
    run(engine, request)
    engine.calls.clear()
    return request


def resolve_request(engine: FakeEngine) -> dict[str, object]:
    """What the last compile container was asked."""
    content = engine.files_put["compile"]["/tmp/grocker-input/request.json"]
    return dict(json.loads(content))


# The skip


def test_an_unchanged_rebuild_starts_nothing_and_says_so(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    request = built(engine, tmp_path)
    image_id = engine.id_of("app:1.0")
    caplog.clear()

    with caplog.at_level(logging.INFO, logger="grocker"):
        result = run(engine, request)

    # Image inspects only: no container, no build, no mutex, no tag, no volume.
    assert engine.calls == []
    assert result.up_to_date
    assert (result.image_id, result.size) == (image_id, 2000)
    assert result.root_image == internal_names(request.config).root
    assert result.compiler_image is None
    assert caplog.messages == [
        f"app:1.0 is up to date (built from the same inputs by Grocker {__version__}): nothing to build"
    ]


def test_the_runner_records_its_inputs_in_a_label(engine: FakeEngine, tmp_path: Path) -> None:
    built(engine, tmp_path)
    image = engine.image("app:1.0")
    assert image is not None
    assert len(image.labels[INPUTS_LABEL]) == 64


def test_an_up_to_date_image_still_gets_its_result_file(engine: FakeEngine, tmp_path: Path) -> None:
    built(engine, tmp_path)
    result_file = tmp_path / "result.yml"

    run(engine, request_for(tmp_path, result_file=result_file))

    written = yaml.safe_load(result_file.read_text())
    assert written["image"] == "app:1.0"
    assert written["release"] == "app==1.0"
    assert written["image_id"] == engine.id_of("app:1.0")
    assert written["size"] == 2000
    assert written["root_image"].startswith("grocker-trixie-3.13-root:")


def test_an_up_to_date_image_is_still_pushed_alone(engine: FakeEngine, tmp_path: Path) -> None:
    name = "registry.example.com/team/app:1.0"
    built(engine, tmp_path, name=name, push=False)

    result = run(engine, request_for(tmp_path, name=name))

    assert result.up_to_date
    assert engine.did("push") == [name]
    assert engine.did("create_container") == []
    assert result.hash is not None
    assert result.hash.startswith("sha256:")


def test_an_up_to_date_image_still_gets_its_sbom(
    engine: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[str] = []

    def write(_engine: object, _config: object, image_name: str, *_args: object) -> str:
        written.append(image_name)
        return "{}"

    monkeypatch.setattr(build.sbom_step, "write", write)
    overrides = {"sbom": str(tmp_path / "sbom.json")}
    built(engine, tmp_path, overrides=overrides)

    result = run(engine, request_for(tmp_path, overrides=overrides))

    assert result.up_to_date
    assert written == ["app:1.0", "app:1.0"]


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"no_cache": True}, id="no-cache"),
        pytest.param({"refresh": True}, id="refresh"),
        pytest.param({"overrides": {"env": {"MODE": "production"}}}, id="env"),
        pytest.param({"overrides": {"ports": [8080]}}, id="ports"),
        pytest.param({"overrides": {"entrypoint_name": "app"}}, id="entrypoint"),
        pytest.param({"overrides": {"dependencies": {"run": ["libpq5"], "build": []}}}, id="system-packages"),
        pytest.param({"name": "app:other"}, id="another-name"),
    ],
)
def test_a_rebuild_with_any_other_input_builds(engine: FakeEngine, tmp_path: Path, options: dict[str, object]) -> None:
    built(engine, tmp_path)

    result = run(engine, request_for(tmp_path, **options))  # type: ignore[arg-type]

    assert not result.up_to_date
    assert "runner image" in engine.did("build")


def test_another_source_date_epoch_builds(engine: FakeEngine, tmp_path: Path) -> None:
    built(engine, tmp_path)
    config = api.load_config([], cwd=tmp_path)
    env = {"HOME": str(tmp_path), "SOURCE_DATE_EPOCH": "1700000000"}

    result = run(engine, api.prepare_build("app==1.0", config, image_name="app:1.0", cwd=tmp_path, env=env))

    assert not result.up_to_date
    assert "runner image" in engine.did("build")


def test_other_constraints_are_another_lock_and_build(engine: FakeEngine, tmp_path: Path) -> None:
    built(engine, tmp_path)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("six==1.16.0\n")

    result = run(engine, request_for(tmp_path, overrides={"pip_constraint": str(constraints)}))

    assert not result.up_to_date
    assert resolve_request(engine)["constraint"] is not None
    # The same wheels as the first build's, on the same root image: the ABI gate does not run again.
    assert engine.did("create_container") == ["wheel-server", "publish", "compile", "check"]


def test_an_image_of_another_grocker_version_is_rebuilt(engine: FakeEngine, tmp_path: Path) -> None:
    request = built(engine, tmp_path)
    image_id = engine.id_of("app:1.0")
    assert image_id is not None
    old = engine.images[image_id]
    engine.images[image_id] = dataclasses.replace(old, labels={**old.labels, VERSION_LABEL: "6.9"})

    result = run(engine, request)

    assert not result.up_to_date
    assert engine.did("build") == ["runner image"]


def test_an_image_without_the_inputs_label_is_rebuilt(engine: FakeEngine, tmp_path: Path) -> None:
    request = built(engine, tmp_path)
    engine.add_image("app:1.0", {VERSION_LABEL: __version__, "grocker.image.role": "runner"})

    assert not run(engine, request).up_to_date
    assert engine.did("build") == ["runner image"]


def test_a_new_base_image_makes_the_image_out_of_date(engine: FakeEngine, tmp_path: Path) -> None:
    request = built(engine, tmp_path)
    engine.add_image(BASE)  # a new debian:trixie: root is rebuilt, so the runner too

    result = run(engine, request)

    assert not result.up_to_date
    assert engine.did("build") == ["root image", "wheel-server image", "compiler image", "runner image"]


def test_a_root_image_built_again_makes_the_image_out_of_date(engine: FakeEngine, tmp_path: Path) -> None:
    request = built(engine, tmp_path)
    names = internal_names(request.config)
    root = engine.image(names.root)
    assert root is not None
    engine.add_image(names.root, root.labels)  # same labels, another ID (purged and built again)

    assert not run(engine, request).up_to_date
    assert "runner image" in engine.did("build")


def test_a_missing_root_image_makes_the_image_out_of_date(engine: FakeEngine, tmp_path: Path) -> None:
    request = built(engine, tmp_path)
    del engine.tags[internal_names(request.config).root]

    assert not run(engine, request).up_to_date
    assert engine.did("build")[0] == "root image"


def test_a_version_range_is_never_up_to_date(engine: FakeEngine, tmp_path: Path) -> None:
    built(engine, tmp_path, name="app:latest")

    result = run(engine, request_for(tmp_path, "app>=1.0", name="app:latest"))

    assert not result.up_to_date
    assert resolve_request(engine)["lock"] is None
    assert result.dependencies == "resolved now"


def test_a_compile_only_run_is_never_skipped(engine: FakeEngine, tmp_path: Path) -> None:
    built(engine, tmp_path)

    result = run(engine, request_for(tmp_path, build_image=False))

    assert not result.up_to_date
    assert engine.did("run") == ["compile"]


# Lock reuse and --refresh


def test_a_new_release_is_resolved_against_the_index(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="grocker"):
        result = run(engine, request_for(tmp_path))

    # The request names where the lock would be; there is none yet: pip resolves, the publisher runs.
    request = resolve_request(engine)
    key = lock_key(request_for(tmp_path).release, None)
    assert request["lock"] == f"{layout.COMPILE_MOUNT}/{layout.lock_file(key)}"
    assert engine.did("run")[:2] == ["compile", "publish"]
    assert result.dependencies == "resolved now"
    assert "dependencies resolved now" in caplog.messages[-1]


def test_a_rebuild_of_a_locked_release_reuses_its_lock(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    request = built(engine, tmp_path)
    volume = internal_names(request.config).volume
    path = layout.lock_file(lock_key(request.release, None))
    lock = json.loads(engine.volume_files[volume][path])
    engine.volume_files[volume][path] = json.dumps({**lock, "locked": LOCKED}).encode()

    # Another name, so that the image is built: from the same lock, with no publisher.
    with caplog.at_level(logging.INFO, logger="grocker"):
        result = run(engine, request_for(tmp_path, name="app:copy"))

    # The publisher's container, started while the resolve ran, had nothing to do.
    assert engine.did("create_container") == ["wheel-server", "publish", "compile", "check"]
    assert engine.did("execute") == []
    assert result.dependencies == "locked on 2026-11-02 10:20:30 UTC"
    assert "dependencies locked on 2026-11-02 10:20:30 UTC" in caplog.messages[-1]
    assert b"six-1.16.0-py2.py3-none-any.whl" in engine.built["runner image"]["Dockerfile"]


def test_refresh_resolves_a_locked_release_again(engine: FakeEngine, tmp_path: Path) -> None:
    built(engine, tmp_path)

    result = run(engine, request_for(tmp_path, refresh=True))

    assert resolve_request(engine)["lock"] is None
    assert engine.did("run")[:2] == ["compile", "publish"]
    assert result.dependencies == "resolved now"
    assert not result.up_to_date


def test_after_a_refresh_the_next_rebuild_is_up_to_date(engine: FakeEngine, tmp_path: Path) -> None:
    built(engine, tmp_path)
    run(engine, request_for(tmp_path, refresh=True))
    engine.calls.clear()

    assert run(engine, request_for(tmp_path)).up_to_date
    assert engine.calls == []


def test_a_lock_from_before_dates_were_recorded_says_so(engine: FakeEngine, tmp_path: Path) -> None:
    built(engine, tmp_path)

    result = run(engine, request_for(tmp_path, name="app:copy"))

    assert result.dependencies == "locked on an unknown date"


def test_a_lock_date_that_is_not_a_plain_time_is_not_shown(engine: FakeEngine, tmp_path: Path) -> None:
    request = built(engine, tmp_path)
    volume = internal_names(request.config).volume
    path = layout.lock_file(lock_key(request.release, None))
    lock = json.loads(engine.volume_files[volume][path])
    engine.volume_files[volume][path] = json.dumps({**lock, "locked": "\x1b[31mred"}).encode()

    result = run(engine, request_for(tmp_path, name="app:copy"))

    assert result.dependencies == "locked on an unknown date"


def test_a_push_phase_alone_never_resolves(engine: FakeEngine, tmp_path: Path) -> None:
    name = "registry.example.com/team/app:1.0"
    built(engine, tmp_path, name=name, push=False)

    run(engine, request_for(tmp_path, name=name, build_dependencies=False, build_image=False, push=True))

    assert engine.did("push") == [name]
    assert engine.did("create_container") == []


# resources/wheelhouse/resolve.py's first step, run as the compile container runs it (no pip needed)


def _resolve_script(tmp_path: Path, lock_path: Path | None) -> subprocess.CompletedProcess[str]:
    request = tmp_path / "request.json"
    target = "no-such-project-for-grocker-tests==1.0"
    lock = str(lock_path) if lock_path else None
    request.write_text(json.dumps({"target": target, "constraint": None, "lock": lock}))
    script = script_path("resolve.py")
    return subprocess.run(
        [sys.executable, str(script), str(request)], capture_output=True, text=True, check=False, timeout=60
    )


def test_the_resolve_script_prints_an_existing_lock_without_running_pip(tmp_path: Path) -> None:
    lock_path = tmp_path / "lock.json"
    lock_path.write_text(json.dumps({"application": {"file": "app-1.0-py3-none-any.whl"}, "locked": LOCKED}))

    completed = _resolve_script(tmp_path, lock_path)

    assert completed.returncode == 0, completed.stderr
    expected = LOCKED_MARK + json.dumps(json.loads(lock_path.read_text()), sort_keys=True)
    assert completed.stdout.splitlines() == [expected]


def test_the_resolve_script_dates_an_older_lock_by_its_file(tmp_path: Path) -> None:
    lock_path = tmp_path / "lock.json"
    lock_path.write_text(json.dumps({"application": {"file": "app-1.0-py3-none-any.whl"}}))
    os.utime(lock_path, (1_700_000_000, 1_700_000_000))

    completed = _resolve_script(tmp_path, lock_path)

    assert completed.returncode == 0, completed.stderr
    printed = json.loads(completed.stdout.splitlines()[-1][len(LOCKED_MARK) :])
    assert printed["locked"] == "2023-11-14T22:13:20Z"
