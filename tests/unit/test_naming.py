"""Image and volume names, and the configuration hash that names the shared images."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from grocker import __version__, api, naming, reference
from grocker.config import ProjectConfig, Repository
from grocker.config.pipconf import PipSettings
from grocker.config.release import parse_release
from grocker.errors import UsageError
from grocker.trust import index_domain

PGP_KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBE50MmIBCAD+FPYK\n-----END PGP PUBLIC KEY BLOCK-----\n"


@pytest.fixture
def default_config(tmp_path: Path) -> ProjectConfig:
    return api.load_config([], cwd=tmp_path)


def load(tmp_path: Path, text: str, name: str = "grocker.yml") -> ProjectConfig:
    path = tmp_path / name
    path.write_text(text)
    return api.load_config([path], cwd=tmp_path)


@pytest.mark.parametrize(
    ("release", "prefix", "base_name", "expected"),
    [
        ("ipython==8.18.1", None, None, "ipython:8.18.1"),
        ("uvicorn[standard]==0.32.0", None, None, "uvicorn-standard:0.32.0"),
        ("uvicorn[standard]==0.32.0", "docker.example.com", None, "docker.example.com/uvicorn-standard:0.32.0"),
        ("app[b,a]==1.0", None, None, "app-a-b:1.0"),
        ("ipython==8.18.1", None, "shell", "shell:8.18.1"),
        ("ipython==8.18.1", "localhost:5000/team", "shell", "localhost:5000/team/shell:8.18.1"),
        ("ipython==8.18.1", "myaccount", None, "myaccount/ipython:8.18.1"),
        ("IPython==8.18.1", None, None, "ipython:8.18.1"),
        ("My_Django.App==2.0", None, None, "my-django-app:2.0"),
        ("app==1.0+local.7", None, None, "app:1.0_local.7"),
        ("app==1.0+Ubuntu-2", None, None, "app:1.0_Ubuntu-2"),
        ("app==1!2.0", None, None, "app:1_2.0"),
        ("app==2.0rc1.post3.dev4", None, None, "app:2.0rc1.post3.dev4"),
        ("app==1.0", None, "My Team/App", "my-team/app:1.0"),
        ("app==1.0", None, "_Weird__Name_", "weird-name:1.0"),
    ],
)
def test_default_image_names_are_valid_references(
    default_config: ProjectConfig, release: str, prefix: str | None, base_name: str | None, expected: str
) -> None:
    config = dataclasses.replace(default_config, image_prefix=prefix, image_base_name=base_name)

    name = naming.default_image_name(parse_release(release, Path("/nowhere")), config)

    assert name == expected
    assert reference.check_image_name(name) == name


def test_unpinned_release_has_no_default_name(default_config: ProjectConfig) -> None:
    with pytest.raises(UsageError) as caught:
        naming.default_image_name(parse_release("ipython", Path("/nowhere")), default_config)

    assert caught.value.exit_code == 2
    assert (
        "Pin the release (ipython==VERSION) or give the image's name with -n/--image-name NAME:TAG"
        in caught.value.message
    )


def test_internal_names(default_config: ProjectConfig) -> None:
    config = dataclasses.replace(default_config, image_prefix="registry.example.com/ci")
    digest = naming.config_hash(config)

    names = naming.internal_names(config, PipSettings())

    assert names.config_hash == digest
    assert names.root == f"registry.example.com/ci/grocker-trixie-3.13-root:{__version__}-{digest[:16]}"
    assert names.compiler == f"registry.example.com/ci/grocker-trixie-3.13-compiler:{__version__}-{digest[:16]}"
    assert names.wheel_server == (
        f"registry.example.com/ci/grocker-trixie-3.13-wheel-server:{__version__}-{digest[:16]}"
    )
    domain = index_domain(PipSettings())
    assert names.volume == f"grocker-wheel-cache-{__version__}-trixie-3.13-{digest[:16]}-{domain[:12]}"
    assert names.index_domain == domain
    for name in (names.root, names.compiler, names.wheel_server):
        assert reference.check_image_name(name) == name


def test_internal_names_without_prefix(default_config: ProjectConfig) -> None:
    names = naming.internal_names(default_config, PipSettings())

    assert names.root.startswith("grocker-trixie-3.13-root:")
    assert not reference.has_registry(names.root)


KEY = PGP_KEY.replace("\n", "\\n")  # as a double-quoted YAML scalar
BASE = f"""\
runtime: trixie/3.13
dependencies:
  run: [libpq5, libxml2]
  build: [libpq-dev]
