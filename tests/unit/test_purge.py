"""Purge against a fake engine: what each flag selects, what is never touched, what is kept."""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner

from grocker import __version__, cli, purge
from grocker.engine import ContainerInfo, ImageInfo, VolumeInfo
from grocker.errors import EngineError
from grocker.purge import PurgeOptions, built_by_grocker

OLD, CURRENT, NEW = "6.3", __version__, "99.0"
NONE = PurgeOptions()
ALL = PurgeOptions(all_versions=True)
FINAL = PurgeOptions(including_final_images=True)
ALL_FINAL = PurgeOptions(all_versions=True, including_final_images=True)
START = int(datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc).timestamp())
# What `docker import` of a Debian root file system records as its only step.
BASE_STEPS = [(START, "/bin/sh -c #(nop) ADD file:0123abcd in / ")]


def rfc3339(epoch: int) -> str:
    """The engine's image creation time: nanoseconds and Z."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + ".123456789Z"


def classic_label_steps(labels: Mapping[str, str], when: int) -> list[tuple[int, str]]:
    """The steps the classic builder appends for build labels: one LABEL step per label."""
    return [(when, f"/bin/sh -c #(nop)  LABEL {key}={value}") for key, value in labels.items()]


def grocker_labels(version: str, role: str) -> dict[str, str]:
    """The labels Grocker 7 gives an image of this role (naming.internal_labels, runner_labels)."""
    labels = {
        "grocker.version": version,
        "grocker.image.role": role,
        "grocker.runtime": "trixie/3.13",
        "grocker.config.hash": "0" * 64,
        "org.opencontainers.image.base.name": "debian:trixie",
    }
    if role == "runner":
        labels.update(
            {
                "grocker.app.name": "app",
                "grocker.app.extras": "",
                "grocker.app.version": "1.0",
                "org.opencontainers.image.title": "app",
                "org.opencontainers.image.version": "1.0",
                "org.opencontainers.image.created": "2026-01-02T00:00:00Z",
            }
        )
    return labels


@dataclass
class FakeImage:
    info: ImageInfo
    created: int
    steps: list[tuple[int, str]]  # oldest first
    parent: str | None = None


@dataclass
class FakeEngine:
    """The engine operations purge uses, with the engine's refusals (never forced)."""

    images_: dict[str, FakeImage] = field(default_factory=dict)
    containers_: dict[str, ContainerInfo] = field(default_factory=dict)
    volumes_: dict[str, VolumeInfo] = field(default_factory=dict)
    mounts: dict[str, str] = field(default_factory=dict)  # container id -> volume name
    calls: list[tuple[str, str]] = field(default_factory=list)
    clock: itertools.count[int] = field(default_factory=lambda: itertools.count(START + 60, 60))

    # Making objects

    def image(
        self,
        labels: Mapping[str, str],
        steps: Sequence[str],
        *,
        parent: str | None = None,
        tags: Sequence[str] = (),
        label_steps: bool = True,
    ) -> str:
        """Build an image FROM `parent` (or the base) with Dockerfile `steps`, then the build labels."""
        when = next(self.clock)
        base = self.images_[parent] if parent else None
        history = list(base.steps if base else BASE_STEPS) + [(when, step) for step in steps]
        if label_steps:
            history += classic_label_steps(labels, when)
        image_id = f"sha256:{len(self.images_) + 1:064x}"
        inherited = dict(base.info.labels) if base else {}
        info = ImageInfo(image_id, tuple(tags), {**inherited, **labels}, 1000)
        self.images_[image_id] = FakeImage(info, when, history, parent)
        return image_id

    def grocker_image(self, version: str, role: str, *, parent: str | None = None, tags: Sequence[str] = ()) -> str:
        """An image as Grocker builds it."""
        steps = ["/bin/sh -c sh /tmp/grocker/provision.sh", '/bin/sh -c #(nop)  ENTRYPOINT ["app"]']
        return self.image(grocker_labels(version, role), steps, parent=parent, tags=tags)

    def container(
        self, image_id: str, *, status: str = "exited", labels: Mapping[str, str] | None = None, volume: str = ""
    ) -> str:
        """A container of the image: its labels are the image's, plus `labels`."""
        container_id = f"c{len(self.containers_) + 1:063x}"
        merged = {**self.images_[image_id].info.labels, **(labels or {})}
        self.containers_[container_id] = ContainerInfo(
            container_id, f"ctr-{len(self.containers_) + 1}", status, image_id, merged
        )
        if volume:
            self.mounts[container_id] = volume
        return container_id

    def volume(self, version: str, role: str = "wheel") -> str:
        """A wheel volume of that Grocker version."""
        name = f"grocker-wheel-cache-{version}-trixie-3.13-{len(self.volumes_)}"
        self.volumes_[name] = VolumeInfo(name, {"grocker.version": version, "grocker.image.role": role})
        return name

    # What purge calls

    def containers(self, label: str) -> list[ContainerInfo]:
        return [c for c in self.containers_.values() if label in c.labels]

    def images(self, label: str) -> list[ImageInfo]:
        return [i.info for i in self.images_.values() if label in i.info.labels]

    def volumes(self, label: str) -> list[VolumeInfo]:
        return [v for v in self.volumes_.values() if label in v.labels]

    def image_history(self, image_id: str) -> tuple[str, list[tuple[int, str]]] | None:
        image = self.images_.get(image_id)
        return None if image is None else (rfc3339(image.created), list(reversed(image.steps)))

    def try_remove_container(self, container_id: str) -> str | None:
        self.calls.append(("container", container_id))
        if self.containers_[container_id].status == "running":
            return f"You cannot remove a running container {container_id}."
        del self.containers_[container_id]
        self.mounts.pop(container_id, None)
        return None

    def try_remove_image(self, image_id: str) -> str | None:
        self.calls.append(("image", image_id))
        if any(image.parent == image_id for image in self.images_.values()):
            return "image has dependent child images"
        for container in self.containers_.values():
            if container.image_id == image_id:
                state = "running" if container.status == "running" else "stopped"
                return f"image is being used by {state} container {container.id[:12]}"
        del self.images_[image_id]
        return None

    def try_remove_volume(self, name: str) -> str | None:
        self.calls.append(("volume", name))
        users = [cid for cid, volume in self.mounts.items() if volume == name]
        if users:
            return f"volume is in use - [{users[0]}]"
        del self.volumes_[name]
        return None


