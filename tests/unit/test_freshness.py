"""When a build is skipped as up to date, and when the release's wheel lock is reused or resolved.

Through the in-memory engine (tests/unit/fakes.py): the host reads an existing lock from the
volume through the publisher's container; the resolve step (package code) never hands it one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import yaml

from grocker import __version__, api, layout
from grocker.chain import build
from grocker.chain.build import BuildRequest, BuildResult
from grocker.chain.freshness import CACHE_SOURCES, cache_sources
from grocker.chain.session import Session
from grocker.engine.protocol import LabelledImage
from grocker.errors import BuildError
from grocker.labels import APP_NAME_LABEL, CONFIG_HASH_LABEL, INPUTS_LABEL, VERSION_LABEL
from grocker.naming import config_hash, internal_names
from grocker.wheels import lock_key
from grocker.wire.wheelhouse import REPORT_MARK
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
    assert result.root_image == internal_names(request.config, request.pip).root
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
    assert engine.did("create_container") == ["wheel-server", "publish", "publish", "compile", "check"]


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
    names = internal_names(request.config, request.pip)
    root = engine.image(names.root)
    assert root is not None
    engine.add_image(names.root, root.labels)  # same labels, another ID (purged and built again)

    assert not run(engine, request).up_to_date
    assert "runner image" in engine.did("build")


def test_a_missing_root_image_makes_the_image_out_of_date(engine: FakeEngine, tmp_path: Path) -> None:
    request = built(engine, tmp_path)
    del engine.tags[internal_names(request.config, request.pip).root]

    assert not run(engine, request).up_to_date
    assert engine.did("build")[0] == "root image"


def test_a_version_range_is_never_up_to_date(engine: FakeEngine, tmp_path: Path) -> None:
    built(engine, tmp_path, name="app:latest")

    result = run(engine, request_for(tmp_path, "app>=1.0", name="app:latest"))

    assert not result.up_to_date
    assert "compile" in engine.did("run")
    assert result.dependencies == "resolved now"


def test_a_compile_only_run_is_never_skipped(engine: FakeEngine, tmp_path: Path) -> None:
    built(engine, tmp_path)

    result = run(engine, request_for(tmp_path, build_image=False))

    # Not skipped: the compile phase reads the release's lock from the volume (no container runs).
    assert not result.up_to_date
    assert engine.did("create_container") == ["publish", "publish"]
    assert result.dependencies == "locked on an unknown date"


# Lock reuse and --refresh


def test_a_new_release_is_resolved_against_the_index(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="grocker"):
        result = run(engine, request_for(tmp_path))

    # There is no lock yet: pip resolves, the publisher runs. The resolve is not told where the
    # lock would be: it reads none (only where its candidates are and where to link them).
    assert set(resolve_request(engine)) == {"target", "constraint", "candidates", "links"}
    assert engine.did("run")[:2] == ["compile", "publish"]
    assert result.dependencies == "resolved now"
    assert "dependencies resolved now" in caplog.messages[-1]


def test_a_rebuild_of_a_locked_release_reuses_its_lock(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    request = built(engine, tmp_path)
    names = internal_names(request.config, request.pip)
    path = layout.lock_file(lock_key(request.release, None, names.index_domain))
    lock = json.loads(engine.volume_files[names.volume][path])
    engine.volume_files[names.volume][path] = json.dumps({**lock, "locked": LOCKED}).encode()

    # Another name, so that the image is built: from the same lock, with no resolve and no publish.
    with caplog.at_level(logging.INFO, logger="grocker"):
        result = run(engine, request_for(tmp_path, name="app:copy"))

    # The host read the lock through a container never started; the publisher's then had nothing to do.
    assert engine.did("create_container") == ["wheel-server", "publish", "publish", "check"]
    assert engine.did("execute") == []
    assert result.dependencies == "locked on 2026-11-02 10:20:30 UTC"
    assert "dependencies locked on 2026-11-02 10:20:30 UTC" in caplog.messages[-1]
    assert b"six-1.16.0-py2.py3-none-any.whl" in engine.built["runner image"]["Dockerfile"]


def test_refresh_resolves_a_locked_release_again(engine: FakeEngine, tmp_path: Path) -> None:
    built(engine, tmp_path)

    result = run(engine, request_for(tmp_path, refresh=True))

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
    names = internal_names(request.config, request.pip)
    path = layout.lock_file(lock_key(request.release, None, names.index_domain))
    lock = json.loads(engine.volume_files[names.volume][path])
    engine.volume_files[names.volume][path] = json.dumps({**lock, "locked": "\x1b[31mred"}).encode()

    result = run(engine, request_for(tmp_path, name="app:copy"))

    assert result.dependencies == "locked on an unknown date"


def test_a_push_phase_alone_never_resolves(engine: FakeEngine, tmp_path: Path) -> None:
    name = "registry.example.com/team/app:1.0"
    built(engine, tmp_path, name=name, push=False)

    run(engine, request_for(tmp_path, name=name, build_dependencies=False, build_image=False, push=True))

    assert engine.did("push") == [name]
    assert engine.did("create_container") == []


# The lock comes from the volume, never from the resolve step's output


def test_a_lock_printed_by_package_code_during_a_first_resolve_is_not_taken(engine: FakeEngine, tmp_path: Path) -> None:
    # An sdist's metadata hook prints a lock of its choosing before pip's report.
    forged = {
        "application": {"file": "app-1.0-py3-none-any.whl", "sha256": "f" * 64},
        "dependencies": [{"file": "evil-6.6.6-py3-none-any.whl", "sha256": "e" * 64}],
        "installer": {"file": "pip-25.0-py3-none-any.whl", "sha256": "d" * 64},
    }
    report = [line for line in engine.outputs["compile"][1] if line.startswith(REPORT_MARK)]
    engine.outputs["compile"] = (0, ["GROCKER-LOCKED:" + json.dumps(forged), *report])

    result = run(engine, request_for(tmp_path))

    # The publisher ran and its lock is the one the runner installs.
    assert engine.did("run")[:2] == ["compile", "publish"]
    assert result.dependencies == "resolved now"
    dockerfile = engine.built["runner image"]["Dockerfile"]
    assert b"evil-6.6.6" not in dockerfile
    assert b"six-1.16.0-py2.py3-none-any.whl" in dockerfile


def test_an_existing_lock_is_read_from_the_volume_not_from_the_resolve(engine: FakeEngine, tmp_path: Path) -> None:
    built(engine, tmp_path)
    # Whatever a resolve would print, the lock is not asked of it: no compile container runs.
    engine.outputs["compile"] = (0, ["GROCKER-LOCKED:{}"])

    result = run(engine, request_for(tmp_path, name="app:copy"))

    assert "compile" not in engine.did("create_container")
    assert result.dependencies.startswith("locked on")
    assert b"six-1.16.0-py2.py3-none-any.whl" in engine.built["runner image"]["Dockerfile"]


def test_a_lock_that_is_not_json_fails_clearly(engine: FakeEngine, tmp_path: Path) -> None:
    request = built(engine, tmp_path)
    names = internal_names(request.config, request.pip)
    engine.volume_files[names.volume][layout.lock_file(lock_key(request.release, None, names.index_domain))] = b"{"

    with pytest.raises(BuildError, match="is not JSON"):
        run(engine, request_for(tmp_path, name="app:copy"))


def test_the_cache_sources_are_the_listed_runners_of_the_same_application_and_configuration(
    engine: FakeEngine, tmp_path: Path
) -> None:
    # The build lists the engine's runners once, in the background; the cache sources are picked from them.
    request = request_for(tmp_path)
    session = Session(engine, request, internal_names(request.config, request.pip), BuildResult("", "", ""), ())
    same = {APP_NAME_LABEL: "app", CONFIG_HASH_LABEL: config_hash(request.config)}
    listed = [LabelledImage(f"sha256:{index:064x}", same) for index in range(CACHE_SOURCES + 2)]
    listed.insert(1, LabelledImage("sha256:" + "a" * 64, {**same, APP_NAME_LABEL: "other"}))
    listed.insert(2, LabelledImage("sha256:" + "b" * 64, {**same, CONFIG_HASH_LABEL: "0" * 64}))

    sources = cache_sources(session, listed)

    # Newest first as listed, at most CACHE_SOURCES, none of another application or configuration.
    assert sources == [f"sha256:{index:064x}" for index in range(CACHE_SOURCES)]
    no_cache = dataclasses.replace(session, request=dataclasses.replace(request, no_cache=True))
    assert cache_sources(no_cache, listed) == []
