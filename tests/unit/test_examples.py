"""The documented examples work, and the generated reference pages cover the whole code.

examples/full.grocker.yml is included in docs/configuration.rst; the reference tables come
from docs/_ext/grocker_reference.py, which reads grocker/resources/grocker.yaml and the
click commands. Nothing here needs Sphinx or a Docker engine.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest
import yaml
from packaging.requirements import Requirement

from grocker import api, cli
from grocker.chain import render

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FULL_EXAMPLE = EXAMPLES / "full.grocker.yml"
DOCS = ROOT / "docs"


def _packaged_defaults() -> dict[str, Any]:
    text = resources.files("grocker").joinpath("resources/grocker.yaml").read_text("utf-8")
    values = yaml.safe_load(text)
    assert isinstance(values, dict)
    return values


@pytest.fixture(scope="module")
def reference() -> ModuleType:
    """docs/_ext/grocker_reference.py, loaded without touching sys.path."""
    name = "_grocker_docs_reference"
    spec = importlib.util.spec_from_file_location(name, DOCS / "_ext" / "grocker_reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up while the class is created.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


@pytest.fixture
def no_pip_config(tmp_path: Path) -> dict[str, Any]:
    """prepare_build arguments that read no pip configuration of this machine."""
    home = tmp_path / "home"
    home.mkdir()
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text("", "utf-8")
    return {"pip_conf": pip_conf, "env": {"HOME": str(home)}, "cwd": tmp_path}


def test_full_example_sets_every_project_key() -> None:
    example = yaml.safe_load(FULL_EXAMPLE.read_text("utf-8"))
    assert set(example) == set(_packaged_defaults()) - {"runtimes"}


def test_full_example_loads(tmp_path: Path) -> None:
    config = api.load_config([FULL_EXAMPLE], cwd=tmp_path)

    assert config.runtime.name == "trixie/3.13"
    assert config.pip_constraint == (EXAMPLES / "constraints.txt").resolve()
    assert [repo.id for repo in config.repositories] == ["nginx"]
    assert "libzbar0t64" in config.run_packages
    assert "libtiff-dev" in config.build_packages
    assert config.image_prefix == "docker.example.com"
    assert config.warnings == ()


def test_full_example_renders_all_four_dockerfiles(no_pip_config: dict[str, Any]) -> None:
    config = api.load_config([FULL_EXAMPLE], cwd=no_pip_config["cwd"])
    request = api.prepare_build("my-app==1.0", config, **no_pip_config)

    text = api.dry_run(request)

    assert request.image_name == "docker.example.com/my-app:1.0"
    for role in ("root", "compiler", "wheel-server", "runner"):
        assert f"# ---- {role} image: Dockerfile" in text
    assert "signed-by=/etc/apt/keyrings/grocker-nginx.asc" in text
    assert "libzbar0t64 libjpeg62-turbo libffi8 libtiff6 nginx" in text
    assert "libzbar-dev libjpeg62-turbo-dev libffi-dev libtiff-dev" in text
    assert "EXPOSE 8080 8081" in text
    assert 'VOLUME ["/data", "/cache"]' in text
    assert 'ENTRYPOINT ["my-runner"]' in text


def test_full_example_keeps_the_wheel_server_out_of_its_proxy() -> None:
    env = yaml.safe_load(FULL_EXAMPLE.read_text("utf-8"))["env"]
    assert "http_proxy" in env
    assert render.WHEEL_SERVER_HOST in env["no_proxy"].split(",")


def test_example_constraints_are_pinned() -> None:
    lines = (EXAMPLES / "constraints.txt").read_text("utf-8").splitlines()
    requirements = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    assert requirements
    for requirement in requirements:
        assert [spec.operator for spec in requirement.specifier] == ["=="]


def test_configuration_reference_lists_every_key(reference: ModuleType) -> None:
    defaults = _packaged_defaults()
    rows = reference.config_rows()
    table = "\n".join(reference.config_table(rows))

    assert [row.key for row in rows] == list(defaults)
    for key, value in defaults.items():
        assert f"``{key}``" in table
        if isinstance(value, dict) and key != "runtimes":
            for sub_key in value:
                assert f"``{sub_key}``" in table
    assert all(row.description for row in rows), "every key of grocker.yaml needs a comment above it"
    assert ".. grocker-config::" in (DOCS / "configuration.rst").read_text("utf-8")


def test_defaults_block_sets_every_project_key(reference: ModuleType) -> None:
    lines = reference.defaults_block()
    body = "\n".join(line[4:] for line in lines[3:])

    assert yaml.safe_load(body) == {key: value for key, value in _packaged_defaults().items() if key != "runtimes"}
    assert ".. grocker-defaults::" in (DOCS / "configuration.rst").read_text("utf-8")


def test_configuration_reference_names_the_options(reference: ModuleType) -> None:
    options = reference.option_keys()

    assert options == {
        "runtime": "-r, --runtime",
        "pip_constraint": "--pip-constraint",
        "volumes": "--volume",
        "ports": "--port",
        "env": "--env",
        "docker_image_prefix": "--image-prefix",
        "image_base_name": "--image-base-name",
        "entrypoint_name": "-e, --entrypoint",
        "sbom": "--sbom",
        "runner": "--runner",
    }


def test_runtimes_reference_lists_every_runtime_and_field(reference: ModuleType) -> None:
    runtimes = _packaged_defaults()["runtimes"]
    table = "\n".join(reference.runtime_table())
    page = (DOCS / "runtimes.rst").read_text("utf-8")

    for name in runtimes:
        assert f"``{name}``" in table
    fields = {field for entry in runtimes.values() for field in entry}
    for field in fields:
        assert f"``{field}``" in page, f"docs/runtimes.rst does not describe the runtime field {field}"
    assert ".. grocker-runtimes::" in page


def test_cli_reference_lists_every_command_and_option(reference: ModuleType) -> None:
    text = "\n".join(reference.cli_reference())

    assert isinstance(cli.main, click.Group)
    for name, command in cli.main.commands.items():
        assert f"``grocker {name}``" in text
        for param in command.params:
            for opt in (*param.opts, *getattr(param, "secondary_opts", ())):
                assert opt in text, f"grocker {name} {opt} is missing from the CLI reference"
    assert ".. grocker-cli::" in (DOCS / "cli.rst").read_text("utf-8")