repositories:
  one: {{uri: "deb http://one.example.com/debian trixie main", key: "{KEY}"}}
  two: {{uri: "deb http://two.example.com/debian trixie main", key: "{KEY}"}}
"""

REORDERED = f"""\
repositories:
  two: {{key: "{KEY}", uri: "deb http://two.example.com/debian trixie main"}}
  one: {{key: "{KEY}", uri: "deb http://one.example.com/debian trixie main"}}
dependencies:
  build: [libpq-dev]
  run: [libpq5, libxml2]
runtime: trixie/3.13
"""


def test_same_config_same_hash(tmp_path: Path) -> None:
    first = naming.config_hash(load(tmp_path, BASE))
    second = naming.config_hash(load(tmp_path, BASE, "again.yml"))

    assert first == second
    assert len(first) == 64


def test_key_order_does_not_change_the_hash(tmp_path: Path) -> None:
    assert yaml.safe_load(BASE) == yaml.safe_load(REORDERED)
    assert naming.config_hash(load(tmp_path, BASE)) == naming.config_hash(load(tmp_path, REORDERED, "r.yml"))


def test_settings_of_the_final_image_do_not_change_the_hash(tmp_path: Path) -> None:
    runner_only = BASE + "env: {A: '1'}\nports: [80]\nvolumes: [/data]\nentrypoint_name: web\nimage_base_name: x\n"

    assert naming.config_hash(load(tmp_path, BASE)) == naming.config_hash(load(tmp_path, runner_only, "r.yml"))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("run: [libpq5, libxml2]", "run: [libpq5, libxml2, libyaml-0-2]"),
        ("build: [libpq-dev]", "build: [libpq-dev, libxml2-dev]"),
        ("one.example.com/debian trixie main", "one.example.com/debian trixie main contrib"),
        ("  two: {uri", "  three: {uri"),
        ("runtime: trixie/3.13", "runtime: bookworm/3.11"),
    ],
)
def test_changed_package_or_repository_changes_the_hash(tmp_path: Path, old: str, new: str) -> None:
    assert old in BASE
    changed = BASE.replace(old, new)

    assert naming.config_hash(load(tmp_path, BASE)) != naming.config_hash(load(tmp_path, changed, "c.yml"))


def test_changed_repository_key_changes_the_hash(default_config: ProjectConfig) -> None:
    repository = Repository("one", "deb http://one.example.com/debian trixie main", PGP_KEY)
    config = dataclasses.replace(default_config, repositories=(repository,))
    rekeyed = dataclasses.replace(config, repositories=(dataclasses.replace(repository, key=PGP_KEY + "=A015\n"),))

    assert naming.config_hash(config) != naming.config_hash(default_config)
    assert naming.config_hash(config) != naming.config_hash(rekeyed)


def test_labels(default_config: ProjectConfig) -> None:
    release = parse_release("uvicorn[standard]==0.32.0", Path("/nowhere"))

    labels = naming.runner_labels(release, default_config, "2026-01-01T00:00:00Z")
    internal = naming.internal_labels(default_config, "root")

    assert labels["grocker.version"] == internal["grocker.version"] == __version__
    assert labels["grocker.image.role"] == "runner"
    assert internal["grocker.image.role"] == "root"
    assert labels["grocker.runtime"] == "trixie/3.13"
    assert labels["grocker.config.hash"] == internal["grocker.config.hash"] == naming.config_hash(default_config)
    assert (labels["grocker.app.name"], labels["grocker.app.extras"], labels["grocker.app.version"]) == (
        "uvicorn",
        "standard",
        "0.32.0",
    )
    assert labels["org.opencontainers.image.created"] == "2026-01-01T00:00:00Z"
    assert labels["org.opencontainers.image.base.name"] == "debian:trixie"
