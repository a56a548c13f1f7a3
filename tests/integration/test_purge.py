"""`grocker purge` through the real CLI, on a private engine this module starts.

Purge removes every Grocker object of the engine it is pointed at, so it never runs against the
shared engine (other tests and other people build real Grocker images there): a second dockerd
with its own data and exec roots and a bridge of its own gets a copy of debian:trixie, and
labelled images, containers and volumes made here; it is stopped and its bridge and folders
deleted at the end.

Never `--bridge=none`: a dockerd started that way deletes the host's docker0 bridge, which cuts
the shared engine's containers off.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest

from grocker import __version__, api
from grocker.purge import PurgeOptions
from tests.integration.conftest import ENGINE_HOSTS, MatrixEngine
from tests.integration.engines import start_engine
from tests.integration.helpers import output_of

BASE = "debian:trixie"
OLD, OLDER, OLDEST, CURRENT, NEW = "6.3", "6.2", "6.1", __version__, "99.0"


@dataclass
class PurgeTarget:
    """An engine purge may empty, reachable at `host`: a private dockerd or an engine of the matrix."""

    host: str
    client: docker.DockerClient
    # Docker with overlay2 refuses to remove an image other images are built FROM; Podman
    # removes it, and its children keep its layers and still work.
    keeps_parents: bool = True


@pytest.fixture(scope="module")
def private_engine(engine: MatrixEngine, docker_client: docker.DockerClient) -> Iterator[PurgeTarget]:
    """An engine purge may empty: a private dockerd beside the shared one, or an engine of the matrix.

    The matrix's extra engines (scripts/start-engines.sh) belong to the test run, so purge runs
    on them directly; on the shared engine, a second dockerd in a temporary folder, with a copy of
    debian:trixie, is started, then stopped and deleted after.
    """
    host = ENGINE_HOSTS[engine.name]
    if host is not None:
        yield PurgeTarget(
            host,
            engine.client,
            keeps_parents=not (engine.is_podman or engine.name.endswith("-containerd")),
        )
        return
    if os.geteuid() != 0:
        pytest.fail("purge's integration tests start a private dockerd: they need root")
    private = start_engine()
    try:
        private.load(BASE)
        yield PurgeTarget(private.env["DOCKER_HOST"], private.client())
    finally:
        private.stop()


@dataclass
class Population:
    """Objects made on the private engine, by name."""

    engine: PurgeTarget
    images: dict[str, str] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)
    containers: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, str] = field(default_factory=dict)

    @property
    def api(self) -> docker.APIClient:
        return self.engine.client.api

    def build(
        self,
        name: str,
        dockerfile: str,
        *,
        labels: Mapping[str, str] | None = None,
        tags: tuple[str, ...] = (),
    ) -> str:
        """Build from a Dockerfile with build labels, as Grocker does; tag it with `tags`."""
        image_id = None
        stream = self.api.build(
            fileobj=io.BytesIO(dockerfile.encode()), labels=dict(labels or {}), rm=True, forcerm=True, decode=True
        )
        for chunk in stream:
            assert "error" not in chunk, chunk
            if isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
        assert image_id, f"building {name} gave no image"
        for tag in tags:
            repository, _, version = tag.rpartition(":")
            self.api.tag(image_id, repository, version)
        self.images[name] = image_id
        self.tags[name] = list(tags)
        return image_id

    def grocker_image(self, name: str, version: str, role: str, base: str = BASE, tags: tuple[str, ...] = ()) -> str:
        """An image with Grocker's labels given to the build, FROM `base` (a name of this population or an image)."""
        parent = self.images.get(base, base)
        labels = {
            "grocker.version": version,
            "grocker.image.role": role,
            "grocker.runtime": "trixie/3.13",
            "org.opencontainers.image.base.name": BASE,
        }
        if role == "runner":
            labels |= {"grocker.app.name": "app", "org.opencontainers.image.title": "app"}
        # Every image gets a step of its own, so that the builder's cache never merges two of them.
        return self.build(name, f"FROM {parent}\nENV GROCKER_TEST_NAME={name}\n", labels=labels, tags=tags)

    def container(self, name: str, image: str, *, labels: Mapping[str, str] | None = None, run: bool = True) -> str:
        """A container of an image of this population that ran and exited."""
        created = self.api.create_container(
            self.images[image], command=["true"], labels=dict(labels or {}), host_config=self.api.create_host_config()
        )
        if run:
            self.api.start(created["Id"])
            assert self.api.wait(created["Id"])["StatusCode"] == 0
        self.containers[name] = created["Id"]
        return str(created["Id"])

    def volume(self, name: str, labels: Mapping[str, str]) -> str:
        self.api.create_volume(name=name, labels=dict(labels))
        self.volumes[name] = name
        return name

    def remaining(self) -> set[str]:
        """The names of this population's objects still on the engine."""
        alive = {i["Id"] for i in self.api.images(all=True)}
        alive |= {c["Id"] for c in self.api.containers(all=True)}
        alive |= {v["Name"] for v in self.api.volumes().get("Volumes") or []}
        return {
            name
            for group in (self.images, self.containers, self.volumes)
            for name, ref in group.items()
            if ref in alive
        }

    def all_names(self) -> set[str]:
        return {*self.images, *self.containers, *self.volumes}


