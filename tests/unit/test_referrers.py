"""The OCI artifact that carries the SBOM: manifest, referrers index and fallback tag."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import oras.container
import pytest

from grocker.errors import PushError
from grocker.sbom import referrers

SUBJECT = {
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "digest": "sha256:" + "9" * 64,
    "size": 524,
}


def test_artifact_manifest_refers_to_the_image_and_carries_the_file() -> None:
    content = b'{"bomFormat": "CycloneDX"}\n'

    manifest = json.loads(referrers.artifact_manifest("application/vnd.cyclonedx+json", content, "sbom.json", SUBJECT))

    assert manifest["mediaType"] == referrers.OCI_MANIFEST
    assert manifest["artifactType"] == "application/vnd.cyclonedx+json"
    assert manifest["subject"] == SUBJECT
    assert manifest["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
    }
    assert manifest["layers"] == [
        {
            "mediaType": "application/vnd.cyclonedx+json",
            "digest": "sha256:" + hashlib.sha256(content).hexdigest(),
            "size": len(content),
            "annotations": {"org.opencontainers.image.title": "sbom.json"},
        }
    ]


def test_artifact_manifest_bytes_are_stable() -> None:
    first = referrers.artifact_manifest("application/vnd.cyclonedx+json", b"x", "a", SUBJECT)

    assert first == referrers.artifact_manifest("application/vnd.cyclonedx+json", b"x", "a", SUBJECT)


def test_fallback_tag_of_a_digest() -> None:
    assert referrers.fallback_tag("sha256:" + "ab" * 32) == "sha256-" + "ab" * 32


def test_referrers_index_is_created_then_extended_once() -> None:
    first = b'{"a": 1}'
    second = b'{"b": 2}'

    index = referrers.add_referrer(None, first, "application/vnd.cyclonedx+json")
    index = referrers.add_referrer(index, second, "application/vnd.cyclonedx+json")
    index = referrers.add_referrer(index, second, "application/vnd.cyclonedx+json")

    data = json.loads(index)
    assert data["mediaType"] == referrers.OCI_INDEX
    assert [item["digest"] for item in data["manifests"]] == [
        "sha256:" + hashlib.sha256(first).hexdigest(),
        "sha256:" + hashlib.sha256(second).hexdigest(),
    ]
    assert {item["artifactType"] for item in data["manifests"]} == {"application/vnd.cyclonedx+json"}


def test_referrers_index_keeps_other_referrers() -> None:
    other = {"mediaType": referrers.OCI_MANIFEST, "digest": "sha256:" + "1" * 64, "size": 3, "artifactType": "x/sig"}
    existing = json.dumps({"schemaVersion": 2, "mediaType": referrers.OCI_INDEX, "manifests": [other]}).encode()

    data = json.loads(referrers.add_referrer(existing, b"{}", "application/vnd.cyclonedx+json"))

    assert data["manifests"][0] == other
    assert len(data["manifests"]) == 2


@pytest.mark.parametrize(
    ("registry", "loopback"),
    [
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("[::1]:5000", True),
        ("localhost", True),
        ("registry.example.com", False),
        ("registry.example.com:443", False),
        ("10.0.0.1:5000", False),
    ],
)
def test_only_loopback_registries_are_spoken_to_over_http(registry: str, loopback: bool) -> None:
    assert referrers.is_loopback(registry) is loopback


def test_unreachable_registry_is_a_push_error() -> None:
    with pytest.raises(PushError, match=r"The push of the SBOM of 127\.0\.0\.1:9/team/app:1 failed") as caught:
        referrers.push_artifact("127.0.0.1:9/team/app:1", "sha256:" + "9" * 64, b"{}", "application/json", "x.json")

    assert caught.value.exit_code == 6


@pytest.mark.parametrize(
    "index",
    [b"[]", b"null", b'"x"', b'{"manifests": {}}', b'{"manifests": [1]}', b'{"manifests": "a"}', b"\xff\xfe", b"{"],
)
def test_an_odd_referrers_index_is_a_push_error(index: bytes) -> None:
    """Issue 20: a registry's odd answer crashed the run after the push."""
    with pytest.raises(PushError, match="not an OCI image index"):
        referrers.add_referrer(index, b"{}", "application/vnd.cyclonedx+json")


def _login(path: Path, registry: str, user: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:secret".encode()).decode()
    (path / "config.json").write_text(json.dumps({"auths": {registry: {"auth": auth}}}))


def test_the_sbom_push_reads_logins_from_docker_config_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20: oras-py read ~/.docker/config.json while the engine's push honours DOCKER_CONFIG."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _login(tmp_path / "home" / ".docker", "registry.example.com", "from-home")
    _login(tmp_path / "ci-docker", "registry.example.com", "from-docker-config")
    container = oras.container.Container("registry.example.com/team/app:1")

    chosen = referrers._Registry(container, tmp_path / "ci-docker")
    none = referrers._Registry(container, tmp_path / "empty")

    assert base64.b64decode(chosen.oras.auth._basic_auth).decode() == "from-docker-config:secret"
    assert getattr(none.oras.auth, "_basic_auth", None) is None


def test_a_fifo_as_docker_config_json_is_no_login(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "config.json")

    assert referrers._logins(tmp_path) == {"auths": {}, "credsStore": None, "credHelpers": {}}


def test_a_build_imports_oras_only_to_speak_to_a_registry(tmp_path: Path) -> None:
    """oras-py imports jsonschema, whose format checkers took about 1 s of every version bump."""
    code = (
        "import sys\n"
        "from grocker.chain import fleet\n"
        "print('oras' in sys.modules, 'jsonschema' in sys.modules)\n"
        "from grocker.sbom import referrers\n"
        "referrers.open_repository('127.0.0.1:5000/team/app', None)\n"
        "print('oras' in sys.modules)\n"
    )

    env = {**os.environ, "HOME": str(tmp_path)}  # no login of this machine's is read

    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)

    assert ran.stdout.split() == ["False", "False", "True"]