@dataclass
class Population:
    """One Grocker build chain per version, with its build containers and volume."""

    engine: FakeEngine
    ids: dict[str, str]

    def removed(self) -> set[str]:
        """The names of the objects that are gone."""
        alive = {*self.engine.images_, *self.engine.containers_, *self.engine.volumes_}
        return {name for name, ref in self.ids.items() if ref not in alive}


def population() -> Population:
    engine = FakeEngine()
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
    return Population(engine, ids)


def named(*keys: str, names: Sequence[str]) -> set[str]:
    return {f"{name}-{key}" for name in names for key in keys}


BUILD = ("compile", "check", "abi-check", "compiler", "wheel-server", "wheel", "abi-cache")
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
    engine = FakeEngine()
    root = engine.grocker_image(OLD, "root")
    compiler = engine.grocker_image(OLD, "compiler", parent=root)
    # An unusual chain: an image of the same rank built FROM the compiler, listed after it.
    server = engine.grocker_image(OLD, "wheel-server", parent=compiler)
    report = purge.purge(NONE, {}, engine=engine)
    assert engine.images_ == {}
    assert report.kept == ()
    assert [ref for _kind, ref in engine.calls] == [compiler, server, root, compiler, root]


def test_report_has_one_line_per_object() -> None:
    engine = FakeEngine()
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


def test_nothing_to_purge() -> None:
    assert purge.purge(ALL_FINAL, {}, engine=FakeEngine()).lines() == ["nothing to purge"]


def test_dangling_images_go_too() -> None:
    engine = FakeEngine()
    dangling = engine.grocker_image(OLD, "compiler")
    report = purge.purge(NONE, {}, engine=engine)
    assert dangling not in engine.images_
    assert [item.name for item in report.removed] == [f"<untagged> [{dangling[7:19]}]"]


@pytest.mark.parametrize("version", ["", "not-a-version", "6.x"])
def test_a_label_that_is_no_version_counts_as_older(version: str) -> None:
    engine = FakeEngine()
    image = engine.grocker_image(version, "compiler")
    volume = engine.volume(version)
    purge.purge(NONE, {}, engine=engine)
    assert image not in engine.images_
    assert volume not in engine.volumes_


def test_current_and_newer_versions_are_kept_by_default() -> None:
    engine = FakeEngine()
    kept = [engine.grocker_image(version, "compiler") for version in (CURRENT, NEW, "7.0.0")]
    kept += [engine.grocker_image(OLD, "runner")]
    report = purge.purge(NONE, {}, engine=engine)
    assert set(kept) <= set(engine.images_)
    assert report.lines() == ["nothing to purge"]


def test_running_containers_and_what_they_use_are_reported_not_fatal() -> None:
    engine = FakeEngine()
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
    engine = FakeEngine()
    runner = engine.grocker_image(OLD, "runner", tags=["app:1"])
    stopped = engine.container(runner)
    purge.purge(NONE, {}, engine=engine)
    assert {runner, stopped} <= {*engine.images_, *engine.containers_}
    purge.purge(FINAL, {}, engine=engine)
    assert runner not in engine.images_
    assert stopped not in engine.containers_