def _wipe(engine: PurgeTarget) -> None:
    """Back to an engine that holds only the Debian base images."""
    api = engine.client.api
    for container in api.containers(all=True):
        api.remove_container(container["Id"], force=True)
    for volume in api.volumes().get("Volumes") or []:
        api.remove_volume(volume["Name"], force=True)
    for network in api.networks(filters={"label": "grocker.version"}):
        api.remove_network(network["Id"])
    bases = {image["Id"] for image in api.images() if {BASE, "debian:bookworm"} & _names(image)}
    # Children first: passes until only the bases are left (an image with children cannot go).
    for _attempt in range(10):
        # all=True: the containerd image store lists the build steps' images only then, and a
        # parent cannot go before them.
        images = [image["Id"] for image in api.images(all=True) if image["Id"] not in bases]
        if not images:
            return
        for image in images:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_image(image, force=True)
    pytest.fail(f"could not empty the private engine: {api.images()}")


def _names(image: Mapping[str, object]) -> set[str]:
    """An image's names; Podman's carry a `localhost/`, `docker.io/library/` or `docker.io/` prefix."""
    names = set()
    for tag in image.get("RepoTags") or []:  # type: ignore[attr-defined]
        short = tag.removeprefix("localhost/").removeprefix("docker.io/library/").removeprefix("docker.io/")
        names |= {tag, short}
    return names


@pytest.fixture
def population(private_engine: PurgeTarget) -> Population:
    """Grocker chains of an older, the current and a newer version, and what is not Grocker's."""
    _wipe(private_engine)
    made = Population(private_engine)
    # 6.3, older: a whole chain, its running wheel server, and an image someone built FROM its runner.
    made.grocker_image("root-old", OLD, "root", tags=("grocker-test-root:6.3",))
    made.grocker_image(
        "compiler-old", OLD, "compiler", "root-old", tags=("grocker-test-compiler:6.3", "mirror/compiler:6.3")
    )
    made.grocker_image("wheel-server-old", OLD, "wheel-server", "root-old", tags=("grocker-test-ws:6.3",))
    made.grocker_image("runner-old", OLD, "runner", "root-old", tags=("app:6.3",))
    made.grocker_image("dangling-old", OLD, "compiler", "root-old")
    made.container("compile-old", "compiler-old", labels={"grocker.version": OLD, "grocker.image.role": "compile"})
    made.container("run-old", "runner-old")
    made.volume("wheel-old", {"grocker.version": OLD, "grocker.image.role": "wheel"})
    serving = made.api.create_container(
        made.images["wheel-server-old"],
        command=["sleep", "infinity"],
        labels={"grocker.version": OLD, "grocker.image.role": "wheel-server"},
        host_config=made.api.create_host_config(binds={"wheel-old": {"bind": "/wheels", "mode": "ro"}}),
    )
    made.api.start(serving["Id"])
    made.containers["serving-old"] = serving["Id"]
    made.build("theirs-run", f"FROM {made.images['runner-old']}\nRUN echo mine > /mine\n", tags=("someone/app:1",))
    made.container("theirs-run-container", "theirs-run")
    # 6.2, older: labelled by a LABEL line of the Dockerfile, the way a 2018 engine recorded build
    # labels; a Grocker 6 compile container (no labels of its own); a root someone ran by hand.
    made.build(
        "root-older",
        "FROM debian:trixie\nENV GROCKER_TEST_NAME=root-older\n"
        "LABEL \"grocker.image.role\"='root' \"grocker.version\"='6.2'\n",
        tags=("grocker-test-root:6.2", "mirror/root:6.2"),
    )
    made.grocker_image("compiler-older", OLDER, "compiler", "root-older")
    made.container("compile-older", "compiler-older")
    made.container("theirs-root-run", "root-older")
    made.volume("wheel-older", {"grocker.version": OLDER, "grocker.image.role": "wheel"})
    made.volume("wheel-bad", {"grocker.version": "unknown", "grocker.image.role": "wheel"})
    # 6.1, older: a root that lost its name. The engine lists an untagged image only once it has no
    # children, and prunes it with its last child: it goes, though no line names it.
    made.grocker_image("root-oldest", OLDEST, "root")
    made.grocker_image("compiler-oldest", OLDEST, "compiler", "root-oldest", tags=("grocker-test-compiler:6.1",))
    # The current version.
    made.grocker_image("root-cur", CURRENT, "root", tags=("grocker-test-root:cur",))
    made.grocker_image("compiler-cur", CURRENT, "compiler", "root-cur")
    made.grocker_image("wheel-server-cur", CURRENT, "wheel-server", "root-cur")
    made.grocker_image("runner-cur", CURRENT, "runner", "root-cur", tags=("app:cur", "registry.example/app:cur"))
    made.container("compile-cur", "compiler-cur", labels={"grocker.version": CURRENT, "grocker.image.role": "compile"})
    made.container("run-cur", "runner-cur")
    made.volume("wheel-cur", {"grocker.version": CURRENT, "grocker.image.role": "wheel"})
    # A newer version, with an image someone labelled on top of its runner.
    made.grocker_image("root-new", NEW, "root", tags=("grocker-test-root:99.0",))
    made.grocker_image("compiler-new", NEW, "compiler", "root-new")
    made.grocker_image("runner-new", NEW, "runner", "root-new", tags=("app:99.0",))
    made.container("compile-new", "compiler-new", labels={"grocker.version": NEW, "grocker.image.role": "compile"})
    made.build("theirs-label", f"FROM {made.images['runner-new']}\nLABEL maintainer=someone\n", tags=("someone/l:1",))
    made.volume("wheel-new", {"grocker.version": NEW, "grocker.image.role": "wheel"})
    # Not Grocker's at all.
    made.build("plain", "FROM debian:trixie\nENV PLAIN=1\n", labels={"maintainer": "x"}, tags=("someone/plain:1",))
    made.images["debian"] = made.api.inspect_image(BASE)["Id"]
    made.volume("someone-data", {})
    return made


