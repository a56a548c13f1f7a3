"""Configuration layers: defaults < config files in order < command line, merged and validated."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from grocker import api, config
from grocker.config import checks
from grocker.errors import ConfigError, UsageError

PGP_KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBE50MmIBCAD+FPYK\n-----END PGP PUBLIC KEY BLOCK-----\n"


def write(path: Path, data: object) -> Path:
    """Write `data` as a YAML config file (or `data` itself if it is text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_defaults_come_from_the_packaged_file(tmp_path: Path) -> None:
    defaults = config.load_defaults().values

    resolved = api.load_config([], cwd=tmp_path)

    assert defaults["runtime"] == "trixie/3.13"
    assert resolved.runtime.name == defaults["runtime"]
    assert resolved.entrypoint_name == defaults["entrypoint_name"] == "grocker-runner"
    assert resolved.volumes == tuple(defaults["volumes"]) == ()
    assert resolved.ports == tuple(defaults["ports"]) == ()
    assert resolved.env == ()
    assert resolved.repositories == ()
    assert resolved.pip_constraint is None
    assert resolved.image_prefix is None
    assert resolved.image_base_name is None
    # Every key the packaged file gives is known and has its check, and no check is for another key.
    assert set(defaults) == {*checks.PROJECT_KEYS, "runtimes"} == set(checks.KNOWN_KEYS) == set(checks.CHECKS)
    assert all(source == "defaults" for source in resolved.sources.values())


def test_files_apply_in_order_then_the_command_line(tmp_path: Path) -> None:
    first = write(tmp_path / "first.yml", {"runtime": "bookworm/3.11", "entrypoint_name": "first", "ports": [1]})
    second = write(tmp_path / "second.yml", {"entrypoint_name": "second", "image_base_name": "second"})

    files_only = api.load_config([first, second], cwd=tmp_path)
    with_cli = api.load_config([first, second], cwd=tmp_path, overrides={"image_base_name": "cli"})

    assert files_only.runtime.name == "bookworm/3.11"
    assert files_only.entrypoint_name == "second"
    assert files_only.image_base_name == "second"
    assert files_only.ports == ("1",)
    assert files_only.sources["runtime"] == str(first)
    assert files_only.sources["entrypoint_name"] == str(second)
    assert with_cli.image_base_name == "cli"
    assert with_cli.sources["image_base_name"] == config.CLI_SOURCE


def test_project_file_only_without_config_files(tmp_path: Path) -> None:
    project = write(tmp_path / config.PROJECT_FILE, {"entrypoint_name": "project"})
    other = write(tmp_path / "other.yml", {"ports": [8080]})

    assert config.project_files([], tmp_path) == [project]
    assert config.project_files([other], tmp_path) == [other]
    assert config.project_files([], tmp_path / "nowhere") == []
    assert api.load_config([], cwd=tmp_path).entrypoint_name == "project"
    assert api.load_config([other], cwd=tmp_path).entrypoint_name == "grocker-runner"


def test_mappings_merge_deeply(tmp_path: Path) -> None:
    first = write(
        tmp_path / "first.yml",
        {"env": {"A": "first", "B": "first"}, "dependencies": {"run": ["libpq5"]}},
    )
    second = write(
        tmp_path / "second.yml",
        {"env": {"B": "second", "C": "second"}, "dependencies": {"build": ["libpq-dev"]}},
    )

    resolved = api.load_config([first, second], cwd=tmp_path, overrides={"env": {"C": "cli", "D": "cli"}})

    assert resolved.env == (("A", "first"), ("B", "second"), ("C", "cli"), ("D", "cli"))
    assert resolved.run_packages == ("libpq5",)
    assert resolved.build_packages == ("libpq-dev",)
    assert resolved.all_run_packages == ("python3", "libpq5")
    assert resolved.all_build_packages == ("build-essential", "python3-dev", "python3-venv", "libpq-dev")


def test_repositories_merge_by_id(tmp_path: Path) -> None:
    first = write(
        tmp_path / "first.yml", {"repositories": {"one": {"uri": "deb http://one/ trixie main", "key": PGP_KEY}}}
    )
    second = write(
        tmp_path / "second.yml", {"repositories": {"two": {"uri": "deb http://two/ trixie main", "key": PGP_KEY}}}
    )

    resolved = api.load_config([second, first], cwd=tmp_path)

    assert [(repo.id, repo.uri) for repo in resolved.repositories] == [
        ("one", "deb http://one/ trixie main"),
        ("two", "deb http://two/ trixie main"),
    ]
    assert resolved.repositories[0].key == PGP_KEY


def test_lists_are_replaced_not_appended(tmp_path: Path) -> None:
    first = write(tmp_path / "first.yml", {"volumes": ["/a", "/b"], "dependencies": {"run": ["libpq5", "libxml2"]}})
    second = write(tmp_path / "second.yml", {"volumes": ["/c"], "dependencies": {"run": ["libyaml-0-2"]}})

    files_only = api.load_config([first, second], cwd=tmp_path)
    with_cli = api.load_config([first, second], cwd=tmp_path, overrides={"volumes": ["/d"], "ports": ["80"]})

    assert files_only.volumes == ("/c",)
    assert files_only.run_packages == ("libyaml-0-2",)
    assert with_cli.volumes == ("/d",)
    assert with_cli.ports == ("80",)


def test_project_runtime_keeps_the_built_in_ones(tmp_path: Path) -> None:
    project = write(
        tmp_path / "grocker.yml",
        {
            "runtime": "mytrixie/3.13",
            "runtimes": {
                "mytrixie/3.13": {
                    "image": "registry.example.com/debian:trixie",
                    "python_version": "3.13",
                    "dependencies": {"run": ["python3", "ca-certificates"], "build": ["build-essential"]},
                }
            },
        },
    )

    custom = api.load_config([project], cwd=tmp_path)
    built_in = api.load_config([project], cwd=tmp_path, overrides={"runtime": "alpine/3.12"})

    assert custom.runtime.name == "mytrixie/3.13"
    assert custom.runtime.image == "registry.example.com/debian:trixie"
    assert custom.runtime.family == "debian"
    assert custom.runtime.python == "python3"
    assert custom.runtime.run_packages == ("python3", "ca-certificates")
    assert built_in.runtime.name == "alpine/3.12"
    assert built_in.runtime.image == "alpine:3.22"


def test_project_can_amend_a_built_in_runtime(tmp_path: Path) -> None:
    project = write(
        tmp_path / "grocker.yml", {"runtimes": {"trixie/3.13": {"dependencies": {"run": ["python3", "tzdata"]}}}}
    )

    resolved = api.load_config([project], cwd=tmp_path)

    assert resolved.runtime.image == "debian:trixie"
    assert resolved.runtime.run_packages == ("python3", "tzdata")
    assert resolved.runtime.build_packages == ("build-essential", "python3-dev", "python3-venv")


def test_relative_constraint_is_resolved_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    write(project / "ci" / "grocker.yml", {"pip_constraint": "constraints.txt"})
    (project / "ci" / "constraints.txt").write_text("six==1.16.0\n")
    (project / "constraints.txt").write_text("a decoy in the working directory\n")
    monkeypatch.chdir(project)

    resolved = api.load_config([Path("ci/grocker.yml")], cwd=project)

    assert resolved.pip_constraint == (project / "ci" / "constraints.txt").resolve()


def test_constraint_named_by_a_later_file_is_relative_to_that_file(tmp_path: Path) -> None:
    first = write(tmp_path / "a" / "grocker.yml", {"pip_constraint": "c.txt"})
    second = write(tmp_path / "b" / "grocker.yml", {"pip_constraint": "c.txt"})
    (tmp_path / "a" / "c.txt").write_text("")
    (tmp_path / "b" / "c.txt").write_text("")

    assert api.load_config([first, second], cwd=tmp_path).pip_constraint == (tmp_path / "b" / "c.txt").resolve()
    assert api.load_config([second, first], cwd=tmp_path).pip_constraint == (tmp_path / "a" / "c.txt").resolve()


def test_env_values_become_text(tmp_path: Path) -> None:
    project = write(tmp_path / "grocker.yml", "env:\n  NUMBER: 45\n  FLAG: true\n  RATIO: 0.5\n  TEXT: 'x'\n")

    resolved = api.load_config([project], cwd=tmp_path)

    assert resolved.env == (("NUMBER", "45"), ("FLAG", "true"), ("RATIO", "0.5"), ("TEXT", "x"))


def test_empty_file_is_an_empty_layer(tmp_path: Path) -> None:
    project = write(tmp_path / "grocker.yml", "# nothing yet\n")

    assert api.load_config([project], cwd=tmp_path) == api.load_config([], cwd=tmp_path)


def test_deprecated_envs_is_renamed_with_a_warning(tmp_path: Path) -> None:
    project = write(tmp_path / "grocker.yml", {"envs": {"A": "1"}})

    resolved = api.load_config([project], cwd=tmp_path)

    assert resolved.env == (("A", "1"),)
    assert resolved.warnings == (f"{project}: `envs` is deprecated, rename it to `env`.",)


def test_envs_and_env_together_are_refused(tmp_path: Path) -> None:
    project = write(tmp_path / "grocker.yml", {"envs": {"A": "1"}, "env": {"B": "2"}})

    with pytest.raises(ConfigError, match="`envs` is the deprecated spelling of `env`; keep only `env`"):
        api.load_config([project], cwd=tmp_path)


def test_deprecated_runtime_gives_a_warning(tmp_path: Path) -> None:
    project = write(
        tmp_path / "grocker.yml",
        {
            "runtime": "old/3.11",
            "runtimes": {"old/3.11": {"image": "debian:bookworm", "deprecated": "use trixie/3.13"}},
        },
    )

    resolved = api.load_config([project], cwd=tmp_path)

    assert resolved.warnings == ("Runtime old/3.11 is deprecated: use trixie/3.13",)


@pytest.mark.parametrize(
    ("values", "key", "problem"),
    [
        ({"runtim": "trixie/3.13"}, "runtim", "Did you mean `runtime`?"),
        ({"zzz": 1}, "zzz", "Known keys: runtime, pip_constraint"),
        ({"runtime": 3.13}, "runtime", "must be a non-empty string, got number 3.13"),
        ({"volumes": "/data"}, "volumes", "must be a list, got string '/data'"),
        ({"ports": [True]}, "ports", "entries must be strings or numbers, got boolean True"),
        ({"ports": ["80/http"]}, "ports", "port numbers 1-65535"),
        ({"ports": [0]}, "ports", "got 0"),
        ({"env": ["A=1"]}, "env", "must be a mapping of NAME: value"),
        ({"env": {"A": {"b": 1}}}, "env.A", "must be a string or a number"),
        ({"env": {"A-B": "1"}}, "env", "'A-B'"),
        ({"dependencies": {"runtime": ["x"]}}, "dependencies.runtime", "Did you mean `run`?"),
        ({"dependencies": {"run": ["not a package"]}}, "dependencies.run", "'not a package'"),
        ({"entrypoint_name": "two words"}, "entrypoint_name", "without spaces or quotes"),
        ({"repositories": {"x": "deb http://h/ a b"}}, "repositories.x", "must be a mapping with `uri` and `key`"),
        (
            {"repositories": {"x": {"uri": "deb http://h/ a b", "key": PGP_KEY, "id": 3}}},
            "repositories.x.id",
            "is not a repository field",
        ),
        ({"runtimes": ["trixie/3.13"]}, "runtimes", "must be a mapping of runtime name"),
    ],
)
def test_file_errors_name_the_file_and_the_key(
    tmp_path: Path, values: dict[str, object], key: str, problem: str
) -> None:
    project = write(tmp_path / "grocker.yml", values)

    with pytest.raises(ConfigError) as caught:
        api.load_config([project], cwd=tmp_path)

    assert caught.value.exit_code == 3
    assert caught.value.message.startswith(f"{project}: `{key}` ")
    assert problem in caught.value.message


def test_command_line_errors_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        api.load_config([], cwd=tmp_path, overrides={"volumes": ["relative"]})

    assert caught.value.exit_code == 2
    assert caught.value.message.startswith("Invalid command-line value: `volumes`")
    assert "'relative'" in caught.value.message


def test_broken_runtime_definition_is_a_config_error_even_when_chosen_on_the_command_line(tmp_path: Path) -> None:
    project = write(tmp_path / "grocker.yml", {"runtimes": {"mine/3.13": {"image": ["debian"]}}})

    with pytest.raises(ConfigError) as caught:
        api.load_config([project], cwd=tmp_path, overrides={"runtime": "mine/3.13"})

    assert type(caught.value) is ConfigError
    assert "runtimes.mine/3.13.image" in caught.value.message
    assert str(project) in caught.value.message


def test_bad_package_in_a_runtime_names_its_file(tmp_path: Path) -> None:
    project = write(
        tmp_path / "grocker.yml",
        {
            "runtime": "mine/3.13",
            "runtimes": {"mine/3.13": {"image": "debian:trixie", "dependencies": {"run": ["a b"]}}},
        },
    )

    with pytest.raises(ConfigError, match=r"grocker\.yml: `runtimes\.mine/3\.13\.dependencies\.run` has 'a b'"):
        api.load_config([project], cwd=tmp_path)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["A=1"], {"A": "1"}),
        (["A=x=y", "B="], {"A": "x=y", "B": ""}),
        (["A=1", "A=2"], {"A": "2"}),
        ([], {}),
    ],
)
def test_env_options_parse(values: list[str], expected: dict[str, str]) -> None:
    assert config.parse_env_options(values) == expected


@pytest.mark.parametrize("value", ["FOO", "=bar"])
def test_env_option_without_name_or_equals_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError) as caught:
        config.parse_env_options([value])

    assert caught.value.exit_code == 2
    assert f"--env {value!r}" in caught.value.message
    assert "NAME=VALUE" in caught.value.message


def test_describe_names_each_value_source(tmp_path: Path) -> None:
    project = write(tmp_path / "grocker.yml", {"ports": [8080]})

    rows = {
        key: (value, source)
        for key, value, source in config.describe(
            api.load_config([project], cwd=tmp_path, overrides={"entrypoint_name": "web"})
        )
    }

    assert rows["ports"] == ("8080", str(project))
    assert rows["entrypoint_name"] == ("web", config.CLI_SOURCE)
    assert rows["runtime"] == ("trixie/3.13 (debian:trixie)", config.DEFAULTS_SOURCE)


def test_config_is_frozen(tmp_path: Path) -> None:
    resolved = api.load_config([], cwd=tmp_path)

    with pytest.raises(AttributeError):
        resolved.entrypoint_name = "other"  # type: ignore[misc]
