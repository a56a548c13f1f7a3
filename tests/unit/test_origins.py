"""Where each wheel came from: recorded by the publisher, carried by the lock, read for the SBOM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grocker.config import pipconf
from grocker.wheels import Origin, parse_lock
from tests.unit.conftest import PublisherKit
from tests.unit.test_abi import _wheel

SIX = "six-1.16.0-py2.py3-none-any.whl"


def test_urls_lose_their_credentials_query_and_fragment(publisher: PublisherKit) -> None:
    url = "https://user:s3cret@pypi.example.com:8443/packages/six.whl?token=abc#sha256=00"
    assert publisher.public_url(url) == "https://pypi.example.com:8443/packages/six.whl"


@pytest.mark.parametrize(
    ("url", "index"),
    [
        ("https://pypi.fury.io/Sh0rtT0k/team/-/six.whl", None),
        ("https://pypi.fury.io/team/", None),
        ("https://PyPI.Fury.IO./Sh0rtT0k/team/", None),
        ("https://Tok3n:@pypi.fury.io/team/six.whl?x=1", None),
        ("https://dl.cloudsmith.io/CsT0ken9/org/repo/python/simple/", None),
        ("https://dl.cloudsmith.io/public/org/repo/python/simple/", None),
        ("https://idx.example.com/Ab12Cd34Ef56Gh78Ij90/simple/", None),
        (
            "https://idx.example.com/Ab12Cd34Ef56Gh78Ij90/packages/0123456789abcdef0123456789/six-1.0-py3-none-any.whl",
            "https://idx.example.com/Ab12Cd34Ef56Gh78Ij90/simple/",
        ),
        ("https://u:p@files.example.com:8443/packages/ab/six-1.16.0-py2.py3-none-any.whl", "https://pypi.org/simple/"),
    ],
)
def test_the_publisher_records_urls_as_grocker_masks_them(publisher: PublisherKit, url: str, index: str | None) -> None:
    # The publisher runs with the standard library only: its copy of the rule must stay grocker's.
    recorded = publisher.public_url(url, index)

    assert recorded == pipconf.public_url(url, index)
    for secret in ("Sh0rtT0k", "Tok3n", "CsT0ken9", "Ab12Cd34Ef56Gh78Ij90", "u:p@"):
        assert secret not in recorded


def test_the_publisher_records_the_origin_of_what_it_adds_and_locks_it(publisher: PublisherKit) -> None:
    job = publisher.job({"indexes": ["https://pypi.example.com/simple/"], "compiler_image": "sha256:c0"})
    temporary, digest = publisher.volume.write_temporary(iter([b"wheel bytes"]))
    origin = {"kind": "index", "url": "https://files.example.com/six.whl", "index": "https://pypi.example.com/simple/"}

    job.publish(temporary, SIX, digest, origin=origin)

    assert publisher.volume.origin_of(SIX) == origin
    assert job.added == [SIX]
    # A second publisher finding the file keeps the first one's record.
    again, _ = publisher.volume.write_temporary(iter([b"wheel bytes"]))
    publisher.job({}).publish(again, SIX, digest, origin={"kind": "built", "compiler": "sha256:other"})
    assert publisher.volume.origin_of(SIX) == origin


def test_lock_entries_carry_their_origin() -> None:
    lock = parse_lock(
        {
            "application": {"file": "app-1.0-py3-none-any.whl", "sha256": "a" * 64, "origin": {"kind": "file"}},
            "dependencies": [
                {
                    "file": SIX,
                    "sha256": "b" * 64,
                    "origin": {"kind": "index", "url": "https://h/six.whl", "index": "https://h/simple/"},
                },
                {
                    "file": "yaml-6.0-cp313-cp313-linux_x86_64.whl",
                    "sha256": "c" * 64,
                    "origin": json.loads('{"kind": "built", "compiler": "sha256:c0"}'),
                },
            ],
            "installer": {"file": "pip-25.1.1-py3-none-any.whl", "sha256": "d" * 64},
        }
    )

    assert lock.application.origin == Origin("file")
    assert lock.dependencies[0].origin == Origin("index", "https://h/six.whl", "https://h/simple/")
    assert lock.dependencies[1].origin == Origin("built", compiler="sha256:c0")
    # A lock written before origins were recorded still reads.
    assert lock.installer.origin == Origin("unknown")


def test_the_publisher_says_which_wheels_hold_an_elf_file(publisher: PublisherKit, tmp_path: Path) -> None:
    elf = b"\x7fELF" + bytes(60)
    native = _wheel(tmp_path, "w-1.0-cp313-cp313-linux_x86_64.whl", {"w/__init__.py": b"", "w/_w.abi3.so": elf})
    # Any member counts, whatever its name: the gate's own filter is narrower, never wider.
    hidden = _wheel(tmp_path, "h-1.0-py3-none-any.whl", {"h/__init__.py": b"", "h/data.bin": elf})
    pure = _wheel(tmp_path, "p-1.0-py3-none-any.whl", {"p/__init__.py": b"ELF", "p/x.txt": b"\x7fEL"})

    assert publisher.has_elf(native)
    assert publisher.has_elf(hidden)
    assert not publisher.has_elf(pure)
    # Answered once per content: the answer is kept under the file's SHA-256.
    digest = publisher.sha256_of(native)
    assert publisher.volume.elf_flag(native.name, digest)
    native.write_bytes(pure.read_bytes())
    assert publisher.volume.elf_flag(native.name, digest)
    assert not publisher.volume.elf_flag(native.name, publisher.sha256_of(native))


def test_lock_entries_carry_whether_a_wheel_holds_an_elf_file() -> None:
    lock = parse_lock(
        {
            "application": {"file": "app-1.0-py3-none-any.whl", "sha256": "a" * 64, "elf": False},
            "dependencies": [{"file": SIX, "sha256": "b" * 64, "elf": True}, {"file": SIX, "sha256": "b" * 64}],
            "installer": {"file": "pip-25.1.1-py3-none-any.whl", "sha256": "d" * 64, "elf": "no"},
        }
    )

    assert lock.application.elf is False
    assert lock.dependencies[0].elf is True
    # Not recorded (an older lock), or not a boolean: not known, so the gate checks the wheel.
    assert lock.dependencies[1].elf is None
    assert lock.installer.elf is None