def run_purge(engine: PurgeTarget, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m grocker purge ARGS` against the private engine."""
    return subprocess.run(
        [sys.executable, "-m", "grocker", "purge", *args],
        env={**os.environ, "DOCKER_HOST": engine.host},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


UNLISTED = {"root-oldest"}
OLD_BUILD = UNLISTED | {
    "compiler-oldest",
    "compile-old",
    "compiler-old",
    "dangling-old",
    "compile-older",
    "compiler-older",
    "wheel-older",
    "wheel-bad",
}
ALL_BUILD = OLD_BUILD | {"compile-cur", "compiler-cur", "wheel-server-cur", "wheel-cur"}
ALL_BUILD |= {"compile-new", "compiler-new", "wheel-new"}
# Reported, kept: the running wheel server, its image and volume, root-old under its runner, and
# root-older, which the container someone ran from it holds.
IN_USE = {"serving-old", "wheel-server-old", "wheel-old", "root-old", "root-older"}
# Kept only for their children where the engine refuses to remove a parent image.
PARENTS = {"root-old", "root-cur", "root-new", "runner-old", "runner-new"}
SCENARIOS = {
    "none": ((), OLD_BUILD, IN_USE, set()),
    "-a": (("-a",), ALL_BUILD, IN_USE | {"root-cur", "root-new"}, set()),
    # runner-old has a child someone else built FROM it: -f untags it, as `docker rmi app:6.3` does.
    "-f": (("-f",), OLD_BUILD | {"run-old"}, IN_USE, {"runner-old"}),
    "-a -f": (
        ("-a", "-f"),
        ALL_BUILD | {"run-old", "run-cur", "runner-cur", "root-cur"},
        IN_USE | {"root-new"},
        {"runner-old", "runner-new"},
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_purge_removes_exactly_what_the_flags_select(population: Population, scenario: str) -> None:
    args, removed, kept, untagged = SCENARIOS[scenario]
    if not population.engine.keeps_parents:
        removed = removed | ((kept | untagged) & PARENTS)
        kept, untagged = kept - PARENTS, untagged - PARENTS
    result = run_purge(population.engine, *args)
    assert result.returncode == 0, result.stderr
    assert population.remaining() == population.all_names() - removed, result.stdout
    lines = result.stdout.splitlines()
    assert len([line for line in lines if line.startswith("removed ")]) == len(removed - UNLISTED), result.stdout
    assert len([line for line in lines if line.startswith("untagged ")]) == len(untagged), result.stdout
    kept_lines = [line for line in lines if line.startswith("in use, kept ")]
    assert len(kept_lines) == len(kept), result.stdout
    assert [line for line in kept_lines if line.startswith("in use, kept container ")] == [
        f"in use, kept container {population.api.inspect_container(population.containers['serving-old'])['Name'][1:]} "
        f"(grocker {OLD}, wheel-server): running"
    ]
    # Names go with the images removed by ID; an image kept keeps all of them.
    tags = {name for image in population.api.images() for name in _names(image)}
    for name in ("compiler-old", "runner-cur", "runner-old", "runner-new"):
        if name in removed | untagged:
            assert not tags & set(population.tags[name])
    assert {"grocker-test-root:6.2", "mirror/root:6.2"} <= tags
    assert {"someone/app:1", "someone/l:1", "someone/plain:1", BASE} <= tags


def test_purge_twice_finds_nothing_more(population: Population) -> None:
    first = run_purge(population.engine, "-a", "-f")
    second = run_purge(population.engine, "-a", "-f")
    assert first.returncode == second.returncode == 0
    assert not [line for line in second.stdout.splitlines() if line.startswith("removed ")], second.stdout


def test_purge_exits_4_when_the_engine_does_not_answer(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grocker", "purge"],
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 4, result.stderr
    assert "cannot reach the Docker engine" in result.stderr
    assert result.stdout == ""


def test_f_untags_a_runner_others_built_from_and_leftover_build_objects_go(private_engine: PurgeTarget) -> None:
    """Issue 13 item 7 and issue 12: what an interrupted build and a user's derived image leave."""
    _wipe(private_engine)
    made = Population(private_engine)
    made.grocker_image("runner-old", OLD, "runner", tags=("app:6.3",))
    made.build("theirs", f"FROM {made.images['runner-old']}\nRUN echo mine > /mine\n", tags=("someone/app:1",))
    made.grocker_image("compiler-old", OLD, "compiler")
    # A build container created and never started (the build died first), and the build's network.
    made.container(
        "compile-created",
        "compiler-old",
        labels={"grocker.version": OLD, "grocker.image.role": "compile"},
        run=False,
    )
    network = f"grocker-net-{uuid.uuid4().hex[:12]}"
    made.api.create_network(
        network, driver="bridge", internal=True, labels={"grocker.version": CURRENT, "grocker.image.role": "network"}
    )

    # Through the CLI: the container and the network are too young to be a dead build's.
    first = run_purge(private_engine, "-f")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    tags = {name for image in made.api.images() for name in _names(image)}
    assert "app:6.3" not in tags
    assert "someone/app:1" in tags
    verb = "untagged" if private_engine.keeps_parents else "removed"
    assert [line.split(" [")[0] for line in lines if "app:6.3" in line] == [f"{verb} image app:6.3"], first.stdout
    if private_engine.keeps_parents:
        assert f"(grocker {OLD}, runner): other images are built FROM it and keep its layers" in first.stdout
    # The child keeps the layers it shares with the runner.
    output = output_of(made.engine.client, "someone/app:1", ["cat", "/mine"])
    assert output == b"mine\n"
    assert "compile-created" in made.remaining()
    assert network in {n["Name"] for n in made.api.networks()}
    # Kept: the young container and network, and the compiler image the container holds.
    kept = [line for line in lines if line.startswith("in use, kept ")]
    assert [line.split(" ")[3] for line in kept] == ["container", "image", "network"], first.stdout
    young = [line for line in kept if "a running build may be about to use it (purge again in a minute)" in line]
    assert [line.split(" ")[3] for line in young] == ["container", "network"], first.stdout
    assert f"in use, kept network {network} (grocker {CURRENT}, network): created " in first.stdout

    # Through the library, with no grace: both go, and are reported.
    report = api.purge(
        PurgeOptions(including_final_images=True, created_grace_seconds=0), {"DOCKER_HOST": private_engine.host}
    )
    assert report.kept == ()
    assert "compile-created" not in made.remaining()
    assert "compiler-old" not in made.remaining()
    assert network not in {n["Name"] for n in made.api.networks()}
    assert f"removed network {network} (grocker {CURRENT}, network)" in report.lines()
    assert output_of(made.engine.client, "someone/app:1", ["cat", "/mine"]) == b"mine\n"
