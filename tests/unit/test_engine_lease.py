"""A command's lease, and the sweep that removes what lost commands left, on a faked low-level client."""

from __future__ import annotations

from types import SimpleNamespace

from grocker.engine.docker import DockerEngine
from grocker.labels import LEASE, LEASE_LABEL, ROLE_LABEL
from tests.unit.api_fakes import FakeLowLevelApi


def _engine(api: FakeLowLevelApi) -> DockerEngine:
    return DockerEngine(SimpleNamespace(api=api), "the Docker engine at unix:///var/run/docker.sock")


def _lease_containers(api: FakeLowLevelApi) -> list[str]:
    return [c.state for c in api.containers_by_id.values() if c.labels.get(ROLE_LABEL) == LEASE]


def test_a_lease_runs_while_the_command_holds_containers_and_networks() -> None:
    api = FakeLowLevelApi()
    engine = _engine(api)

    with engine.network({"grocker.image.role": "network"}) as network:
        # A network has no image to start the lease from: it is labelled, and the lease starts
        # with the first container.
        assert api.networks_by_name[network]["Labels"][LEASE_LABEL] == engine.lease.id
        assert _lease_containers(api) == []
        with (
            engine.container("root:1", role="wheel-server", labels={}) as server,
            engine.container("root:1", role="compile", labels={}) as compile_,
        ):
            assert _lease_containers(api) == ["running"]  # one lease for all of them
            for made in (server, compile_):
                assert api.containers_by_id[made.id].labels[LEASE_LABEL] == engine.lease.id
        assert _lease_containers(api) == ["running"]  # the network still holds it

    assert api.containers_by_id == {}
    assert api.networks_by_name == {}


def test_a_lease_ends_with_the_last_object_and_starts_again_with_the_next() -> None:
    api = FakeLowLevelApi()
    engine = _engine(api)

    with engine.container("root:1", role="check", labels={}):
        pass
    assert api.containers_by_id == {}
    with engine.container("root:1", role="sbom", labels={}) as sbom:
        assert _lease_containers(api) == ["running"]
        assert api.containers_by_id[sbom.id].labels[LEASE_LABEL] == engine.lease.id
    assert api.containers_by_id == {}


def test_an_image_without_cat_leaves_the_objects_unleased() -> None:
    api = FakeLowLevelApi(no_cat={"distroless:1"})
    engine = _engine(api)

    with engine.container("distroless:1", role="check", labels={"grocker.version": "7"}) as check:
        labels = api.containers_by_id[check.id].labels
        assert labels == {"grocker.version": "7"}  # no lease label: never swept as a lost command's
        assert _lease_containers(api) == []

    assert api.containers_by_id == {}


def _lost_and_live(api: FakeLowLevelApi) -> None:
    """A lost build's server, network and compile; a live build's lease, server and network."""
    api.add("grocker-wheel-server-lost", {LEASE_LABEL: "lost"}, state="running", age=5)
    api.add("grocker-compile-lost", {LEASE_LABEL: "lost"}, state="exited", age=5)
    api.add_network("grocker-net-lost", {LEASE_LABEL: "lost"}, age=5)
    api.add("grocker-lease-live", {LEASE_LABEL: "live", ROLE_LABEL: LEASE}, state="running", age=600)
    api.add("grocker-wheel-server-live", {LEASE_LABEL: "live"}, state="running", age=600)
    api.add_network("grocker-net-live", {LEASE_LABEL: "live"}, age=600)


def test_the_sweep_removes_a_lost_command_s_objects_never_a_live_one_s() -> None:
    api = FakeLowLevelApi()
    _lost_and_live(api)

    removed = _engine(api).sweep()

    assert sorted(removed) == [
        "container grocker-compile-lost",
        "container grocker-wheel-server-lost",
        "network grocker-net-lost",
    ]
    assert sorted(c.name for c in api.containers_by_id.values()) == [
        "grocker-lease-live",
        "grocker-wheel-server-live",
    ]
    assert list(api.networks_by_name) == ["grocker-net-live"]


def test_the_sweep_keeps_a_young_network_whose_command_may_be_starting_its_lease() -> None:
    api = FakeLowLevelApi()
    api.add_network("grocker-net-new", {LEASE_LABEL: "starting"}, age=3)
    api.add_network("grocker-net-old", {LEASE_LABEL: "never-started"}, age=600)

    assert _engine(api).sweep() == ["network grocker-net-old"]
    assert list(api.networks_by_name) == ["grocker-net-new"]


def test_the_sweep_keeps_a_lease_about_to_start_and_removes_one_never_started() -> None:
    api = FakeLowLevelApi()
    api.add("grocker-lease-starting", {LEASE_LABEL: "a", ROLE_LABEL: LEASE}, state="created", age=1)
    api.add("grocker-lease-abandoned", {LEASE_LABEL: "b", ROLE_LABEL: LEASE}, state="created", age=600)

    assert _engine(api).sweep() == ["container grocker-lease-abandoned"]
    assert [c.name for c in api.containers_by_id.values()] == ["grocker-lease-starting"]


def test_the_sweep_lists_two_things_when_nothing_is_leased() -> None:
    api = FakeLowLevelApi()

    assert _engine(api).sweep() == []
    assert [method for method, _ in api.calls] == ["containers", "networks"]


def test_a_command_s_own_objects_survive_another_command_s_sweep() -> None:
    api = FakeLowLevelApi()
    building, other = _engine(api), _engine(api)

    with building.network({}), building.container("root:1", role="wheel-server", labels={}):
        assert other.sweep() == []
        assert len(api.containers_by_id) == 2
    assert api.containers_by_id == {}


def test_without_leases_nothing_is_labelled_nor_attached() -> None:
    # Over ssh: an attached stdin is one more ssh session for the whole command.
    api = FakeLowLevelApi()
    engine = DockerEngine(SimpleNamespace(api=api), "the Docker engine at ssh://builder@host", leases=False)

    with engine.network({}) as network, engine.container("root:1", role="wheel-server", labels={}) as server:
        assert LEASE_LABEL not in api.networks_by_name[network]["Labels"]
        assert LEASE_LABEL not in api.containers_by_id[server.id].labels
        assert _lease_containers(api) == []
    assert ("attach_socket", server.id) not in api.calls
