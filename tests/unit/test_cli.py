"""The command line: every option reaches the BuildRequest, errors map to exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from grocker import __version__, api, cli
from grocker.chain.build import BuildRequest

PGP_KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBE50MmIBCAD+FPYK\n-----END PGP PUBLIC KEY BLOCK-----\n"


def test_every_build_option_reaches_the_request(grocker, tmp_path: Path) -> None:
    (tmp_path / "constraints.txt").write_text("six==1.16.0\n")
    (tmp_path / "pip.conf").write_text("[global]\nindex-url = https://pypi.example.com/simple\ntimeout = 30\n")
    (tmp_path / "base.yml").write_text("runtime: trixie/3.14\nentrypoint_name: from-file\n")

    run = grocker(
        "build",
        "-c", "base.yml",
        "-r", "bookworm/3.11",
        "--pip-conf", "pip.conf",
        "--pip-constraint", "constraints.txt",
        "-e", "my-runner",
        "--volume", "/data",
        "--volume", "/cache",
        "--port", "8080",
        "--port", "53/udp",
        "--env", "SOME_VAR=value with spaces",
        "--env", "URL=http://h/?a=b",
        "--env", "EMPTY=",
        "--image-prefix", "registry.example.com/team",
        "--image-base-name", "web",
        "-n", "registry.example.com/team/web-app:candidate",
        "--result-file", "out/result.yml",
        "--no-build-dependencies",
        "--no-build-image",
        "--no-push",
        "MyApp[Extra]==1.2.3",
    )  # fmt: skip

    assert run.exit_code == 0, run.stderr
    request = run.request
    config = request.config
    assert config.runtime.name == "bookworm/3.11"
    assert config.runtime.image == "debian:bookworm"
    assert config.pip_constraint == (tmp_path / "constraints.txt").resolve()
    assert config.entrypoint_name == "my-runner"
    assert config.volumes == ("/data", "/cache")
    assert config.ports == ("8080", "53/udp")
    assert config.env == (("SOME_VAR", "value with spaces"), ("URL", "http://h/?a=b"), ("EMPTY", ""))
    assert config.image_prefix == "registry.example.com/team"
    assert config.image_base_name == "web"
    assert request.image_name == "registry.example.com/team/web-app:candidate"
    assert request.result_file == Path("out/result.yml")
    assert request.build_dependencies is False
    assert request.build_image is False
    assert request.push is False
    assert request.pip.index_url == "https://pypi.example.com/simple"
    assert request.pip.timeout == "30"
    assert request.pip.sources == (str(Path("pip.conf")),)
    assert request.release.name == "myapp"
    assert request.release.extras == ("extra",)
    assert request.release.version == "1.2.3"
    assert config.sources["runtime"] == "command line"
    assert config.sources["entrypoint_name"] == "command line"


def test_defaults_reach_the_request(grocker) -> None:
    run = grocker("build", "ipython==8.18.1")

    assert run.exit_code == 0, run.stderr
    request = run.request
    config = request.config
    assert config.runtime.name == "trixie/3.13"
    assert config.pip_constraint is None
    assert config.entrypoint_name == "grocker-runner"
    assert (config.volumes, config.ports, config.env, config.repositories) == ((), (), (), ())
    assert (config.run_packages, config.build_packages) == ((), ())
    assert config.image_prefix is None
    assert config.image_base_name is None
    assert request.image_name == "ipython:8.18.1"
    assert request.result_file is None
    # No registry in the name: nothing to push.
    assert (request.build_dependencies, request.build_image, request.push) == (True, True, False)
    assert request.pip.index_url is None
    assert request.pip.sources == ()


def test_refresh_and_no_cache_reach_the_request(grocker) -> None:
    default = grocker("build", "ipython==8.18.1")
    run = grocker("build", "--refresh", "--no-cache", "ipython==8.18.1")

    assert run.exit_code == 0, run.stderr
    assert (default.request.refresh, default.request.no_cache) == (False, False)
    assert (run.request.refresh, run.request.no_cache) == (True, True)


def test_default_image_name_uses_prefix_and_base_name(grocker) -> None:
    run = grocker("build", "--image-prefix", "docker.example.com", "--image-base-name", "web", "uvicorn==0.32.0")

    assert run.exit_code == 0, run.stderr
    assert run.request.image_name == "docker.example.com/web:0.32.0"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], (True, True, True)),
        (["--build-dependencies"], (True, True, True)),
        (["--no-build-dependencies"], (False, True, True)),
        (["--build-image"], (True, True, True)),
        # Without --push/--no-push, pushing follows building the image.
        (["--no-build-image"], (True, False, False)),
        (["--no-build-image", "--push"], (True, False, True)),
        (["--push"], (True, True, True)),
        (["--no-push"], (True, True, False)),
        (["--no-build-dependencies", "--no-build-image", "--no-push"], (False, False, False)),
    ],
)
def test_phase_flags_reach_the_request(grocker, flags: list[str], expected: tuple[bool, bool, bool]) -> None:
    run = grocker("build", *flags, "-n", "registry.example.com/app:1", "ipython==8.18.1")

    assert run.exit_code == 0, run.stderr
    assert (run.request.build_dependencies, run.request.build_image, run.request.push) == expected


def test_an_image_name_without_registry_is_not_pushed_by_default(grocker) -> None:
    run = grocker("build", "ipython==8.18.1")

    assert run.exit_code == 0, run.stderr
    assert run.request.push is False
    assert "Not pushing" not in run.stderr


def test_only_the_image_reference_goes_to_stdout(grocker) -> None:
    run = grocker("build", "-n", "registry.example.com/app:1", "ipython==8.18.1")

    assert run.exit_code == 0
    assert run.stdout == "registry.example.com/app:1\n"


def test_image_name_without_tag_gets_latest(grocker) -> None:
    run = grocker("build", "-n", "localhost:5000/team/app", "ipython==8.18.1")

    assert run.exit_code == 0, run.stderr
    assert run.request.image_name == "localhost:5000/team/app:latest"


def test_unpinned_release_builds_with_an_image_name(grocker) -> None:
    run = grocker("build", "-n", "ipython:dev", "ipython")

    assert run.exit_code == 0, run.stderr
    assert run.request.release.version is None
    assert run.request.release.requirement == "ipython"
    assert run.request.image_name == "ipython:dev"


def test_cli_lists_replace_configured_lists_and_env_merges(grocker, tmp_path: Path) -> None:
    (tmp_path / ".grocker.yml").write_text(
        "volumes: [/from-file]\nports: [9000]\nenv: {FROM_FILE: '1', SHARED: file}\n"
    )

    run = grocker("build", "--volume", "/cli", "--port", "8080", "--env", "SHARED=cli", "ipython==8.18.1")

    assert run.exit_code == 0, run.stderr
    config = run.request.config
    assert config.volumes == ("/cli",)
    assert config.ports == ("8080",)
    assert dict(config.env) == {"FROM_FILE": "1", "SHARED": "cli"}


def test_project_file_is_read_without_config_option(grocker, tmp_path: Path) -> None:
    (tmp_path / ".grocker.yml").write_text("entrypoint_name: from-project-file\n")
    (tmp_path / "other.yml").write_text("ports: [8080]\n")

    default = grocker("build", "ipython==8.18.1")
    explicit = grocker("build", "-c", "other.yml", "ipython==8.18.1")

    assert default.request.config.entrypoint_name == "from-project-file"
    assert explicit.request.config.entrypoint_name == "grocker-runner"
    assert explicit.request.config.ports == ("8080",)


def test_config_files_apply_in_order(grocker, tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("entrypoint_name: a\nruntime: bookworm/3.11\n")
    (tmp_path / "b.yml").write_text("entrypoint_name: b\n")

    run = grocker("build", "-c", "a.yml", "-c", "b.yml", "ipython==8.18.1")

    assert run.exit_code == 0, run.stderr
    assert run.request.config.entrypoint_name == "b"
    assert run.request.config.runtime.name == "bookworm/3.11"


def test_deprecated_envs_key_is_accepted_with_a_warning(grocker, tmp_path: Path) -> None:
    (tmp_path / "old.yml").write_text("envs:\n  SOME_VAR: value\n  NUMBER: 45\n")

    run = grocker("build", "-c", "old.yml", "ipython==8.18.1")

    assert run.exit_code == 0, run.stderr
    assert run.request.config.env == (("SOME_VAR", "value"), ("NUMBER", "45"))
    assert "warning: old.yml: `envs` is deprecated, rename it to `env`." in run.stderr


def test_dry_run_prints_four_dockerfiles_and_never_builds(grocker) -> None:
    run = grocker("build", "--dry-run", "-e", "ipython", "--port", "8888", "ipython==8.18.1")

    assert run.exit_code == 0, run.stderr
    assert run.requests == []
    for role in ("root", "compiler", "wheel-server", "runner"):
        assert f"# ---- {role} image: Dockerfile" in run.stdout
    assert run.stdout.count("\nFROM ") == 4
    assert "FROM debian:trixie" in run.stdout
    assert 'ENTRYPOINT ["ipython"]' in run.stdout
    assert "EXPOSE 8888" in run.stdout
    assert "image: ipython:8.18.1" in run.stdout
    assert "entrypoint_name: ipython  [command line]" in run.stdout


def test_dry_run_masks_index_credentials(grocker, tmp_path: Path) -> None:
    (tmp_path / "pip.conf").write_text("[global]\nindex-url = https://deploy:s3cr3t-token@pypi.example.com/simple\n")

    run = grocker("build", "--dry-run", "--pip-conf", "pip.conf", "ipython==8.18.1")

    assert run.exit_code == 0, run.stderr
    assert "s3cr3t-token" not in run.stdout + run.stderr
    assert run.requests == []


def test_version(grocker) -> None:
    run = grocker("--version")

    assert run.exit_code == 0
    assert run.stdout == f"grocker, version {__version__}\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--help"], ["--version", "-v, --verbose", "-q, --quiet", "build", "purge"]),
        (
            ["build", "--help"],
            [
                "RELEASE",
                "-c, --config <filename>",
                "-r, --runtime <runtime>",
                "--pip-conf <filename>",
                "--pip-constraint <filename>",
                "-e, --entrypoint <entrypoint>",
                "--volume <volume>",
                "--port <port>",
                "--env <env=value>",
                "--image-prefix <uri>",
                "--image-base-name <name>",
                "-n, --image-name <name>",
                "--result-file <filename>",
                "--build-dependencies / --no-build-dependencies",
                "--build-image / --no-build-image",
                "--push / --no-push",
                "--dry-run",
            ],
        ),
        (
            ["purge", "--help"],
            ["-a, --all-versions / --only-old-versions", "-f, --including-final-images / --excluding-final-images"],
        ),
    ],
)
def test_help_lists_every_seed_option(grocker, args: list[str], expected: list[str]) -> None:
    run = grocker(*args)

    assert run.exit_code == 0
    for text in expected:
        assert text in run.stdout
    assert run.requests == []


# Each case: files to write, arguments, exit code, fragments the message must contain.
ERROR_CASES = {
    "unknown key": (
        {"conf.yml": "runtim: trixie/3.13\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`runtim` is not a Grocker setting", "Did you mean `runtime`?"],
    ),
    "unknown key in project file": (
        {".grocker.yml": "dependancies: {run: [libpq5]}\n"},
        ["ipython==8.18.1"],
        3,
        [".grocker.yml", "`dependancies`", "Did you mean `dependencies`?"],
    ),
    "wrong type": (
        {"conf.yml": "ports: 8080\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`ports` must be a list", "number 8080"],
    ),
    "wrong type for a string": (
        {"conf.yml": "entrypoint_name: [a, b]\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`entrypoint_name` must be a non-empty string", "list ['a', 'b']"],
    ),
    "empty value": (
        {"conf.yml": "volumes:\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`volumes` must be a list, got an empty value"],
    ),
    "pre-6.0 dependencies": (
        {"conf.yml": "dependencies:\n  - libzbar0: libzbar-dev\n  - nginx\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`dependencies`", "before 6.0", "dependencies: {run: [libpq5], build: [libpq-dev]}"],
    ),
    "pre-6.0 dependency inside run": (
        {"conf.yml": "dependencies:\n  run:\n    - libzbar0: libzbar-dev\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`dependencies.run`", "pre-6.0", "dependencies: {run: [libpq5], build: [libpq-dev]}"],
    ),
    "repository without key": (
        {"conf.yml": "repositories:\n  nginx:\n    uri: deb http://nginx.org/packages/debian/ trixie nginx\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`repositories.nginx.key` is missing", "PGP public key"],
    ),
    "repository without uri": (
        {"conf.yml": "repositories:\n  nginx:\n    key: |\n      " + PGP_KEY.replace("\n", "\n      ") + "\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`repositories.nginx.uri` is missing", "deb http://"],
    ),
    "repository key that is not a PGP key": (
        {
            "conf.yml": "repositories:\n  nginx:\n    uri: deb http://nginx.org/packages/debian/ trixie nginx\n"
            "    key: ssh-rsa AAAAB3NzaC1yc2E\n"
        },
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`repositories.nginx.key` must contain `-----BEGIN PGP PUBLIC KEY BLOCK-----`", "gpg --armor"],
    ),
    "repository uri that is not a deb line": (
        {
            "conf.yml": "repositories:\n  nginx:\n    uri: http://nginx.org/packages/debian/\n    key: |\n      "
            + PGP_KEY.replace("\n", "\n      ")
            + "\n"
        },
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`repositories.nginx.uri`", "deb ", "'http://nginx.org/packages/debian/'"],
    ),
    "apt repository on alpine": (
        {
            "conf.yml": "runtime: alpine/3.12\nrepositories:\n  extra:\n    uri: deb http://h/ x y\n    key: |\n      "
            + PGP_KEY.replace("\n", "\n      ")
            + "\n"
        },
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`repositories.extra.uri`", "alpine/3.12", "an apk repository"],
    ),
    "PGP key on alpine": (
        {
            "conf.yml": "runtime: alpine/3.12\nrepositories:\n  extra:\n    uri: https://h/alpine/main\n"
            "    key: |\n      " + PGP_KEY.replace("\n", "\n      ") + "\n"
        },
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`repositories.extra.key`", "-----BEGIN PUBLIC KEY-----", "RSA public key in PEM"],
    ),
    "env without =": (
        {},
        ["--env", "FOO", "ipython==8.18.1"],
        2,
        ["--env 'FOO' has no `=`", "--env NAME=VALUE"],
    ),
    "env with a bad name": (
        {},
        ["--env", "1FOO=bar", "ipython==8.18.1"],
        2,
        ["command-line", "`env`", "'1FOO'"],
    ),
    "env value on two lines": (
        {"conf.yml": "env:\n  MOTD: |\n    hello\n    world\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`env.MOTD` must be a single line"],
    ),
    "unknown runtime on the command line": (
        {},
        ["-r", "sid/3.15", "ipython==8.18.1"],
        2,
        ["Unknown runtime 'sid/3.15'", "trixie/3.13", "bookworm/3.11", "trixie/3.12", "trixie/3.14", "alpine/3.12"],
    ),
    "unknown runtime in a file": (
        {"conf.yml": "runtime: sid/3.15\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["Unknown runtime 'sid/3.15'", "conf.yml", "trixie/3.13"],
    ),
    "retired runtime on the command line": (
        {},
        ["-r", "jessie/2.7", "ipython==8.18.1"],
        2,
        ["'jessie/2.7'", "retired", "Use 'trixie/3.13' instead", "-r trixie/3.13"],
    ),
    "retired runtime in a file": (
        {"conf.yml": "runtime: alpine/3.6\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["'alpine/3.6'", "conf.yml", "retired", "Use 'alpine/3.12' instead"],
    ),
    "unpinned release without -n": (
        {},
        ["ipython"],
        2,
        ["'ipython'", "no exact version", "ipython==VERSION", "-n/--image-name NAME:TAG"],
    ),
    "release with a range": (
        {},
        ["ipython>=8"],
        2,
        ["'ipython>=8'", "no exact version", "Pin the release (ipython==VERSION)", "-n/--image-name"],
    ),
    "missing config file": (
        {},
        ["-c", "missing.yml", "ipython==8.18.1"],
        3,
        ["missing.yml does not exist", "-c/--config"],
    ),
    "yaml syntax error": (
        {"conf.yml": "runtime: trixie/3.13\nports: [8080\nvolumes: []\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml, line 3", "not valid YAML"],
    ),
    "config that is a list": (
        {"conf.yml": "- runtime: trixie/3.13\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml must hold a mapping", "not a list"],
    ),
    "config that is not utf-8": (
        {"conf.yml": b"env: {A: caf\xe9}\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml is not UTF-8"],
    ),
    "bad port on the command line": (
        {},
        ["--port", "70000", "ipython==8.18.1"],
        2,
        ["command-line", "`ports`", "1-65535", "'70000'"],
    ),
    "bad port in a file": (
        {"conf.yml": "ports: [http]\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`ports`", "1-65535", "'http'"],
    ),
    "relative volume": (
        {"conf.yml": "volumes: [data]\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`volumes`", "absolute", "'data'"],
    ),
    "invalid -n": (
        {},
        ["-n", "My Image:1", "ipython==8.18.1"],
        2,
        ["'My Image:1' is not a valid Docker reference"],
    ),
    "invalid prefix on the command line": (
        {},
        ["--image-prefix", "https://registry.example.com", "ipython==8.18.1"],
        2,
        ["command-line", "`docker_image_prefix`", "'https://registry.example.com'"],
    ),
    "invalid prefix in a file": (
        {"conf.yml": "docker_image_prefix: registry.example.com/My Team\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`docker_image_prefix`", "'registry.example.com/My Team'"],
    ),
    "base name without letters": (
        {"conf.yml": "image_base_name: '---'\n"},
        ["-c", "conf.yml", "ipython==8.18.1"],
        3,
        ["conf.yml", "`image_base_name`", "'---'"],
    ),
    "missing constraint file named by a config file": (
        {"conf/grocker.yml": "pip_constraint: constraints.txt\n"},
        ["-c", "conf/grocker.yml", "ipython==8.18.1"],
        3,
        ["conf/grocker.yml", "`pip_constraint`", "conf/constraints.txt", "does not exist"],
    ),
    "url requirement": (
        {},
        ["ipython @ https://files.example.com/ipython-8.18.1-py3-none-any.whl"],
        2,
        ["is a URL requirement", "path of the wheel or sdist"],
    ),
    "bare url": (
        {},
        ["https://files.example.com/ipython-8.18.1-py3-none-any.whl"],
        2,
        ["is a URL requirement"],
    ),
    "marker": (
        {},
        ['ipython==8.18.1; python_version >= "3.10"'],
        2,
        ["environment marker", "drop the `; ...` part"],
    ),
    "local path that does not exist": (
        {},
        ["dist/myapp-1.0.tar.gz"],
        2,
        ["looks like a path", "dist/myapp-1.0.tar.gz does not exist", "python -m build"],
    ),
    "wheel of another platform": (
        {"foo-1.0-cp313-cp313-win_amd64.whl": ""},
        ["foo-1.0-cp313-cp313-win_amd64.whl"],
        2,
        ["foo-1.0-cp313-cp313-win_amd64.whl", "cp313-cp313-win_amd64", "Linux, CPython 3.13", "sdist"],
    ),
    "wheel of another python": (
        {"foo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl": ""},
        ["foo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"],
        2,
        ["CPython 3.13"],
    ),
    "pip cert that does not exist": (
        {"pip.conf": "[global]\ncert = /nonexistent/ca.pem\n"},
        ["--pip-conf", "pip.conf", "ipython==8.18.1"],
        3,
        ["`cert`", "/nonexistent/ca.pem", "does not exist"],
    ),
}


@pytest.mark.parametrize(("files", "args", "exit_code", "fragments"), ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_errors_give_exit_code_and_one_line_message(
    grocker, tmp_path: Path, files: dict[str, str | bytes], args: list[str], exit_code: int, fragments: list[str]
) -> None:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

    run = grocker("build", *args)

    assert run.exit_code == exit_code, run.stderr
    assert run.requests == []
    assert run.stdout == ""
    assert run.stderr.startswith("error: ")
    assert run.stderr.count("\n") == 1, "one paragraph, no traceback"
    assert "Traceback" not in run.stderr
    for fragment in fragments:
        assert fragment in run.stderr


def test_traceback_only_at_double_verbose(grocker) -> None:
    quiet = grocker("build", "-r", "sid/3.15", "ipython==8.18.1")
    verbose = grocker("-vv", "build", "-r", "sid/3.15", "ipython==8.18.1")

    assert quiet.exit_code == verbose.exit_code == 2
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in verbose.stderr


def test_missing_pip_conf_is_a_usage_error(grocker) -> None:
    run = grocker("build", "--pip-conf", "nope.conf", "ipython==8.18.1")

    assert run.exit_code == 2
    assert "nope.conf" in run.stderr
    assert run.requests == []


def test_request_is_frozen(grocker) -> None:
    run = grocker("build", "ipython==8.18.1")

    request: BuildRequest = run.request
    with pytest.raises(AttributeError):
        request.image_name = "other"  # type: ignore[misc]


def test_version_range_builds_with_an_image_name(grocker) -> None:
    # Issue 13.1: as the seed's help says, a range is accepted with -n; the newest allowed is built.
    run = grocker("build", "ipython>=8.18,<9", "-n", "myipy:latest")

    assert run.exit_code == 0, run.stderr
    assert run.request.image_name == "myipy:latest"
    assert run.request.release.version is None
    assert run.request.release.requirement == "ipython<9,>=8.18"


@pytest.mark.parametrize(
    ("setup", "result_file", "fragment"),
    [
        ("directory", "out", "is a directory"),
        ("file-as-parent", "blocker/result.yml", "is not a directory"),
        ("file-as-grandparent", "blocker/deeper/result.yml", "is not a directory"),
    ],
)
def test_result_file_is_checked_before_any_engine_work(
    grocker, tmp_path: Path, setup: str, result_file: str, fragment: str
) -> None:
    # Issue 13.5: a bad --result-file used to fail only after the build and the push.
    if setup == "directory":
        (tmp_path / "out").mkdir()
    else:
        (tmp_path / "blocker").write_text("")

    for extra in ([], ["--dry-run"]):
        run = grocker("build", *extra, "--result-file", result_file, "ipython==8.18.1")

        assert run.exit_code == 3, run.stderr
        assert run.requests == []
        assert run.stdout == ""
        assert fragment in run.stderr
        assert run.stderr.count("\n") == 1


def test_result_file_folders_are_not_created_by_the_check(grocker, tmp_path: Path) -> None:
    run = grocker("build", "--dry-run", "--result-file", "new/folder/result.yml", "ipython==8.18.1")

    assert run.exit_code == 0, run.stderr
    assert not (tmp_path / "new").exists()


def test_dry_run_shows_the_runner_labels(grocker) -> None:
    # Issue 13.8: the runner's complete Dockerfile, its LABEL instruction included.
    run = grocker("build", "--dry-run", "ipython==8.18.1")

    runner = run.stdout.split("# ---- runner image: Dockerfile", 1)[1]
    assert run.exit_code == 0, run.stderr
    assert "\nLABEL " in runner
    for label in ('grocker.app.name="ipython"', 'grocker.app.version="8.18.1"', 'grocker.runtime="trixie/3.13"'):
        assert label in runner
    assert 'org.opencontainers.image.created="<build time>"' in runner


def test_dry_run_of_a_range_shows_a_placeholder_version(grocker) -> None:
    run = grocker("build", "--dry-run", "-n", "myipy:latest", "ipython>=8.18,<9")

    assert run.exit_code == 0, run.stderr
    assert 'grocker.app.version="<resolved version>"' in run.stdout
    assert "release: ipython<9,>=8.18" in run.stdout


@pytest.mark.parametrize("name", ["x" * 300, "a\x00b"])
def test_library_result_file_check_refuses_unusable_paths(tmp_path: Path, name: str) -> None:
    from grocker.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot be used"):
        api.check_result_file(tmp_path / name)


@pytest.mark.parametrize("verbosity", [[], ["-v"], ["-vv"]])
def test_relayed_output_hides_tokens_and_control_characters(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, verbosity: list[str]
) -> None:
    """Issue 20: a failed compile's tail and the engine output at -v, -vv: no token, no terminal control."""
    from grocker.config.pipconf import mask
    from grocker.errors import BuildError
    from grocker.log import logger

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pip.conf").write_text(
        "[global]\nindex-url = https://Tok3nTok3n:@pypi.fury.io/team/\n"
        "extra-index-url = https://pypi.fury.io/Sh0rtT0k/team/ https://Tok4nTok4n:x@idx.example.com/simple\n"
    )
    pip_output = [
        "Looking in indexes: https://Tok3nTok3n:****@pypi.fury.io/team/, https://pypi.fury.io/Sh0rtT0k/team/",
        "\x1b]0;owned\x07\x1b[2J401 Client Error for user Tok4nTok4n\r",
    ]

    def failing_build(request: BuildRequest, env: object = None) -> None:
        for line in pip_output:  # as Session.stream_line relays engine output
            logger.debug("  %s", mask(line, request.pip.secrets()))
        raise BuildError("The compile failed. Its output ends with:", details="\n".join(pip_output))

    monkeypatch.setattr(api, "build", failing_build)
    result = CliRunner().invoke(cli.main, [*verbosity, "build", "--pip-conf", "pip.conf", "demo==1.0"])

    assert result.exit_code == 5
    for token in ("Tok3nTok3n", "Sh0rtT0k", "Tok4nTok4n"):
        assert token not in result.stderr
    assert "\x1b" not in result.stderr
    assert "\x07" not in result.stderr
    assert "\r" not in result.stderr
    assert "401 Client Error" in result.stderr


@pytest.mark.parametrize(
    "how", [["--sbom", "blocker/sbom.cdx.json"], ["--sbom", "blocker/deeper/sbom.json"], ["-c", "sbom.yml"]]
)
def test_sbom_path_is_checked_before_any_engine_work(grocker, tmp_path: Path, how: list[str]) -> None:
    """Issue 20: an SBOM path that cannot be written failed only after the whole build."""
    (tmp_path / "blocker").write_text("")
    (tmp_path / "sbom.yml").write_text("sbom: blocker/sbom.cdx.json\n")

    for extra in ([], ["--dry-run"]):
        run = grocker("build", *extra, *how, "ipython==8.18.1")

        assert run.exit_code == 3, run.stderr
        assert run.requests == []
        assert "The SBOM file" in run.stderr
        assert run.stderr.count("\n") == 1


def test_the_request_carries_the_docker_config_folder(grocker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "ci-docker"))

    run = grocker("build", "ipython==8.18.1")

    assert run.request.docker_config == tmp_path / "ci-docker"