def test_a_running_final_container_keeps_its_image() -> None:
    engine = FakeEngine()
    runner = engine.grocker_image(OLD, "runner")
    running = engine.container(runner, status="running")
    report = purge.purge(FINAL, {}, engine=engine)
    assert runner in engine.images_
    assert running in engine.containers_
    assert [item.kind for item in report.kept] == ["container", "image"]


def test_containers_that_are_not_grocker_builds_are_left_alone() -> None:
    engine = FakeEngine()
    root = engine.grocker_image(OLD, "root")
    # Someone ran the root image: not a build container, so it and its image stay.
    theirs = engine.container(root)
    report = purge.purge(ALL, {}, engine=engine)
    assert theirs in engine.containers_
    assert root in engine.images_
    assert report.kept[0].reason == f"image is being used by stopped container {theirs[:12]}"


def test_containers_that_are_not_exited_are_kept() -> None:
    engine = FakeEngine()
    compiler = engine.grocker_image(OLD, "compiler")
    created = engine.container(compiler, status="created", labels={"grocker.image.role": "compile"})
    report = purge.purge(NONE, {}, engine=engine)
    assert created in engine.containers_
    assert report.kept[0].reason == "created"


def test_grocker_6_build_containers_are_found_by_their_image() -> None:
    # Grocker 6 gave its compile containers no role of their own: they carried the compiler's.
    engine = FakeEngine()
    compiler = engine.grocker_image("6.4", "compiler")
    container = engine.container(compiler)
    purge.purge(NONE, {}, engine=engine)
    assert container not in engine.containers_
    assert compiler not in engine.images_


def derived(engine: FakeEngine, base: str, how: str) -> str:
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
    engine = FakeEngine()
    base = engine.grocker_image(OLD, role, tags=["grocker-base:1"])
    theirs = derived(engine, base, how)
    engine.images_[theirs].parent = None  # pulled: the engine would not even protect it as a child
    purge.purge(ALL_FINAL, {}, engine=engine)
    assert theirs in engine.images_
    assert base not in engine.images_
    assert ("image", theirs) not in engine.calls


def test_an_oci_label_added_on_an_internal_image_marks_it_derived() -> None:
    engine = FakeEngine()
    root = engine.grocker_image(OLD, "root")
    theirs = engine.image({"org.opencontainers.image.version": "2.0"}, [], parent=root)
    engine.images_[theirs].parent = None
    purge.purge(ALL, {}, engine=engine)
    assert theirs in engine.images_


def test_containers_of_derived_images_are_left_alone() -> None:
    engine = FakeEngine()
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
    engine = FakeEngine()
    image = engine.grocker_image(OLD, "compiler")
    listed = engine.images("grocker.version")
    engine.images = lambda label: listed  # type: ignore[method-assign]
    del engine.images_[image]
    assert purge.purge(NONE, {}, engine=engine).lines() == ["nothing to purge"]


def test_purge_connects_to_the_engine_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Mapping[str, str]] = []
    fake = FakeEngine()

    def connect(env: Mapping[str, str]) -> FakeEngine:
        seen.append(env)
        return fake

    monkeypatch.setattr(purge, "connect", connect)
    purge.purge(NONE, {"DOCKER_HOST": "tcp://engine:2375"})
    assert seen == [{"DOCKER_HOST": "tcp://engine:2375"}]


def test_engine_errors_are_fatal() -> None:
    engine = FakeEngine()
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
def test_cli_flags(monkeypatch: pytest.MonkeyPatch, args: list[str], expected: PurgeOptions) -> None:
    received: list[PurgeOptions] = []

    def fake_purge(options: PurgeOptions, env: Mapping[str, str]) -> purge.PurgeReport:
        received.append(options)
        return purge.PurgeReport()

    monkeypatch.setattr(purge, "purge", fake_purge)
    result = CliRunner().invoke(cli.main, ["purge", *args])
    assert result.exit_code == 0, result.output
    assert received == [expected]
    assert result.stdout == "nothing to purge\n"


def test_cli_prints_the_report_and_exits_0_when_things_are_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = FakeEngine()
    root = engine.grocker_image(OLD, "root")
    engine.container(root, status="running")
    monkeypatch.setattr(purge, "connect", lambda env: engine)
    result = CliRunner().invoke(cli.main, ["purge", "-a", "-f"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("in use, kept image <untagged>")


def test_cli_exits_4_on_engine_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(env: Mapping[str, str]) -> FakeEngine:
        raise EngineError("Grocker cannot reach the Docker engine at unix:///nowhere.sock.")

    monkeypatch.setattr(purge, "connect", unreachable)
    result = CliRunner().invoke(cli.main, ["purge"])
    assert result.exit_code == 4
    assert result.stdout == ""
