"""The engine-wide mutex, on docker-py's low-level client faked behind the engine's door."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from grocker.engine import mutex
from grocker.engine.docker import DockerEngine
from grocker.errors import EngineError
from grocker.labels import MUTEX_OWNER_LABEL
from tests.unit.api_fakes import FakeLowLevelApi, api_error

KEY = "grocker-app-3.13-root:7.0.0"


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mutex, "POLL_SECONDS", 0.0)


def _engine(api: FakeLowLevelApi) -> DockerEngine:
    return DockerEngine(SimpleNamespace(api=api), "the Docker engine at unix:///var/run/docker.sock")


def test_the_mutex_is_a_running_container_removed_on_release() -> None:
    api = FakeLowLevelApi()
    waits: list[str] = []

    with _engine(api).mutex(KEY, "debian:trixie", {"grocker.version": "7"}, lambda: waits.append("wait")):
        (holder,) = api.containers_by_id.values()
        assert holder.name == mutex.mutex_name(KEY)
        assert holder.state == "running"
        assert holder.auto_remove  # goes by itself when its holder dies, however it dies
        assert holder.labels[MUTEX_OWNER_LABEL]

    assert api.containers_by_id == {}
    assert waits == []


def test_a_held_mutex_is_waited_for_then_taken() -> None:
    api = FakeLowLevelApi()
    other = api.add(mutex.mutex_name(KEY), {MUTEX_OWNER_LABEL: "another build"})
    turns = 0

    def on_wait() -> None:
        nonlocal turns
        turns += 1

    original = api.create_container

    def create_container(*args: object, **kwargs: object) -> dict[str, str]:
        # The other build releases the mutex after this one's second try.
        if sum(call == ("create_container", other.name) for call in api.calls) == 2:
            api.stdin_closed(other.id)
            del api.containers_by_id[other.id]
        return original(*args, **kwargs)  # type: ignore[arg-type]

    api.create_container = create_container  # type: ignore[method-assign]
    with _engine(api).mutex(KEY, "debian:trixie", {}, on_wait):
        (holder,) = api.containers_by_id.values()
        assert holder.labels[MUTEX_OWNER_LABEL] != "another build"

    assert turns == 1  # said once, however long the wait


@pytest.mark.parametrize("state", ["exited", "dead"])
def test_a_mutex_that_outlived_its_holder_is_cleared(state: str) -> None:
    api = FakeLowLevelApi()
    api.add(mutex.mutex_name(KEY), {MUTEX_OWNER_LABEL: "a dead build"}, state=state)

    with _engine(api).mutex(KEY, "debian:trixie", {}, lambda: None):
        (holder,) = api.containers_by_id.values()
        assert holder.labels[MUTEX_OWNER_LABEL] != "a dead build"


def test_a_mutex_never_started_is_cleared_only_once_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeLowLevelApi()
    stale = api.add(mutex.mutex_name(KEY), {MUTEX_OWNER_LABEL: "a build that died"}, state="created")
    seen: dict[str, float] = {}

    assert mutex.clear_stale(api, stale.name, seen) is False  # type: ignore[arg-type]
    assert stale.id in api.containers_by_id
    monkeypatch.setattr(mutex, "STALE_SECONDS", -1.0)
    assert mutex.clear_stale(api, stale.name, seen) is True  # type: ignore[arg-type]
    assert api.containers_by_id == {}


def test_a_running_mutex_of_a_live_holder_is_never_cleared() -> None:
    api = FakeLowLevelApi()
    live = api.add(mutex.mutex_name(KEY), {MUTEX_OWNER_LABEL: "a live build"}, state="running")

    assert mutex.clear_stale(api, live.name, {}) is False  # type: ignore[arg-type]
    assert live.id in api.containers_by_id


def test_the_holder_does_not_remove_a_mutex_someone_else_took_meanwhile() -> None:
    api = FakeLowLevelApi()
    engine = _engine(api)

    with engine.mutex(KEY, "debian:trixie", {}, lambda: None):
        (mine,) = list(api.containers_by_id.values())
        # Its container went (removed by hand), and another build took the mutex.
        del api.containers_by_id[mine.id]
        theirs = api.add(mutex.mutex_name(KEY), {MUTEX_OWNER_LABEL: "the next build"})

    assert list(api.containers_by_id) == [theirs.id]


def test_an_engine_refusing_the_mutex_for_another_reason_is_an_engine_error() -> None:
    api = FakeLowLevelApi(failing={"create_container": api_error(500, "no space left on device")})

    with pytest.raises(EngineError) as raised, _engine(api).mutex(KEY, "debian:trixie", {}, lambda: None):
        pass

    assert raised.value.exit_code == 4
    assert "no space left on device" in str(raised.value)


def test_a_mutex_whose_start_fails_is_removed_and_reported() -> None:
    api = FakeLowLevelApi(no_cat={"scratch-like"})

    with pytest.raises(EngineError), _engine(api).mutex(KEY, "scratch-like", {}, lambda: None):
        pass

    assert api.containers_by_id == {}
