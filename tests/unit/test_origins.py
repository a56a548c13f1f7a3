"""Where each wheel came from: the compile script's record, read back from the lock."""
# ruff: noqa: E501 - pip's log lines as pip writes them

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from grocker.wheels import Origin, parse_lock

COMPILE_SCRIPT = Path(__file__).parents[2] / "grocker" / "resources" / "compiler" / "compile.py"

# Lines as pip 25 writes them with --log (abridged).
PIP_LOG = """\
2026-11-28T18:36:28,649 Looking in indexes: https://user:secret@pypi.example.com/simple
2026-11-28T18:36:29,171   Found link https://user:secret@pypi.example.com/files/six-1.16.0-py2.py3-none-any.whl?token=t#sha256=abc (from https://user:secret@pypi.example.com/simple/six/) (requires-python:>=2.7), version: 1.16.0
2026-11-28T18:36:29,172   Found link https://files.pythonhosted.org/packages/e8/c4/sortedcontainers-2.4.0.tar.gz (from https://pypi.org/simple/sortedcontainers/), version: 2.4.0
2026-11-28T18:36:29,173   Found link file:///home/grocker/wheels/attrs-24.2.0-py3-none-any.whl (from -f /home/grocker/wheels), version: 24.2.0
2026-11-28T18:36:30,212   Downloading six-1.16.0-py2.py3-none-any.whl (11 kB)
2026-11-28T18:36:48,838   Created wheel for sortedcontainers: filename=sortedcontainers-2.4.0-py3-none-any.whl size=29636 sha256=efa1
"""


@pytest.fixture
def compile_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("grocker_compile_script", COMPILE_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    log = tmp_path / "pip.log"
    log.write_text(PIP_LOG)
    monkeypatch.setattr(module, "PIP_LOG", log)
    monkeypatch.setenv("GROCKER_COMPILER_IMAGE_ID", "sha256:" + "c" * 64)
    return module


def test_origins_from_pip_log_without_credentials(compile_script: ModuleType) -> None:
    staged = [
        "app-1.0-py3-none-any.whl",
        "attrs-24.2.0-py3-none-any.whl",
        "six-1.16.0-py2.py3-none-any.whl",
        "sortedcontainers-2.4.0-py3-none-any.whl",
    ]

    origins = compile_script.read_origins(staged, "app-1.0-py3-none-any.whl")

    assert origins == {
        "app-1.0-py3-none-any.whl": {"kind": "file"},
        "attrs-24.2.0-py3-none-any.whl": {"kind": "unknown"},
        "six-1.16.0-py2.py3-none-any.whl": {
            "kind": "index",
            "url": "https://pypi.example.com/files/six-1.16.0-py2.py3-none-any.whl",
            "index": "https://pypi.example.com/simple/six/",
        },
        "sortedcontainers-2.4.0-py3-none-any.whl": {"kind": "built", "compiler": "sha256:" + "c" * 64},
    }
    assert "secret" not in repr(origins)


def test_lock_entries_carry_their_origin() -> None:
    lock = parse_lock(
        {
            "application": {"file": "app-1.0-py3-none-any.whl", "sha256": "a" * 64, "origin": {"kind": "file"}},
            "dependencies": [
                {
                    "file": "six-1.16.0-py2.py3-none-any.whl",
                    "sha256": "b" * 64,
                    "origin": {"kind": "index", "url": "https://h/six.whl", "index": "https://h/simple/six/"},
                }
            ],
            "installer": {"file": "pip-25.0-py3-none-any.whl", "sha256": "c" * 64},
        }
    )

    assert lock.application.origin == Origin("file")
    assert lock.dependencies[0].origin == Origin("index", "https://h/six.whl", "https://h/simple/six/")
    assert lock.installer.origin == Origin("unknown")
