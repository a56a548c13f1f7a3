"""The compile script's own logic (grocker/compile.py), on a temporary folder as the volume.

pip itself is not run here: the integration tests run the script in a real compiler container.
"""

from __future__ import annotations

import fcntl
import json
import sys
from pathlib import Path

import pytest

from grocker import compile as script
from grocker import layout
from grocker.wheels import parse_result_line


@pytest.fixture
def volume(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A temporary folder in place of the wheel volume."""
    root = tmp_path / "wheels"
    root.mkdir()
    monkeypatch.setattr(script, "WHEELS", root)
    monkeypatch.setattr(script, "LOCKS", root / layout.LOCKS_DIR)
    return root


def test_the_script_and_grocker_agree_on_the_layout() -> None:
    assert str(script.WHEELS) == layout.COMPILE_MOUNT
    assert Path(layout.COMPILE_MOUNT, layout.LOCKS_DIR) == script.LOCKS


@pytest.mark.parametrize(("name", "normal"), [("Foo_Bar", "foo-bar"), ("zope.interface", "zope-interface")])
def test_normalize(name: str, normal: str) -> None:
    assert script.normalize(name) == normal


def test_find_application_takes_the_one_wheel_of_the_app() -> None:
    resolved = ["my_app-1.0-py3-none-any.whl", "six-1.16.0-py2.py3-none-any.whl"]
    assert script.find_application("my-app", resolved) == "my_app-1.0-py3-none-any.whl"
    with pytest.raises(SystemExit, match="expected one wheel of other"):
        script.find_application("other", resolved)


def test_wheel_command_offline_uses_the_volume_only(volume: Path, tmp_path: Path) -> None:
    request = {"target": "app==1.0", "constraint": "/tmp/c.txt"}
    offline = script.wheel_command(request, tmp_path / "staging", offline=True)
    online = script.wheel_command({"target": "app==1.0"}, tmp_path / "staging", offline=False)

    assert offline[:3] == [sys.executable, "-m", "pip"]
    assert ["--find-links", str(volume)] == offline[offline.index("--find-links") :][:2]
    assert "--no-index" in offline
    assert "--no-index" not in online
    assert offline[-3:] == ["--constraint", "/tmp/c.txt", "app==1.0"]
    assert online[-1] == "app==1.0"


def test_staging_is_private_and_abandoned_ones_are_removed(volume: Path) -> None:
    staging, owner = script.make_staging()
    abandoned = volume / f"{layout.STAGING_PREFIX}dead"
    abandoned.mkdir()
    (abandoned / ".owner").write_text("")
    other, other_owner = script.make_staging()

    script.remove_abandoned_staging(staging)

    assert staging.name.startswith(layout.STAGING_PREFIX)
    assert staging.is_dir(), "folders whose flock is held stay"
    assert other.is_dir()
    assert not abandoned.exists()
    owner.close()
    other_owner.close()


def test_publish_links_new_wheels_and_reuses_present_ones(volume: Path) -> None:
    staging = volume / ".staging-x"
    staging.mkdir()
    (volume / "six-1.16.0-py2.py3-none-any.whl").write_bytes(b"old six")
    (staging / "six-1.16.0-py2.py3-none-any.whl").write_bytes(b"six")
    (staging / "app-1.0-py3-none-any.whl").write_bytes(b"app")

    added, reused = script.publish(staging, set())

    assert (added, reused) == (["app-1.0-py3-none-any.whl"], ["six-1.16.0-py2.py3-none-any.whl"])
    assert (volume / "six-1.16.0-py2.py3-none-any.whl").read_bytes() == b"old six", "never overwritten"
    assert (volume / "app-1.0-py3-none-any.whl").stat().st_mode & 0o777 == 0o644


def test_publish_replaces_a_local_application_wheel_only_when_it_changed(volume: Path) -> None:
    staging = volume / ".staging-x"
    staging.mkdir()
    app = "app-1.0-py3-none-any.whl"
    (volume / app).write_bytes(b"first")
    (staging / app).write_bytes(b"first")
    assert script.publish(staging, {app}) == ([], [app])

    (staging / app).write_bytes(b"second")
    assert script.publish(staging, {app}) == ([app], [])
    assert (volume / app).read_bytes() == b"second"


def test_write_lock_names_each_wheel_with_its_digest(volume: Path) -> None:
    for name in ("app-1.0-py3-none-any.whl", "six-1.16.0-py2.py3-none-any.whl", "pip-25.0-py3-none-any.whl"):
        (volume / name).write_bytes(name.encode())
    script.LOCKS.mkdir(parents=True)

    lock = script.write_lock(
        "app-key",
        "app-1.0-py3-none-any.whl",
        ["app-1.0-py3-none-any.whl", "six-1.16.0-py2.py3-none-any.whl"],
        "pip-25.0-py3-none-any.whl",
    )

    written = json.loads((volume / layout.lock_file("app-key")).read_text())
    assert written == lock
    assert [entry["file"] for entry in written["dependencies"]] == ["six-1.16.0-py2.py3-none-any.whl"]
    assert written["installer"]["sha256"] == script.sha256(volume / "pip-25.0-py3-none-any.whl")


def test_main_reuses_the_volume_offline_and_prints_a_lock_grocker_reads(
    volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (volume / "pip-25.0-py3-none-any.whl").write_bytes(b"pip")
    (volume / "app-1.0-py3-none-any.whl").write_bytes(b"app")
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"target": "app==1.0", "name": "app", "lock": "app-k", "local": False}))
    tries: list[bool] = []

    def fake_wheel(request: dict[str, object], staging: Path, offline: bool) -> bool:
        tries.append(offline)
        (staging / "app-1.0-py3-none-any.whl").write_bytes(b"app")
        return True

    monkeypatch.setattr(script, "wheel", fake_wheel)
    monkeypatch.setattr(sys, "argv", ["compile.py", str(request)])

    assert script.main() == 0

    assert tries == [True]
    lock = parse_result_line(capsys.readouterr().out.splitlines())
    assert lock is not None
    assert (lock.application.file, lock.installer.file) == ("app-1.0-py3-none-any.whl", "pip-25.0-py3-none-any.whl")
    assert lock.reused == ("app-1.0-py3-none-any.whl",)
    assert not list(volume.glob(f"{layout.STAGING_PREFIX}*"))


def test_main_fails_when_pip_fails_online_too(volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"target": "app==1.0", "name": "app", "lock": "app-k"}))
    monkeypatch.setattr(script, "wheel", lambda request, staging, offline: False)
    monkeypatch.setattr(sys, "argv", ["compile.py", str(request)])

    assert script.main() == 1
    assert not list(volume.glob(f"{layout.STAGING_PREFIX}*"))


def test_flock_is_what_marks_a_staging_folder_alive(volume: Path) -> None:
    staging, owner = script.make_staging()
    with open(staging / ".owner") as probe, pytest.raises(BlockingIOError):
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    owner.close()
