"""Every decision of the build chain, through the in-memory engine (tests/unit/fakes.py).

What is reused, pulled or built; when an internal image is refreshed; new and reused wheels;
what is pushed; and what is removed when a step fails or the build is interrupted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from grocker import api
from grocker.chain import background, build, render, runner
from grocker.chain.build import BuildRequest, BuildResult
from grocker.chain.runner import MISSING_MODULE_MARK, SETUPTOOLS_MARK
from grocker.engine.protocol import NO_NETWORK
from grocker.errors import BuildError, ConfigError, EngineError, PushError
from grocker.labels import ABI_CHECKED_LABEL, BASE_ID_LABEL, ROLE_LABEL, ROOT_ID_LABEL
from grocker.naming import InternalNames, internal_names
from tests.unit.fakes import ABI_MARK, APP, BASE, SIX, FakeEngine, chain_engine, publish_line, report_line

PREFIX = "registry.example.com/team"


@pytest.fixture
def engine() -> FakeEngine:
    return chain_engine()


def request_for(tmp_path: Path, *, prefix: str | None = None, name: str = "app:1.0", **options: object) -> BuildRequest:
    """A request for app==1.0 with the default configuration (and an image prefix)."""
    overrides = {"docker_image_prefix": prefix} if prefix else {}
    config = api.load_config([], cwd=tmp_path, overrides=overrides)
    request = api.prepare_build(
        "app==1.0",
        config,
        image_name=name,
        cwd=tmp_path,
        env={"HOME": str(tmp_path)},
        **options,  # type: ignore[arg-type]
    )
    return request


def names_of(request: BuildRequest) -> InternalNames:
    return internal_names(request.config, request.pip)


def run(engine: FakeEngine, request: BuildRequest) -> BuildResult:
    """Build, then check that no container or mutex outlived the build."""
    try:
        return build.build(request, engine)
    finally:
        assert engine.live == []


def test_first_build_makes_everything_in_order(engine: FakeEngine, tmp_path: Path) -> None:
    request = request_for(tmp_path)
    names = names_of(request)

    result = run(engine, request)

    assert engine.did("build") == ["root image", "wheel-server image", "compiler image", "runner image"]
    assert engine.did("tag") == [names.root, names.wheel_server, names.compiler, "app:1.0"]
    assert engine.did("create_volume") == [
        names.volume,
        names.candidates,
        names.volume.replace("wheel-cache", "abi-cache", 1),
    ]
    # The wheel server starts first (in the background: inline here), serving nothing until the
    # lock is known; the publisher's container too, and the publisher runs in it after the resolve.
    # The release's lock is looked for through a container of its own, never started, which does
    # not wait for the publisher's to start.
    assert engine.did("create_container") == ["wheel-server", "publish", "publish", "compile", "abi-check", "check"]
    # That one is kept until the resolve's container exists, so that the engine's lease runs on.
    assert engine.calls.index(("create_container", "compile")) < engine.calls.index(("remove_container", "publish"))
    assert engine.did("start").count("publish") == 1  # the publisher's: the reader never starts
    assert engine.did("execute") == ["publish"]
    assert engine.calls.index(("run", "compile")) < engine.calls.index(("execute", "publish"))
    # Once used, it goes (in the background), not at the end of the build.
    assert engine.calls.index(("remove_container", "publish")) < engine.calls.index(("build", "runner image"))
    assert engine.did("pull") == []
    assert engine.did("push") == []
    # The entrypoint check runs on the built runner, while the wheel server goes.
    assert engine.calls.index(("build", "runner image")) < engine.calls.index(("create_container", "check"))
    assert ("remove_container", "wheel-server") in engine.calls
    # The containers that only read files, or run the application's import, get no network.
    networks = {made["role"]: made["network"] for made in engine.containers_made}
    assert networks["check"] == networks["abi-check"] == NO_NETWORK
    assert networks["compile"] is None
    assert result.image_id == engine.id_of("app:1.0")
    assert (result.root_image, result.compiler_image, result.size) == (names.root, names.compiler, 2000)
    assert result.reused == []
    root = engine.image(names.root)
    assert root is not None
    assert root.labels[BASE_ID_LABEL] == engine.id_of(BASE)
    assert root.labels[ROLE_LABEL] == "root"
    compiler = engine.image(names.compiler)
    assert compiler is not None
    assert compiler.labels[ROOT_ID_LABEL] == root.id
    # The runner is installed from the wheel server, by its address.
    assert b"http://grocker-wheels/" in engine.built["runner image"]["Dockerfile"]


def test_second_build_reuses_images_and_wheels(engine: FakeEngine, tmp_path: Path) -> None:
    request = request_for(tmp_path)
    run(engine, request)
    engine.calls.clear()
    engine.outputs["compile"] = (0, [report_line(app_in_volume=True)])
    engine.outputs["publish"] = (0, [publish_line(added=(), reused=(APP,))])
    engine.build_lines["runner image"] = ["Step 1/9", " ---> Using cache", " ---> Using cache"]

    # --refresh: resolved again (an unchanged rebuild would be skipped, see test_freshness.py).
    result = run(engine, request_for(tmp_path, refresh=True))

    assert engine.did("build") == ["runner image"]
    assert engine.did("mutex") == []
    assert result.reused == ["root image", "wheel-server image", "compiler image", "1 wheel", "2 cached layers"]


def test_new_base_image_rebuilds_root_and_its_children(engine: FakeEngine, tmp_path: Path) -> None:
    request = request_for(tmp_path)
    run(engine, request)
    engine.calls.clear()
    new_base = engine.add_image(BASE)  # `docker pull debian:trixie` brought a new one

    run(engine, request)

    assert engine.did("build") == ["root image", "wheel-server image", "compiler image", "runner image"]
    root = engine.image(names_of(request).root)
    assert root is not None
    assert root.labels[BASE_ID_LABEL] == new_base


def test_missing_base_image_is_pulled(engine: FakeEngine, tmp_path: Path) -> None:
    engine.tags.pop(BASE)
    engine.registry[BASE] = {}

    run(engine, request_for(tmp_path))

    assert engine.did("pull") == [BASE]
    assert engine.did("build")[0] == "root image"


def test_missing_base_image_that_cannot_be_pulled_says_how_to_provide_it(engine: FakeEngine, tmp_path: Path) -> None:
    engine.tags.pop(BASE)

    with pytest.raises(BuildError, match=r"base image debian:trixie .*docker load.*docker import"):
        run(engine, request_for(tmp_path))
    assert engine.did("build") == []


def test_root_from_the_registry_makes_the_base_image_unnecessary(engine: FakeEngine, tmp_path: Path) -> None:
    engine.tags.pop(BASE)
    request = request_for(tmp_path, prefix=PREFIX, push=False)
    names = names_of(request)
    engine.registry[names.root] = {ROLE_LABEL: "root"}

    result = run(engine, request)

    assert engine.did("pull")[0] == names.root
    assert BASE not in engine.did("pull")
    assert engine.did("build") == ["wheel-server image", "compiler image", "runner image"]
    assert "root image" in result.reused


def test_internal_images_are_pulled_from_the_prefix_registry(engine: FakeEngine, tmp_path: Path) -> None:
    request = request_for(tmp_path, prefix=PREFIX, push=False)
    names = names_of(request)
    run(engine, request_for(tmp_path))  # makes root: the pulled images are built FROM it
    root_id = engine.id_of(names_of(request_for(tmp_path)).root)
    engine.tags[names.root] = root_id  # type: ignore[assignment]
    engine.registry[names.compiler] = {ROOT_ID_LABEL: str(root_id)}
    engine.registry[names.wheel_server] = {ROOT_ID_LABEL: "sha256:an-older-root"}
    engine.calls.clear()

    result = run(engine, request)

    assert engine.did("pull") == [names.wheel_server, names.compiler]
    # The compiler fits the local root; the wheel server was built FROM an older root: rebuilt.
    assert engine.did("build") == ["wheel-server image", "runner image"]
    assert "compiler image (pulled)" in result.reused
    assert "wheel-server image (pulled)" not in result.reused


def test_image_missing_from_the_registry_is_built(engine: FakeEngine, tmp_path: Path) -> None:
    request = request_for(tmp_path, prefix=PREFIX, push=False)
    names = names_of(request)

    run(engine, request)

    assert engine.did("pull") == [names.root, names.wheel_server, names.compiler]
    assert engine.did("build") == ["root image", "wheel-server image", "compiler image", "runner image"]


def test_no_cache_builds_everything_again_and_pulls_nothing(engine: FakeEngine, tmp_path: Path) -> None:
    run(engine, request_for(tmp_path, prefix=PREFIX, push=False))
    engine.calls.clear()

    run(engine, request_for(tmp_path, prefix=PREFIX, push=False, no_cache=True))

    assert engine.did("pull") == []
    assert engine.did("build") == ["root image", "wheel-server image", "compiler image", "runner image"]


def test_a_concurrent_build_that_made_the_image_is_waited_for_and_reused(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    request = request_for(tmp_path)
    names = names_of(request)
    engine.contended[names.root] = lambda: engine.add_image(names.root, {BASE_ID_LABEL: str(engine.id_of(BASE))})

    with caplog.at_level(logging.INFO, logger="grocker"):
        result = run(engine, request)

    assert "waiting for another Grocker build to finish the root image" in caplog.text
    assert "root image (built by a concurrent build)" in result.reused
    assert engine.did("build")[0] == "wheel-server image"


def test_compile_failure_explains_and_removes_its_container(engine: FakeEngine, tmp_path: Path) -> None:
    engine.outputs["compile"] = (1, ["ERROR: No matching distribution found for app==1.0"])

    with pytest.raises(BuildError, match=r"pip found no distribution of app==1.0") as failure:
        run(engine, request_for(tmp_path))

    assert "No matching distribution" in failure.value.details
    # The publisher's container and the wheel server, started while the compile ran, go too.
    assert engine.did("remove_container") == ["compile", "publish", "publish", "wheel-server"]
    assert "app:1.0" not in engine.tags


def test_compile_failure_without_pip_message_points_at_system_packages(engine: FakeEngine, tmp_path: Path) -> None:
    engine.outputs["compile"] = (1, ["fatal error: yaml.h: No such file or directory"])

    with pytest.raises(BuildError, match=r"dependencies.build"):
        run(engine, request_for(tmp_path))


def test_compile_gets_the_request_pip_settings_and_constraints(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "constraints.txt").write_text("six==1.16.0\n")
    (tmp_path / ".grocker.yml").write_text(yaml.safe_dump({"pip_constraint": "constraints.txt"}))
    config = api.load_config([], cwd=tmp_path)
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text("[global]\nindex-url = https://user:s3cret@pypi.example.com/simple\n")
    request = api.prepare_build("app==1.0", config, image_name="app:1.0", pip_conf=pip_conf, cwd=tmp_path, env={})

    with caplog.at_level(logging.DEBUG, logger="grocker"):
        run(engine, request)

    files = engine.files_put["compile"]
    sent = json.loads(files["/tmp/grocker-input/request.json"])
    assert sent["target"] == "app==1.0"
    assert sent["constraint"] == "/tmp/grocker-input/constraints.txt"
    assert files["/tmp/grocker-input/constraints.txt"] == b"six==1.16.0\n"
    assert b"s3cret@pypi.example.com" in files["/tmp/grocker-input/pip.conf"]
    assert "s3cret" not in caplog.text


def test_interrupt_during_compile_removes_its_container(engine: FakeEngine, tmp_path: Path) -> None:
    engine.fail("run", "compile", KeyboardInterrupt())

    with pytest.raises(KeyboardInterrupt):
        run(engine, request_for(tmp_path))

    assert engine.did("remove_container") == ["compile", "publish", "publish", "wheel-server"]
    assert engine.did("build") == ["root image", "wheel-server image", "compiler image"]


def test_interrupt_while_an_internal_image_builds_tags_nothing(engine: FakeEngine, tmp_path: Path) -> None:
    engine.fail("build", "compiler image", KeyboardInterrupt())
    request = request_for(tmp_path)

    with pytest.raises(KeyboardInterrupt):
        run(engine, request)

    # The wheel-server image was complete before the compiler's build began.
    assert engine.did("tag") == [names_of(request).root, names_of(request).wheel_server]


def test_no_build_dependencies_needs_the_wheel_volume(engine: FakeEngine, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"There is no wheel volume .* --build-dependencies"):
        run(engine, request_for(tmp_path, build_dependencies=False))
    assert engine.did("build") == ["root image"]
    assert "app:1.0" not in engine.tags


def test_no_build_dependencies_needs_the_release_lock(engine: FakeEngine, tmp_path: Path) -> None:
    request = request_for(tmp_path)
    engine.create_volume(names_of(request).volume, {})

    with pytest.raises(BuildError, match=r"holds no compiled wheels of app==1.0"):
        run(engine, request_for(tmp_path, build_dependencies=False))
    assert engine.did("remove_container") == ["abi-check", "wheel-server"]


def test_no_build_dependencies_installs_the_lock_of_an_earlier_compile(engine: FakeEngine, tmp_path: Path) -> None:
    run(engine, request_for(tmp_path, build_dependencies=True, build_image=False, push=False))
    assert engine.did("build") == ["root image", "compiler image"]
    engine.calls.clear()

    result = run(engine, request_for(tmp_path, build_dependencies=False))

    assert engine.did("create_container") == ["wheel-server", "abi-check", "check"]
    assert APP.encode() in engine.built["runner image"]["Dockerfile"]
    assert result.compiler_image is None


def allowed(engine: FakeEngine) -> list[str]:
    """The names the wheel server was told to serve."""
    prefix = f"{render.WHEEL_SERVER_ALLOWED}/"
    return sorted(path.removeprefix(prefix) for path in engine.files_put["wheel-server"] if path.startswith(prefix))


def test_wheel_server_starts_serving_nothing_then_allows_the_lock_files(engine: FakeEngine, tmp_path: Path) -> None:
    run(engine, request_for(tmp_path))

    assert engine.files_put["wheel-server"]["/etc/grocker/nginx.conf"] == render.wheel_server_config()
    assert allowed(engine) == sorted(["pip-25.0-py3-none-any.whl", SIX, APP])
    configured, allowing = [index for index, call in enumerate(engine.calls) if call == ("put_files", "wheel-server")]
    # Configured before it starts, while the compile has not begun; the lock's files allowed once
    # the publisher wrote the lock, before the runner's build fetches them.
    assert configured < engine.calls.index(("start", "wheel-server")) < engine.calls.index(("run", "compile"))
    assert engine.calls.index(("run", "publish")) < allowing < engine.calls.index(("build", "runner image"))


def test_no_build_dependencies_serves_the_lock_read_from_the_volume(engine: FakeEngine, tmp_path: Path) -> None:
    run(engine, request_for(tmp_path, build_dependencies=True, build_image=False, push=False))
    engine.calls.clear()
    engine.files_put.clear()

    run(engine, request_for(tmp_path, build_dependencies=False))

    assert allowed(engine) == sorted(["pip-25.0-py3-none-any.whl", SIX, APP])
    assert engine.calls.index(("put_files", "wheel-server")) < engine.calls.index(("start", "wheel-server"))


def test_missing_entrypoint_removes_the_new_image_and_keeps_the_name(engine: FakeEngine, tmp_path: Path) -> None:
    previous = engine.add_image("app:1.0")
    engine.outputs["check"] = (1, [])

    with pytest.raises(BuildError, match="entrypoint 'grocker-runner' does not exist"):
        run(engine, request_for(tmp_path))

    (built,) = engine.did("remove_image")
    assert built not in engine.images
    assert engine.id_of("app:1.0") == previous


def test_runner_build_failure_moves_no_name(engine: FakeEngine, tmp_path: Path) -> None:
    engine.fail("build", "runner image", BuildError("The runner image build failed: boom"))

    with pytest.raises(BuildError):
        run(engine, request_for(tmp_path))

    assert "app:1.0" not in engine.tags
    assert engine.did("remove_container") == ["compile", "publish", "publish", "abi-check", "wheel-server"]


def test_interrupt_during_the_entrypoint_check_removes_the_new_image(engine: FakeEngine, tmp_path: Path) -> None:
    engine.fail("run", "check", KeyboardInterrupt())

    with pytest.raises(KeyboardInterrupt):
        run(engine, request_for(tmp_path))

    assert len(engine.did("remove_image")) == 1
    assert "app:1.0" not in engine.tags


def test_interrupt_while_the_wheel_server_starts_removes_it(engine: FakeEngine, tmp_path: Path) -> None:
    engine.fail("wait_until", "wheel-server", KeyboardInterrupt())

    with pytest.raises(KeyboardInterrupt):
        run(engine, request_for(tmp_path))

    assert engine.did("remove_container") == ["wheel-server"]
    assert engine.did("remove_image") == []


def test_a_gate_miss_ends_the_build_before_the_runner_and_removes_the_server(
    engine: FakeEngine, tmp_path: Path
) -> None:
    finding = {"wheel": "app-1.0-py3-none-any.whl", "file": "app/_x.so", "kind": "arch", "detail": "aarch64"}
    engine.outputs["abi-check"] = (0, [ABI_MARK + json.dumps({"findings": [finding], "checked": {"wheels": 3}})])

    with pytest.raises(BuildError) as raised:
        run(engine, request_for(tmp_path))

    assert raised.value.exit_code == 5
    assert engine.did("create_container") == ["wheel-server", "publish", "publish", "compile", "abi-check"]
    assert ("remove_container", "wheel-server") in engine.calls
    assert "runner image" not in engine.did("build")
    assert "app:1.0" not in engine.tags


def test_a_fully_cached_runner_that_fails_its_check_keeps_the_earlier_image(engine: FakeEngine, tmp_path: Path) -> None:
    run(engine, request_for(tmp_path))
    earlier = engine.id_of("app:1.0")
    engine.outputs["check"] = (1, [])
    original_build = engine.build

    def same_image(*args: object, **kwargs: object) -> str:
        original_build(*args, **kwargs)  # type: ignore[arg-type]
        return str(earlier)

    engine.build = same_image  # type: ignore[method-assign]

    with pytest.raises(BuildError):
        run(engine, request_for(tmp_path, refresh=True))

    assert engine.did("remove_image") == []
    assert engine.id_of("app:1.0") == earlier


def test_engine_error_while_cleaning_up_never_hides_the_first_error(engine: FakeEngine, tmp_path: Path) -> None:
    engine.outputs["check"] = (1, [])

    def broken(image_id: str) -> str | None:
        raise EngineError("The Docker engine failed to remove image: boom.")

    engine.try_remove_image = broken  # type: ignore[method-assign]

    with pytest.raises(BuildError, match="entrypoint"):
        run(engine, request_for(tmp_path))


def test_no_registry_anywhere_pushes_nothing_and_says_so(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="grocker"):
        result = run(engine, request_for(tmp_path))

    assert engine.did("push") == []
    assert result.hash is None
    said = [record.getMessage() for record in caplog.records if "not pushing" in record.getMessage()]
    assert said == [
        "not pushing app:1.0: neither its name nor an image prefix names a registry "
        "(give -n REGISTRY/NAME:TAG or --image-prefix REGISTRY to push)"
    ]


def test_push_phase_alone_with_no_registry_anywhere_says_so(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine.add_image("app:1.0")
    request = request_for(tmp_path, build_dependencies=False, build_image=False)

    with caplog.at_level(logging.INFO, logger="grocker"):
        result = run(engine, request)

    assert not request.push
    assert engine.calls == []
    assert result.hash is None
    assert "not pushing app:1.0: neither its name nor an image prefix names a registry" in caplog.text


@pytest.mark.parametrize("phases", [{}, {"build_dependencies": False, "build_image": False}])
def test_explicit_push_with_no_registry_anywhere_is_a_config_error(tmp_path: Path, phases: dict[str, bool]) -> None:
    with pytest.raises(ConfigError) as caught:
        request_for(tmp_path, push=True, **phases)  # type: ignore[arg-type]

    assert caught.value.exit_code == 3
    assert caught.value.message == (
        "--push failed because neither the image name app:1.0 nor an image prefix names a registry to push to. "
        "Give the image a name under a registry (-n REGISTRY/NAME:TAG), or a prefix (--image-prefix REGISTRY, "
        "or docker_image_prefix in the configuration), or drop --push."
    )


@pytest.mark.parametrize(
    ("prefix", "name", "options", "expected"),
    [
        (None, "app:1.0", {}, False),
        (None, "localhost:5000/app:1.0", {}, True),
        (PREFIX, "app:1.0", {}, True),
        (None, "localhost:5000/app:1.0", {"build_dependencies": False, "build_image": False}, True),
        (PREFIX, "app:1.0", {"build_dependencies": False, "build_image": False}, True),
        (None, "localhost:5000/app:1.0", {"build_dependencies": False}, True),
        # A dependencies-only run pushes only when asked.
        (PREFIX, "app:1.0", {"build_image": False}, False),
        (PREFIX, f"{PREFIX}/app:1.0", {"push": False}, False),
        (PREFIX, "app:1.0", {"build_image": False, "push": True}, True),
    ],
)
def test_push_is_on_by_default_wherever_a_registry_is_named(
    tmp_path: Path, prefix: str | None, name: str, options: dict[str, bool], expected: bool
) -> None:
    assert request_for(tmp_path, prefix=prefix, name=name, **options).push is expected  # type: ignore[arg-type]


def test_push_phase_alone_pushes_to_the_named_registry_by_default(engine: FakeEngine, tmp_path: Path) -> None:
    name = "localhost:5000/app:1.0"
    engine.add_image(name)
    request = request_for(tmp_path, name=name, build_dependencies=False, build_image=False)

    result = run(engine, request)

    assert engine.did("push") == [name]
    assert result.hash == "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def test_push_phase_alone_sends_the_internal_images_to_the_prefix_whatever_the_final_name(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run(engine, request_for(tmp_path, prefix=PREFIX, push=False))
    engine.calls.clear()
    request = request_for(tmp_path, prefix=PREFIX, build_dependencies=False, build_image=False)
    names = names_of(request)

    with caplog.at_level(logging.INFO, logger="grocker"):
        result = run(engine, request)

    assert request.push
    assert engine.did("push") == [names.root, names.compiler, names.wheel_server]
    assert result.hash is None
    assert "not pushing app:1.0: its name has no registry or namespace" in caplog.text
    assert "the internal images went to the prefix's registry" in caplog.text


def test_full_build_sends_the_internal_images_to_the_prefix_when_the_final_name_has_no_registry(
    engine: FakeEngine, tmp_path: Path
) -> None:
    request = request_for(tmp_path, prefix=PREFIX, name="app:1.0")
    names = names_of(request)

    result = run(engine, request)

    assert engine.did("push") == [names.root, names.compiler, names.wheel_server]
    assert engine.id_of("app:1.0") is not None
    assert result.hash is None


def test_internal_images_missing_here_are_not_pushed(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"{PREFIX}/app:1.0"
    engine.add_image(name)
    request = request_for(tmp_path, prefix=PREFIX, name=name, build_dependencies=False, build_image=False)

    with caplog.at_level(logging.INFO, logger="grocker"):
        run(engine, request)

    assert engine.did("push") == [name]
    assert f"not pushing the root image {names_of(request).root}: it is not on this engine" in caplog.text


def test_push_sends_internal_images_then_the_final_one(engine: FakeEngine, tmp_path: Path) -> None:
    name = f"{PREFIX}/app:1.0"
    request = request_for(tmp_path, prefix=PREFIX, name=name)
    names = names_of(request)

    result = run(engine, request)

    assert request.push
    assert engine.did("push") == [names.root, names.compiler, names.wheel_server, name]
    assert result.hash is not None
    assert result.hash.startswith("sha256:")


def test_push_without_prefix_sends_only_the_final_image(engine: FakeEngine, tmp_path: Path) -> None:
    name = "localhost:5000/app:1.0"

    result = run(engine, request_for(tmp_path, name=name))

    assert engine.did("push") == [name]
    assert result.hash


def test_push_phase_alone_needs_the_image(engine: FakeEngine, tmp_path: Path) -> None:
    request = request_for(
        tmp_path, name="localhost:5000/app:1.0", build_dependencies=False, build_image=False, push=True
    )

    with pytest.raises(PushError, match=r"no image localhost:5000/app:1.0 on the engine"):
        run(engine, request)
    assert engine.calls == []


def test_push_phase_alone_pushes_the_existing_image(engine: FakeEngine, tmp_path: Path) -> None:
    engine.add_image("localhost:5000/app:1.0")
    request = request_for(
        tmp_path, name="localhost:5000/app:1.0", build_dependencies=False, build_image=False, push=True
    )

    result = run(engine, request)

    assert engine.calls == [("push", "localhost:5000/app:1.0")]
    assert result.root_image is None


def test_push_failure_propagates(engine: FakeEngine, tmp_path: Path) -> None:
    name = "localhost:5000/app:1.0"
    engine.fail("push", name, PushError("The push of localhost:5000/app:1.0 failed: denied."))

    with pytest.raises(PushError):
        run(engine, request_for(tmp_path, name=name))
    assert engine.id_of(name) is not None  # the built image stays, the push can be retried


def test_result_file_is_written(engine: FakeEngine, tmp_path: Path) -> None:
    result_file = tmp_path / "out" / "result.yml"

    run(engine, request_for(tmp_path, result_file=result_file))

    written = yaml.safe_load(result_file.read_text())
    assert list(written) == sorted(written)
    assert written["image"] == "app:1.0"
    assert written["root_image"].startswith("grocker-trixie-3.13-root:")
    assert "hash" not in written


@pytest.mark.parametrize("podman", [False, True], ids=["docker", "podman"])
def test_runner_build_reaches_the_wheel_server_on_a_network_of_its_own(
    engine: FakeEngine, tmp_path: Path, podman: bool
) -> None:
    engine.build_network_dns = not podman

    run(engine, request_for(tmp_path))

    (network,) = engine.did("create_network")
    assert engine.did("remove_network") == [network]
    built_on, hosts = engine.build_networks["runner image"]
    assert built_on == network
    # Docker's builds resolve the wheel server's alias through the network's DNS; Podman's need /etc/hosts.
    assert hosts == ({"grocker-wheels": "172.17.0.9"} if podman else None)
    assert engine.build_networks["root image"] == (None, None)


def test_interrupt_during_the_runner_build_removes_its_network(engine: FakeEngine, tmp_path: Path) -> None:
    engine.fail("build", "runner image", KeyboardInterrupt())

    with pytest.raises(KeyboardInterrupt):
        run(engine, request_for(tmp_path))

    assert engine.did("remove_network") == engine.did("create_network") != []


def test_entrypoint_importing_pkg_resources_says_the_runner_has_no_setuptools(
    engine: FakeEngine, tmp_path: Path
) -> None:
    # The check's script says which setuptools the image has: none (null).
    engine.outputs["check"] = (0, ["starting", MISSING_MODULE_MARK + '"pkg_resources"', SETUPTOOLS_MARK + "null"])

    with pytest.raises(BuildError) as raised:
        run(engine, request_for(tmp_path))

    message = str(raised.value)
    assert raised.value.exit_code == 5
    assert "entrypoint 'grocker-runner' cannot start: importing it fails with \"No module named 'pkg_resources'\"" in (
        message
    )
    assert "The runner image has no setuptools and no pip" in message
    assert "Declare setuptools as a dependency of the application app" in message
    assert "with a version before 82, the first without pkg_resources (`setuptools<82`)" in message
    assert "bug" not in message
    # As for a missing entrypoint: the new image goes, no name points at it.
    assert len(engine.did("remove_image")) == 1
    assert "app:1.0" not in engine.tags


def test_entrypoint_importing_a_missing_module_names_it(engine: FakeEngine, tmp_path: Path) -> None:
    engine.outputs["check"] = (0, [MISSING_MODULE_MARK + '"yaml"'])

    with pytest.raises(BuildError, match=r"No module named 'yaml'.*Declare the one that does as a dependency"):
        run(engine, request_for(tmp_path))


def test_entrypoint_check_keeps_a_hostile_module_name_out_of_its_message(engine: FakeEngine, tmp_path: Path) -> None:
    engine.outputs["check"] = (0, [MISSING_MODULE_MARK + json.dumps("x'\nrm -rf /" + "a" * 500)])

    with pytest.raises(BuildError, match=r"No module named '\?'") as raised:
        run(engine, request_for(tmp_path))
    assert "rm -rf" not in str(raised.value)


def test_entrypoint_check_that_cannot_run_shows_its_output(engine: FakeEngine, tmp_path: Path) -> None:
    engine.outputs["check"] = (2, ["Traceback (most recent call last):", "SyntaxError: broken metadata"])

    with pytest.raises(BuildError, match=r"could not look up the command's entry point \(status 2\)") as raised:
        run(engine, request_for(tmp_path))
    assert "broken metadata" in raised.value.details


def _console_script(folder: Path, module_text: str) -> None:
    """An installed distribution in `folder` whose console script `fake-cmd` runs fakemod:main."""
    info = folder / "fakeapp-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeapp\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[console_scripts]\nfake-cmd = fakemod:main\n")
    (folder / "fakemod.py").write_text(module_text)


@pytest.mark.parametrize(
    ("module_text", "command", "printed"),
    [
        ("import pkg_resources_of_nobody.sub\ndef main(): pass\n", "fake-cmd", '"pkg_resources_of_nobody"'),
        ("import os\ndef main(): pass\n", "fake-cmd", None),
        ("raise RuntimeError('needs its configuration')\n", "fake-cmd", None),
        ("import sys\nsys.exit(3)\n", "fake-cmd", None),
        ("import no_such_module\n", "not-a-console-script", None),
    ],
    ids=["missing", "fine", "other-error", "exits", "not-a-script"],
)
def test_entrypoint_import_check_reports_only_a_missing_module(
    tmp_path: Path, module_text: str, command: str, printed: str | None
) -> None:
    """The check's script, run by this Python (3.8 or later in images) on a real installed distribution."""
    _console_script(tmp_path, module_text)

    completed = subprocess.run(
        [sys.executable, "-c", runner._IMPORT_CHECK, command],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    marks = [line[len(MISSING_MODULE_MARK) :] for line in completed.stdout.splitlines() if MISSING_MODULE_MARK in line]
    assert marks == ([printed] if printed else [])


def test_the_runner_records_the_gate_it_passed_and_the_next_build_skips_it(engine: FakeEngine, tmp_path: Path) -> None:
    run(engine, request_for(tmp_path))
    image = engine.image("app:1.0")
    assert image is not None
    assert re.fullmatch(r"[0-9a-f]{64}", image.labels[ABI_CHECKED_LABEL])
    engine.calls.clear()

    run(engine, request_for(tmp_path, refresh=True))

    assert "abi-check" not in engine.did("create_container")


@pytest.fixture
def in_background(engine: FakeEngine) -> None:
    """The wheel server starts in its own thread, as it does on an engine that takes parallel calls."""
    engine.parallel = True


@pytest.mark.usefixtures("in_background")
def test_the_wheel_server_starts_in_the_background_while_the_wheels_compile(engine: FakeEngine, tmp_path: Path) -> None:
    result = run(engine, request_for(tmp_path))

    assert result.image_id == engine.id_of("app:1.0")
    assert sorted(engine.did("create_container")) == [
        "abi-check",
        "check",
        "compile",
        "publish",
        "publish",
        "wheel-server",
    ]
    assert allowed(engine) == sorted(["pip-25.0-py3-none-any.whl", SIX, APP])
    allowing = max(index for index, call in enumerate(engine.calls) if call == ("put_files", "wheel-server"))
    assert engine.calls.index(("run", "publish")) < allowing < engine.calls.index(("build", "runner image"))


@pytest.mark.usefixtures("in_background")
def test_the_resolve_starts_before_the_containers_of_the_background(engine: FakeEngine, tmp_path: Path) -> None:
    # The build waits for the resolve, not for them: on 2 cores, starting them together delayed
    # the resolve's container by 0.2 to 0.4 s.
    engine.outputs["compile"] = (0, ["Looking in links: /tmp/grocker-candidates", report_line()])

    run(engine, request_for(tmp_path))

    resolving = engine.calls.index(("run", "compile"))
    assert resolving < engine.calls.index(("create_container", "wheel-server"))
    assert resolving < engine.calls.index(("start", "publish"))


@pytest.mark.usefixtures("in_background")
def test_a_failure_before_the_resolve_does_not_keep_the_background_waiting(
    engine: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(background, "TURN_TIMEOUT", 30.0)
    engine.build_failures["compiler image"] = BuildError("The compiler image build failed: boom")
    started = time.monotonic()

    with pytest.raises(BuildError, match="boom"):
        run(engine, request_for(tmp_path))

    # The wheel server's start, waiting for a resolve that never came, went on at once and was removed.
    assert time.monotonic() - started < 10
    assert "compile" not in engine.did("create_container")


@pytest.mark.usefixtures("in_background")
def test_a_compile_failure_removes_the_server_started_in_the_background(engine: FakeEngine, tmp_path: Path) -> None:
    engine.outputs["compile"] = (1, ["ERROR: No matching distribution found for app==1.0"])

    with pytest.raises(BuildError, match=r"pip found no distribution"):
        run(engine, request_for(tmp_path))

    # run() also checks that no container outlived the build.
    assert sorted(engine.did("remove_container")) == ["compile", "publish", "publish", "wheel-server"]
    assert "app:1.0" not in engine.tags


@pytest.mark.usefixtures("in_background")
def test_a_wheel_server_that_cannot_start_fails_the_build_before_the_runner(engine: FakeEngine, tmp_path: Path) -> None:
    engine.fail("start", "wheel-server", EngineError("The engine failed to start container grocker-wheels: boom"))

    with pytest.raises(EngineError, match="boom"):
        run(engine, request_for(tmp_path))

    assert "runner image" not in engine.did("build")
    assert "wheel-server" in engine.did("remove_container")
    assert "app:1.0" not in engine.tags


def test_a_root_image_without_python_is_named_when_no_gate_ran(engine: FakeEngine, tmp_path: Path) -> None:
    # A lock the gate has nothing to check in: the runner's first step is the first to need Python.
    engine.outputs["publish"] = (0, [publish_line(elf=False)])
    engine.build_lines["runner image"] = ["Step 6/9 : RUN ...", "/bin/sh: 1: python3: not found"]
    engine.build_failures["runner image"] = BuildError("The runner image build failed: returned a non-zero code: 127")

    with pytest.raises(BuildError) as raised:
        run(engine, request_for(tmp_path))

    assert "abi-check" not in engine.did("create_container")
    assert "could not run in the root image" in str(raised.value)
    assert "it has no python3. A runtime's root image must have its Python" in str(raised.value)
    assert "app:1.0" not in engine.tags


def test_an_engine_reached_over_ssh_gets_one_call_at_a_time(
    engine: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.parallel = False  # sshd limits the sessions of one connection (the fake's default too)
    calls: list[str] = []
    step = engine.step

    def record(operation: str, subject: str) -> None:
        calls.append(threading.current_thread().name)
        step(operation, subject)

    monkeypatch.setattr(engine, "step", record)

    run(engine, request_for(tmp_path))

    # Only the entrypoint check has a thread of its own (it ran so before): the wheel server and
    # the publisher's container start here, one call after another.
    assert {name for name in calls if not name.startswith("grocker-check")} == {"MainThread"}
    assert engine.did("create_container")[:4] == ["wheel-server", "publish", "publish", "compile"]
