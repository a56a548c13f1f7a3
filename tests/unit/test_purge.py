"""Purge against a fake engine: what each flag selects, what is never touched, what is kept."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pytest

from grocker import __version__, purge
from grocker.engine import connection as docker_engine
from grocker.engine.endpoint import Endpoint
from grocker.engine.protocol import NetworkInfo
from grocker.errors import EngineError
from grocker.purge import PurgeOptions, built_by_grocker
from tests.unit.conftest import CliRun
from tests.unit.fakes import START, FakePurgeEngine, grocker_labels, rfc3339

OLD, CURRENT, NEW = "6.3", __version__, "99.0"
NONE = PurgeOptions()
ALL = PurgeOptions(all_versions=True)
FINAL = PurgeOptions(including_final_images=True)
ALL_FINAL = PurgeOptions(all_versions=True, including_final_images=True)


@dataclass
class Population:
    """One Grocker build chain per version, with its build containers and volume."""

    engine: FakePurgeEngine
    ids: dict[str, str]

    def removed(self) -> set[str]:
        """The names of the objects that are gone."""
        alive = {*self.engine.images_, *self.engine.containers_, *self.engine.volumes_}
        return {name for name, ref in self.ids.items() if ref not in alive}


def population() -> Population:
    engine = FakePurgeEngine()
    ids: dict[str, str] = {}
    for key, version in (("old", OLD), ("cur", CURRENT), ("new", NEW)):
        root = ids[f"root-{key}"] = engine.grocker_image(version, "root", tags=[f"grocker-root:{version}"])
        compiler = ids[f"compiler-{key}"] = engine.grocker_image(version, "compiler", parent=root)
        ids[f"wheel-server-{key}"] = engine.grocker_image(version, "wheel-server", parent=root)
        runner = ids[f"runner-{key}"] = engine.grocker_image(version, "runner", parent=root, tags=[f"app:{key}"])
        compile_labels = grocker_labels(version, "compile")
        ids[f"compile-{key}"] = engine.container(compiler, labels=compile_labels)
        ids[f"check-{key}"] = engine.container(runner, labels=grocker_labels(version, "check"))
        ids[f"abi-check-{key}"] = engine.container(root, labels=grocker_labels(version, "abi-check"))
        # Someone ran the final image, and it exited.
        ids[f"run-{key}"] = engine.container(runner)
        ids[f"wheel-{key}"] = engine.volume(version)
        ids[f"abi-cache-{key}"] = engine.volume(version, role="abi-cache")
        ids[f"wheel-candidates-{key}"] = engine.volume(version, role="wheel-candidates")
    return Population(engine, ids)


def named(*keys: str, names: Sequence[str]) -> set[str]:
    return {f"{name}-{key}" for name in names for key in keys}


BUILD = ("compile", "check", "abi-check", "compiler", "wheel-server", "wheel", "wheel-candidates", "abi-cache")
EXPECTED = {
    # Older internal images; their root stays while the runner (not selected) is built on it.
    NONE: named("old", names=BUILD),
    ALL: named("old", "cur", "new", names=BUILD),
    FINAL: named("old", names=(*BUILD, "run", "runner", "root")),
    ALL_FINAL: named("old", "cur", "new", names=(*BUILD, "run", "runner", "root")),
}


@pytest.mark.parametrize("options", list(EXPECTED), ids=["none", "-a", "-f", "-a -f"])
def test_flags_select_versions_and_roles(options: PurgeOptions) -> None:
    chain = population()
    report = purge.purge(options, {}, engine=chain.engine)
    assert chain.removed() == EXPECTED[options]
    if options.including_final_images:
        assert report.kept == ()
    else:
        # The root of a version whose runner stays is reported, not fatal.
        versions = (OLD, CURRENT, NEW) if options.all_versions else (OLD,)
        assert {(item.kind, item.version, item.role) for item in report.kept} == {
            ("image", version, "root") for version in versions
        }
        assert {item.reason for item in report.kept} == {"image has dependent child images"}


def test_removes_containers_then_images_children_first_then_volumes() -> None:
    chain = population()
    purge.purge(ALL_FINAL, {}, engine=chain.engine)
    kinds = [kind for kind, _ref in chain.engine.calls]
    assert kinds == sorted(kinds, key=["container", "image", "volume"].index)
    order = [ref for kind, ref in chain.engine.calls if kind == "image"]
    for key in ("old", "cur", "new"):
        root = order.index(chain.ids[f"root-{key}"])
        for role in ("runner", "compiler", "wheel-server"):
            assert order.index(chain.ids[f"{role}-{key}"]) < root
    # Nothing was refused on the way, so nothing was tried twice.
    assert len(order) == len(set(order))


def test_an_image_refused_for_its_children_is_tried_again_once_they_are_gone() -> None:
    engine = FakePurgeEngine()
    root = engine.grocker_image(OLD, "root")
    compiler = engine.grocker_image(OLD, "compiler", parent=root)
    # An unusual chain: an image of the same rank built FROM the compiler, listed after it.
    server = engine.grocker_image(OLD, "wheel-server", parent=compiler)
    report = purge.purge(NONE, {}, engine=engine)
    assert engine.images_ == {}
    assert report.kept == ()
    assert [ref for _kind, ref in engine.calls] == [compiler, server, root, compiler, root]


def test_report_has_one_line_per_object() -> None:
    engine = FakePurgeEngine()
    root = engine.grocker_image(OLD, "root", tags=["grocker-trixie-3.13-root:6.3-abc", "mirror/root:6.3"])
    compiler = engine.grocker_image(OLD, "compiler", parent=root)
    volume = engine.volume(OLD)
    running = engine.container(root, status="running", volume=volume)
    report = purge.purge(NONE, {}, engine=engine)
    assert report.lines() == [
        f"removed image <untagged> [{compiler[7:19]}] (grocker 6.3, compiler)",
        f"in use, kept image grocker-trixie-3.13-root:6.3-abc, mirror/root:6.3 [{root[7:19]}] (grocker 6.3, root): "
        f"image is being used by running container {running[:12]}",
        f"in use, kept volume {volume} (grocker 6.3, wheel): volume is in use - [{running}]",
    ]


def test_names_read_as_the_user_gave_them_whatever_the_engine_lists() -> None:
    engine = FakePurgeEngine()
    # Podman qualifies short names; the Docker CLI hides the same prefixes.
    runner = engine.grocker_image(
        OLD, "runner", tags=["docker.io/library/app:6.3", "docker.io/someone/app:6.3", "localhost:5000/app:6.3"]
    )
    report = purge.purge(ALL_FINAL, {}, engine=engine)
    assert report.lines() == [
        f"removed image app:6.3, someone/app:6.3, localhost:5000/app:6.3 [{runner[7:19]}] (grocker 6.3, runner)"
    ]


def test_nothing_to_purge() -> None:
    assert purge.purge(ALL_FINAL, {}, engine=FakePurgeEngine()).lines() == ["nothing to purge"]


def test_dangling_images_go_too() -> None:
    engine = FakePurgeEngine()
    dangling = engine.grocker_image(OLD, "compiler")
    report = purge.purge(NONE, {}, engine=engine)
    assert dangling not in engine.images_
    assert [item.name for item in report.removed] == [f"<untagged> [{dangling[7:19]}]"]


@pytest.mark.parametrize("version", ["", "not-a-version", "6.x"])
def test_a_label_that_is_no_version_counts_as_older(version: str) -> None:
    engine = FakePurgeEngine()
    image = engine.grocker_image(version, "compiler")
    volume = engine.volume(version)
    purge.purge(NONE, {}, engine=engine)
    assert image not in engine.images_
    assert volume not in engine.volumes_


def test_current_and_newer_versions_are_kept_by_default() -> None:
    engine = FakePurgeEngine()
    kept = [engine.grocker_image(version, "compiler") for version in (CURRENT, NEW, "7.0.0")]
    kept += [engine.grocker_image(OLD, "runner")]
    report = purge.purge(NONE, {}, engine=engine)
    assert set(kept) <= set(engine.images_)
    assert report.lines() == ["nothing to purge"]


def test_running_containers_and_what_they_use_are_reported_not_fatal() -> None:
    engine = FakePurgeEngine()
    root = engine.grocker_image(OLD, "root")
    server = engine.grocker_image(OLD, "wheel-server", parent=root)
    volume = engine.volume(OLD)
    running = engine.container(server, status="running", labels={"grocker.image.role": "wheel-server"}, volume=volume)
    report = purge.purge(ALL_FINAL, {}, engine=engine)
    assert running in engine.containers_
    assert {server, root} <= set(engine.images_)
    assert volume in engine.volumes_
    assert [(item.kind, item.reason) for item in report.kept] == [
        ("container", "running"),
        ("image", f"image is being used by running container {running[:12]}"),
        ("image", "image has dependent child images"),
        ("volume", f"volume is in use - [{running}]"),
    ]
    assert report.removed == ()
    # A running container is never asked to go.
    assert ("container", running) not in engine.calls


def test_final_images_go_with_their_stopped_containers_only_with_f() -> None:
    engine = FakePurgeEngine()
    runner = engine.grocker_image(OLD, "runner", tags=["app:1"])
    stopped = engine.container(runner)
    purge.purge(NONE, {}, engine=engine)
    assert {runner, stopped} <= {*engine.images_, *engine.containers_}
    purge.purge(FINAL, {}, engine=engine)
    assert runner not in engine.images_
    assert stopped not in engine.containers_


def test_a_running_final_container_keeps_its_image() -> None:
    engine = FakePurgeEngine()
    runner = engine.grocker_image(OLD, "runner")
    running = engine.container(runner, status="running")
    report = purge.purge(FINAL, {}, engine=engine)
    assert runner in engine.images_
    assert running in engine.containers_
    assert [item.kind for item in report.kept] == ["container", "image"]


def test_containers_that_are_not_grocker_builds_are_left_alone() -> None:
    engine = FakePurgeEngine()
    root = engine.grocker_image(OLD, "root")
    # Someone ran the root image: not a build container, so it and its image stay.
    theirs = engine.container(root)
    report = purge.purge(ALL, {}, engine=engine)
    assert theirs in engine.containers_
    assert root in engine.images_
    assert report.kept[0].reason == f"image is being used by stopped container {theirs[:12]}"


@pytest.mark.parametrize("status", ["running", "paused", "restarting", "removing"])
def test_build_containers_in_use_are_kept(status: str) -> None:
    engine = FakePurgeEngine()
    compiler = engine.grocker_image(OLD, "compiler")
    busy = engine.container(compiler, status=status, labels={"grocker.image.role": "compile"})
    report = purge.purge(NONE, {}, engine=engine)
    assert busy in engine.containers_
    assert ("container", busy) not in engine.calls
    assert report.kept[0].reason == status


@pytest.mark.parametrize("status", ["created", "dead", "exited"])
@pytest.mark.parametrize("version", [OLD, CURRENT])
def test_build_containers_left_created_or_dead_are_removed(status: str, version: str) -> None:
    engine = FakePurgeEngine()
    compiler = engine.grocker_image(version, "compiler")
    left = engine.container(compiler, status=status, labels={"grocker.image.role": "compile"})
    report = purge.purge(ALL, {}, engine=engine)
    assert left not in engine.containers_
    assert compiler not in engine.images_
    assert [line.split(" (")[0] for line in report.lines()] == [
        "removed container ctr-1",
        f"removed image <untagged> [{compiler.removeprefix('sha256:')[:12]}]",
    ]


@pytest.mark.parametrize(("age", "said"), [(5.0, "created 5 s ago"), (None, "created at a time the engine")])
def test_a_young_created_build_container_may_be_a_running_build_s_and_is_kept(age: float | None, said: str) -> None:
    engine = FakePurgeEngine()
    compiler = engine.grocker_image(OLD, "compiler")
    young = engine.container(compiler, status="created", labels={"grocker.image.role": "compile"}, age=age)
    report = purge.purge(NONE, {}, engine=engine)
    assert young in engine.containers_
    assert ("container", young) not in engine.calls
    assert report.kept[0].kind == "container"
    assert report.kept[0].reason.startswith(said)
    assert report.kept[0].reason.endswith("a running build may be about to use it (purge again in a minute)")
    # The grace is a library option: with none, it goes.
    purge.purge(PurgeOptions(created_grace_seconds=0), {}, engine=engine)
    assert (young in engine.containers_) is (age is None)


def test_a_runner_container_created_by_its_user_is_theirs() -> None:
    engine = FakePurgeEngine()
    runner = engine.grocker_image(OLD, "runner", tags=["app:1"])
    theirs = engine.container(runner, status="created")
    report = purge.purge(ALL_FINAL, {}, engine=engine)
    assert theirs in engine.containers_
    assert runner in engine.images_
    assert [(item.kind, item.reason) for item in report.kept] == [
        ("container", "created"),
        ("image", f"image is being used by stopped container {theirs[:12]}"),
    ]
    assert report.untagged == ()


def test_with_f_a_runner_with_child_images_is_untagged_and_its_children_kept() -> None:
    engine = FakePurgeEngine()
    runner = engine.grocker_image(OLD, "runner", tags=["app:1", "registry.example/app:1"])
    theirs = derived(engine, runner, "run")
    stopped = engine.container(runner)

    report = purge.purge(FINAL, {}, engine=engine)

    assert stopped not in engine.containers_
    assert runner in engine.images_  # the engine keeps it for its child, nameless
    assert engine.images_[runner].info.tags == ()
    assert theirs in engine.images_
    assert ("untag", theirs) not in engine.calls
    assert report.kept == ()
    short = runner.removeprefix("sha256:")[:12]
    assert report.lines() == [
        f"removed container ctr-1 (grocker {OLD}, runner)",
        f"untagged image app:1, registry.example/app:1 [{short}] (grocker {OLD}, runner): "
        "other images are built FROM it and keep its layers",
    ]


def test_without_f_a_runner_with_child_images_keeps_its_names() -> None:
    engine = FakePurgeEngine()
    runner = engine.grocker_image(OLD, "runner", tags=["app:1"])
    derived(engine, runner, "run")
    report = purge.purge(ALL, {}, engine=engine)
    assert engine.images_[runner].info.tags == ("app:1",)
    assert report.untagged == report.kept == ()
    assert not [call for call in engine.calls if call[0] in ("untag", "image")]


def test_a_runner_with_child_images_and_a_running_container_is_kept_with_its_names() -> None:
    engine = FakePurgeEngine()
    runner = engine.grocker_image(OLD, "runner", tags=["app:1"])
    derived(engine, runner, "run")
    engine.container(runner, status="running")
    report = purge.purge(FINAL, {}, engine=engine)
    assert engine.images_[runner].info.tags == ("app:1",)
    assert ("untag", runner) not in engine.calls
    assert [item.kind for item in report.kept] == ["container", "image"]
    assert report.untagged == ()


def test_internal_images_with_child_images_are_not_untagged() -> None:
    engine = FakePurgeEngine()
    root = engine.grocker_image(OLD, "root", tags=["grocker-root:1"])
    derived(engine, root, "run")
    report = purge.purge(ALL_FINAL, {}, engine=engine)
    assert engine.images_[root].info.tags == ("grocker-root:1",)
    assert report.kept[0].reason == "image has dependent child images"


@pytest.mark.parametrize("options", [NONE, ALL, FINAL, ALL_FINAL])
@pytest.mark.parametrize("version", [OLD, CURRENT, NEW])
def test_build_networks_left_behind_go_with_every_purge(options: PurgeOptions, version: str) -> None:
    engine = FakePurgeEngine()
    left = engine.network(version)
    report = purge.purge(options, {}, engine=engine)
    assert left not in engine.networks_
    assert report.lines() == [f"removed network {left} (grocker {version}, network)"]


def test_a_build_network_in_use_or_young_is_kept_and_others_are_left_alone() -> None:
    engine = FakePurgeEngine()
    server = engine.grocker_image(OLD, "wheel-server")
    used = engine.network(OLD)
    serving = engine.container(server, status="running", labels={"grocker.image.role": "wheel-server"}, network=used)
    young = engine.network(OLD, age=3.0)
    engine.network(OLD, role="wheel")  # not a build network
    engine.networks_["theirs"] = NetworkInfo("theirs", {"grocker.version": OLD}, 3600.0)

    report = purge.purge(NONE, {}, engine=engine)

    assert set(engine.networks_) == {used, young, "theirs", "grocker-net-000000000002"}
    assert [(item.name, item.reason) for item in report.kept if item.kind == "network"] == [
        (used, f"network is in use by container {serving[:12]}"),
        (young, "created 3 s ago; a running build may be about to use it (purge again in a minute)"),
    ]
    assert ("network", young) not in engine.calls


def test_grocker_6_build_containers_are_found_by_their_image() -> None:
    # Grocker 6 gave its compile containers no role of their own: they carried the compiler's.
    engine = FakePurgeEngine()
    compiler = engine.grocker_image("6.4", "compiler")
    container = engine.container(compiler)
    purge.purge(NONE, {}, engine=engine)
    assert container not in engine.containers_
    assert compiler not in engine.images_


def derived(engine: FakePurgeEngine, base: str, how: str) -> str:
    """An image someone else built FROM a Grocker image, as a pulled image (no parent link)."""
    if how == "run":
        return engine.image({}, ["/bin/sh -c make install"], parent=base, label_steps=False)
    if how == "label":
        return engine.image({"maintainer": "me"}, [], parent=base)
    if how == "oci-label":
        # A key Grocker sets on runners: the derived image sets it a second time.
        return engine.image({"org.opencontainers.image.version": "2.0"}, [], parent=base)
    if how == "grocker-label":
        return engine.image({"grocker.version": "1.0"}, [], parent=base)
    if how == "buildkit-label":
        # BuildKit's --label records no step: only the image's creation time moves.
        return engine.image({"maintainer": "me"}, [], parent=base, label_steps=False)
    assert how == "commit"
    return engine.image({}, ["bash"], parent=base, label_steps=False)


@pytest.mark.parametrize("how", ["run", "label", "oci-label", "grocker-label", "buildkit-label", "commit"])
@pytest.mark.parametrize("role", ["runner", "root"])
def test_images_built_from_grocker_images_by_someone_else_are_never_removed(how: str, role: str) -> None:
    engine = FakePurgeEngine()
    base = engine.grocker_image(OLD, role, tags=["grocker-base:1"])
    theirs = derived(engine, base, how)
    engine.images_[theirs].parent = None  # pulled: the engine would not even protect it as a child
    purge.purge(ALL_FINAL, {}, engine=engine)
    assert theirs in engine.images_
    assert base not in engine.images_
    assert ("image", theirs) not in engine.calls


def test_an_oci_label_added_on_an_internal_image_marks_it_derived() -> None:
    engine = FakePurgeEngine()
    root = engine.grocker_image(OLD, "root")
    theirs = engine.image({"org.opencontainers.image.version": "2.0"}, [], parent=root)
    engine.images_[theirs].parent = None
    purge.purge(ALL, {}, engine=engine)
    assert theirs in engine.images_


def test_containers_of_derived_images_are_left_alone() -> None:
    engine = FakePurgeEngine()
    compiler = engine.grocker_image(OLD, "compiler")
    theirs = derived(engine, compiler, "run")
    container = engine.container(theirs)  # carries role compiler, inherited
    runner = engine.grocker_image(OLD, "runner")
    their_runner = derived(engine, runner, "run")
    runner_container = engine.container(their_runner)
    purge.purge(ALL_FINAL, {}, engine=engine)
    assert {container, runner_container} <= set(engine.containers_)


def steps(*created_by: str, when: int = START) -> list[tuple[int, str]]:
    return [(when, text) for text in created_by]


@pytest.mark.parametrize(
    "history",
    [
        steps("/bin/sh -c #(nop)  LABEL grocker.version=6.3", "/bin/sh -c #(nop)  LABEL grocker.image.role=root"),
        # Docker before 17.05 appended one LABEL with every build label, quoted.
        steps("/bin/sh -c #(nop)  LABEL \"grocker.image.role\"='root' \"grocker.version\"='6.3' "),
        # BuildKit.
        steps("LABEL grocker.version=6.3 grocker.image.role=root"),
    ],
)
def test_grocker_label_steps_on_top_are_grocker_images(history: list[tuple[int, str]]) -> None:
    labels = {"grocker.version": "6.3", "grocker.image.role": "root"}
    assert built_by_grocker(labels, rfc3339(START), [*history, *steps("/bin/sh -c apt-get install x")])


@pytest.mark.parametrize(
    ("created", "history"),
    [
        (rfc3339(START), []),
        ("yesterday", steps("LABEL grocker.version=6.3 grocker.image.role=root")),
        (rfc3339(START + 1), steps("LABEL grocker.version=6.3 grocker.image.role=root")),
        # Labels set earlier in a Dockerfile, then something else on top.
        (rfc3339(START), steps("/bin/sh -c true", "LABEL grocker.version=6.3 grocker.image.role=root")),
        (rfc3339(START), steps("LABEL grocker.version=6.3", "/bin/sh -c true")),
        (rfc3339(START), steps("/bin/sh -c echo LABEL grocker.version=1 grocker.image.role=root")),
        (rfc3339(START), steps("LABEL grocker.version=6.3 grocker.image.role=root grocker.version=6.4")),
    ],
    ids=["no-history", "bad-time", "changed-after", "label-then-run", "no-role", "run-echo", "twice"],
)
def test_anything_else_is_not_a_grocker_image(created: str, history: list[tuple[int, str]]) -> None:
    assert not built_by_grocker({"grocker.version": "6.3", "grocker.image.role": "root"}, created, history)


def test_an_image_gone_meanwhile_is_skipped() -> None:
    engine = FakePurgeEngine()
    image = engine.grocker_image(OLD, "compiler")
    listed = engine.images("grocker.version")
    engine.images = lambda label: listed  # type: ignore[method-assign]
    del engine.images_[image]
    assert purge.purge(NONE, {}, engine=engine).lines() == ["nothing to purge"]


def test_purge_connects_to_the_engine_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Endpoint] = []
    fake = FakePurgeEngine()

    def connect(endpoint: Endpoint) -> FakePurgeEngine:
        seen.append(endpoint)
        return fake

    monkeypatch.setattr(docker_engine, "connect", connect)
    purge.purge(NONE, {"DOCKER_HOST": "tcp://engine:2375"})
    assert seen == [Endpoint("tcp://engine:2375", "DOCKER_HOST")]


def test_engine_errors_are_fatal() -> None:
    engine = FakePurgeEngine()
    engine.grocker_image(OLD, "compiler")

    def broken(image_id: str) -> str | None:
        raise EngineError("The Docker engine at unix:///x failed to remove image: boom.")

    engine.try_remove_image = broken  # type: ignore[method-assign]
    with pytest.raises(EngineError):
        purge.purge(NONE, {}, engine=engine)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], NONE),
        (["-a"], ALL),
        (["--all-versions", "--only-old-versions"], NONE),
        (["-f"], FINAL),
        (["--including-final-images"], FINAL),
        (["-a", "-f"], ALL_FINAL),
        (["--all-versions", "--including-final-images", "--excluding-final-images"], ALL),
    ],
)
def test_cli_flags(
    monkeypatch: pytest.MonkeyPatch, grocker: Callable[..., CliRun], args: list[str], expected: PurgeOptions
) -> None:
    received: list[PurgeOptions] = []

    def fake_purge(options: PurgeOptions, env: Mapping[str, str]) -> purge.PurgeReport:
        received.append(options)
        return purge.PurgeReport()

    monkeypatch.setattr(purge, "purge", fake_purge)
    result = grocker("purge", *args)
    assert result.exit_code == 0, result.stderr
    assert received == [expected]
    assert result.stdout == "nothing to purge\n"


def test_cli_prints_the_report_and_exits_0_when_things_are_in_use(
    monkeypatch: pytest.MonkeyPatch, grocker: Callable[..., CliRun]
) -> None:
    engine = FakePurgeEngine()
    root = engine.grocker_image(OLD, "root")
    engine.container(root, status="running")
    monkeypatch.setattr(docker_engine, "connect", lambda env: engine)
    result = grocker("purge", "-a", "-f")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("in use, kept image <untagged>")


def test_cli_exits_4_on_engine_errors(monkeypatch: pytest.MonkeyPatch, grocker: Callable[..., CliRun]) -> None:
    def unreachable(env: Mapping[str, str]) -> FakePurgeEngine:
        raise EngineError("Grocker cannot reach the Docker engine at unix:///nowhere.sock.")

    monkeypatch.setattr(docker_engine, "connect", unreachable)
    result = grocker("purge")
    assert result.exit_code == 4
    assert result.stdout == ""


def test_left_behind_outbox_volumes_go_whatever_their_version() -> None:
    engine = FakePurgeEngine()
    current = engine.volume(CURRENT, role="outbox")
    newer = engine.volume(NEW, role="outbox")
    wheels = engine.volume(CURRENT)
    in_use = engine.volume(CURRENT, role="outbox")
    compiler = engine.grocker_image(CURRENT, "compiler")
    engine.container(compiler, status="running", labels=grocker_labels(CURRENT, "build-sdist"), volume=in_use)

    report = purge.purge(NONE, {}, engine=engine)

    assert set(engine.volumes_) == {wheels, in_use}
    assert {item.name for item in report.removed} == {current, newer}
    assert [(item.name, item.role) for item in report.kept if item.kind == "volume"] == [(in_use, "outbox")]


def test_the_build_steps_images_the_containerd_store_keeps_go_with_their_image() -> None:
    engine = FakePurgeEngine()
    root = engine.grocker_image("6.0", "root", tags=("root:6.0",))
    compiler = engine.grocker_image("6.0", "compiler", parent=root)
    # Untagged, unlabelled step images (not listed by label), the newest first, then the root.
    steps = [engine.image({}, ["/bin/sh -c #(nop)  LABEL a=b"], label_steps=False) for _ in range(2)]
    engine.intermediates[compiler] = [*steps, root]
    theirs = engine.image({}, ["/bin/sh -c echo mine"], label_steps=False, tags=("someone/app:1",))
    engine.intermediates[theirs] = []

    report = purge.purge(NONE, {}, engine=engine)

    assert set(engine.images_) == {theirs}
    assert [line for line in report.lines() if line.startswith("removed image")] == [
        f"removed image <untagged> [{compiler[7:19]}] (grocker 6.0, compiler)",
        f"removed image root:6.0 [{root[7:19]}] (grocker 6.0, root)",
    ]
    # The root is removed once, as Grocker's image, not as an intermediate of the compiler.
    assert engine.calls.count(("image", root)) == 1


def test_an_intermediate_the_engine_keeps_stops_the_walk() -> None:
    engine = FakePurgeEngine()
    root = engine.grocker_image("6.0", "root", tags=("root:6.0",))
    compiler = engine.grocker_image("6.0", "compiler", parent=root)
    shared = engine.image({}, ["/bin/sh -c #(nop)  LABEL a=b"], label_steps=False)
    below = engine.image({}, ["/bin/sh -c #(nop)  LABEL c=d"], label_steps=False)
    engine.container(shared)  # someone's container keeps the step image, and so what is below it
    engine.intermediates[compiler] = [shared, below]

    purge.purge(NONE, {}, engine=engine)

    assert compiler not in engine.images_
    assert {shared, below} <= set(engine.images_)
    assert ("image", below) not in engine.calls


def test_an_untagged_digest_pinned_base_image_is_never_removed() -> None:
    """Issue 20: a base pulled by digest has no name, and the walk down the steps took it for a step image."""
    engine = FakePurgeEngine()
    base = engine.image({}, ['/bin/sh -c #(nop)  CMD ["bash"]'], label_steps=False)  # debian@sha256:..., no tag
    root = engine.image({**grocker_labels("6.0", "root"), "grocker.base.id": base}, ["/bin/sh -c provision"])
    steps = [engine.image({}, ["/bin/sh -c #(nop)  LABEL a=b"], label_steps=False) for _ in range(2)]
    engine.intermediates[root] = [*steps, base]

    report = purge.purge(NONE, {}, engine=engine)

    assert root not in engine.images_
    assert not set(steps) & set(engine.images_)
    assert base in engine.images_
    assert ("image", base) not in engine.calls
    assert [item.role for item in report.removed] == ["root"]


def test_a_minimal_base_goes_like_the_other_internal_images_after_its_runners() -> None:
    engine = FakePurgeEngine()
    root = engine.grocker_image(OLD, "root")
    # FROM scratch with the root image's files: no parent, but its minimal runners are its children.
    base = engine.grocker_image(OLD, "minimal-base")
    runner = engine.grocker_image(OLD, "runner", parent=base, tags=["app:minimal"])

    kept = purge.purge(NONE, {}, engine=engine)

    # Without -f the runner stays, so its base does, reported; root, which nothing is built FROM, goes.
    assert [(item.role, item.reason) for item in kept.kept] == [("minimal-base", "image has dependent child images")]
    assert set(engine.images_) == {base, runner}
    assert root not in engine.images_

    engine.calls.clear()
    removed = purge.purge(FINAL, {}, engine=engine)

    assert removed.kept == ()
    assert engine.images_ == {}
    order = [ref for kind, ref in engine.calls if kind == "image"]
    assert order.index(runner) < len(order) - 1 - order[::-1].index(base)
