"""Hostile and mistaken configuration (issues 11.2-11.4, 11.7, 13.4): each is refused before any
engine work with a one-paragraph error naming the file and the key, never a traceback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from grocker import api
from grocker.errors import ConfigError, UsageError

RELEASE_PIN = "ipython==8.18.1"
PGP_KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBE50MmIBCAD+FPYK\n-----END PGP PUBLIC KEY BLOCK-----\n"
# 451 bytes that PyYAML expands to hundreds of megabytes (nine levels of nine aliases).
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "ports: [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)


def write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def config_error(tmp_path: Path, data: object) -> ConfigError:
    project = write(tmp_path / "grocker.yml", data)
    with pytest.raises(ConfigError) as caught:
        api.load_config([project], cwd=tmp_path)
    assert caught.value.exit_code == 3
    assert "\n" not in caught.value.message
    assert len(caught.value.message) < 1000, "values in messages are shortened"
    return caught.value


def repository(uri: str) -> dict[str, object]:
    return {"repositories": {"private": {"uri": uri, "key": PGP_KEY}}}


@pytest.mark.parametrize(
    "uri",
    [
        "deb https://deploy:S3cretPassw0rd@apt.example.com/debian trixie main",
        "deb [arch=amd64] https://S3cretPassw0rd@apt.example.com/debian trixie main",
        "deb http://deploy:S3cretPassw0rd@apt.example.com/debian trixie main",
    ],
)
def test_repository_credentials_are_refused(tmp_path: Path, uri: str) -> None:
    error = config_error(tmp_path, repository(uri))

    assert "`repositories.private.uri` has credentials in its URL" in error.message
    assert "S3cretPassw0rd" not in error.message
    assert "auth.conf" in error.message
    assert "mirror" in error.message


@pytest.mark.parametrize(
    ("uri", "token"),
    [
        ("deb https://apt.example.com/Ab12Cd34Ef56Gh78Ij90/debian trixie main", "Ab12Cd34Ef56Gh78Ij90"),
        ("deb https://dl.cloudsmith.io/CsT0ken9/org/repo/deb/debian trixie main", "CsT0ken9"),
        ("deb [signed-by=/k.gpg] https://apt.fury.io/Sh0rtT0k/team/ /", "Sh0rtT0k"),
        ("deb https://apt.example.com/debian?token=abc123 trixie main", "abc123"),
        ("https://apk.example.com/Ab12Cd34Ef56Gh78Ij90/alpine/v3.22/main", "Ab12Cd34Ef56Gh78Ij90"),
    ],
)
def test_repository_path_tokens_are_refused(tmp_path: Path, uri: str, token: str) -> None:
    """Issue 20: a token in the path (or query) of an apt URL would ship in every layer, as user info would."""
    error = config_error(tmp_path, repository(uri))

    assert "`repositories.private.uri` has a token in its URL" in error.message
    assert token not in error.message
    assert "local mirror" in error.message


@pytest.mark.parametrize(
    "uri",
    [
        "deb http://deb.debian.org/debian trixie main",
        "deb https://dl.cloudsmith.io/public/org/repo/deb/debian trixie main",
        "deb https://download.docker.com/linux/debian trixie stable",
        "deb [arch=amd64] https://repo.example.com/apt/debian-13 trixie main",
    ],
)
def test_repository_urls_without_a_token_are_accepted(tmp_path: Path, uri: str) -> None:
    project = tmp_path / "tokenless.yml"
    write(project, repository(uri))

    config = api.load_config([project], cwd=tmp_path)

    assert config.repositories[0].uri == uri


def test_repository_path_tokens_never_reach_the_dry_run(grocker, tmp_path: Path) -> None:
    write(tmp_path / "conf.yml", repository("deb https://dl.cloudsmith.io/CsT0ken9/org/repo/deb/debian trixie main"))

    run = grocker("build", "--dry-run", "-c", "conf.yml", "ipython==8.18.1")

    assert run.exit_code == 3
    assert "CsT0ken9" not in run.stdout + run.stderr


def test_repository_credentials_never_reach_the_dry_run(grocker, tmp_path: Path) -> None:
    write(tmp_path / "conf.yml", repository("deb https://deploy:S3cretPassw0rd@apt.example.com/debian trixie main"))

    run = grocker("build", "--dry-run", "-c", "conf.yml", "ipython==8.18.1")

    assert run.exit_code == 3
    assert "S3cretPassw0rd" not in run.stdout + run.stderr
    assert "FROM" not in run.stdout


@pytest.mark.parametrize(
    ("values", "key"),
    [
        # `$` lets a trailing newline through: every pattern must match the whole value.
        ({"ports": ["8080\n"]}, "ports"),
        ({"env": {"NAME\n": "x"}}, "env"),
        ({"dependencies": {"run": ["libpq5\n"]}}, "dependencies.run"),
        ({"entrypoint_name": "runner\n"}, "entrypoint_name"),
        ({"docker_image_prefix": "registry.example.com\n"}, "docker_image_prefix"),
        ({"repositories": {"id\n": {"uri": "deb http://h/ a b", "key": PGP_KEY}}}, "repositories"),
        ({"runtimes": {"mine/3.13\n": {"image": "debian:trixie"}}}, "runtimes"),
        ({"runtimes": {"mine/3.13": {"image": "debian:trixie", "python_version": "3.13\n"}}}, "runtimes.mine/3.13"),
        # ASCII digits only: `\d` takes Arabic-Indic and full-width digits, which int() reads.
        ({"ports": ["٨٠٨٠"]}, "ports"),
        ({"ports": ["８０８０"]}, "ports"),
        # System packages go unquoted into `apt-get install` / `apk add`.
        ({"dependencies": {"run": ["py3-foo>=1.2"]}}, "dependencies.run"),
        ({"dependencies": {"run": ["libpq5<2"]}}, "dependencies.run"),
        ({"dependencies": {"build": ["gcc;rm"]}}, "dependencies.build"),
        ({"dependencies": {"build": ["$(id)"]}}, "dependencies.build"),
        ({"dependencies": {"build": ["a'b"]}}, "dependencies.build"),
        ({"dependencies": {"build": ['a"b']}}, "dependencies.build"),
        ({"dependencies": {"build": ["a\tb"]}}, "dependencies.build"),
        ({"dependencies": {"build": ["a`b`"]}}, "dependencies.build"),
        ({"dependencies": {"build": ["a|b"]}}, "dependencies.build"),
        ({"dependencies": {"build": ["a&b"]}}, "dependencies.build"),
        ({"runtimes": {"mine/3.13": {"image": "debian:trixie", "dependencies": {"run": ["x>y"]}}}}, "runtimes"),
        ({"runtimes": {"mine/3.13": {"image": "debian:trixie\nRUN id"}}}, "runtimes.mine/3.13.image"),
        ({"runtimes": {"mine/3.13": {"image": "debian:trixie", "python": "python3; id"}}}, "runtimes.mine/3.13.python"),
        ({"env": {"A": "x\x00y"}}, "env.A"),
        ({"env": {"A": "x\x1b[31m"}}, "env.A"),
        ({"env": {"A": "x\ry"}}, "env.A"),
        ({"repositories": {"r": {"uri": "deb http://h/ a b\x1b", "key": PGP_KEY}}}, "repositories.r.uri"),
    ],
)
def test_hostile_values_are_refused(tmp_path: Path, values: dict[str, object], key: str) -> None:
    error = config_error(tmp_path, values)

    assert f": `{key}" in error.message


def test_alpine_version_constraint_gets_a_hint(tmp_path: Path) -> None:
    error = config_error(tmp_path, {"dependencies": {"run": ["py3-foo>=1.2"]}})

    assert "py3-foo=1.2" in error.message


@pytest.mark.parametrize(
    "package", ["libpq5", "python3=3.13.1-2", "libc6:amd64", "nginx/trixie-backports", "py3-foo~1.2"]
)
def test_ordinary_package_names_pass(tmp_path: Path, package: str) -> None:
    project = write(tmp_path / "grocker.yml", {"dependencies": {"run": [package]}})

    assert api.load_config([project], cwd=tmp_path).run_packages == (package,)


def test_long_values_are_shortened_in_messages(tmp_path: Path) -> None:
    error = config_error(tmp_path, {"ports": ["x" * 100_000]})

    assert "…" in error.message
    assert len(error.message) < 400


# ---- pip_constraint from a file stays under that file's directory (issue 11.4)


@pytest.mark.parametrize("constraint", ["../../.netrc", "/etc/passwd", "~/.netrc", "sub/../../outside.txt"])
def test_constraint_outside_the_config_directory_is_refused(tmp_path: Path, constraint: str) -> None:
    project_dir = tmp_path / "a" / "b"
    write(tmp_path / ".netrc", "machine x login y password z\n")
    write(tmp_path / "a" / "outside.txt", "x\n")

    error = config_error(project_dir, {"pip_constraint": constraint})

    assert "`pip_constraint`" in error.message
    assert "outside the directory of this file" in error.message
    assert "--pip-constraint" in error.message


def test_constraint_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    secret = write(tmp_path / "home" / ".netrc", "machine x login y password z\n")
    project_dir = tmp_path / "project"
    project_dir.mkdir()
    (project_dir / "constraints.txt").symlink_to(secret)

    error = config_error(project_dir, {"pip_constraint": "constraints.txt"})

    assert "outside the directory of this file" in error.message


def test_constraint_symlink_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")

    error = config_error(tmp_path, {"pip_constraint": "loop"})

    assert "`pip_constraint`" in error.message


def test_constraint_beside_or_below_the_file_is_accepted(tmp_path: Path) -> None:
    constraint = write(tmp_path / "deps" / "constraints.txt", "six==1.16.0\n")
    project = write(tmp_path / "grocker.yml", {"pip_constraint": "deps/constraints.txt"})

    assert api.load_config([project], cwd=tmp_path).pip_constraint == constraint.resolve()


def test_constraint_on_the_command_line_may_be_anywhere(tmp_path: Path) -> None:
    constraint = write(tmp_path / "elsewhere" / "constraints.txt", "six==1.16.0\n")
    project = write(tmp_path / "project" / "grocker.yml", {})

    config = api.load_config([project], cwd=tmp_path / "project", overrides={"pip_constraint": str(constraint)})

    assert config.pip_constraint == constraint


@pytest.mark.parametrize("kind", ["fifo", "devzero", "directory", "large"])
def test_constraint_must_be_a_small_regular_file(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "constraints.txt"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    elif kind == "large":
        target.write_bytes(b"#" * (2 << 20))
    else:
        target = Path("/dev/zero")

    with pytest.raises(UsageError) as caught:
        api.load_config([], cwd=tmp_path, overrides={"pip_constraint": str(target)})

    assert caught.value.exit_code == 2
    assert "`pip_constraint` is not usable" in caught.value.message


# ---- the YAML itself (issue 11.7)


def test_duplicate_keys_name_the_key_and_both_lines(tmp_path: Path) -> None:
    error = config_error(tmp_path, "runtime: trixie/3.13\nports: [80]\nruntime: bookworm/3.11\n")

    assert "'runtime' twice" in error.message
    assert "lines 1 and 3" in error.message


def test_duplicate_keys_in_a_nested_mapping(tmp_path: Path) -> None:
    error = config_error(tmp_path, "env:\n  A: 1\n  B: 2\n  A: 3\n")

    assert "'A' twice" in error.message
    assert "lines 2 and 4" in error.message


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = "runtimes:\n  base: &base {image: 'debian:trixie', python_version: '3.13'}\n  mine/3.13:\n    <<: *base\n"
    # `base` is not a valid runtime name: only the duplicate check is under test here.
    error = config_error(tmp_path, text)

    assert "twice" not in error.message


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    assert len(ALIAS_BOMB) < 500
    start = time.monotonic()

    error = config_error(tmp_path, ALIAS_BOMB)

    assert time.monotonic() - start < 2.0
    assert "aliases" in error.message


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    error = config_error(tmp_path, "ports: &a [*a]\n")

    assert "alias inside the value it refers to" in error.message


def test_moderate_aliases_are_accepted(tmp_path: Path) -> None:
    text = "dependencies:\n  run: &pkgs [libpq5]\n  build: *pkgs\n"
    project = write(tmp_path / "grocker.yml", text)

    config = api.load_config([project], cwd=tmp_path)

    assert config.run_packages == config.build_packages == ("libpq5",)


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    error = config_error(tmp_path, "env: " + "[" * 5000 + "]" * 5000 + "\n")

    assert "nests its values too deeply" in error.message


@pytest.mark.parametrize(
    ("value", "shown"),
    [("2024-01-01", "date"), ("!!set {a, b}", "set"), ("!!binary aGVsbG8=", "bytes"), ("[1, 2]", "list")],
)
def test_env_values_that_are_not_scalars_are_refused(tmp_path: Path, value: str, shown: str) -> None:
    error = config_error(tmp_path, f"env:\n  A: {value}\n")

    assert "`env.A` must be a string or a number" in error.message
    assert shown in error.message


# ---- the files themselves (issue 11.7)


def test_config_file_that_is_a_fifo_or_a_device_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "conf.fifo"
    os.mkfifo(fifo)

    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(ConfigError, match="is not a regular file"):
            api.load_config([path], cwd=tmp_path)


def test_config_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yml"
    big.write_text("# padding\n" * 200_000)

    with pytest.raises(ConfigError, match="is larger than 1024 KiB"):
        api.load_config([big], cwd=tmp_path)


def test_config_file_symlink_loop_is_refused(tmp_path: Path) -> None:
    loop = tmp_path / "loop.yml"
    loop.symlink_to(loop)

    with pytest.raises(ConfigError, match="cannot be read: Too many levels of symbolic links"):
        api.load_config([loop], cwd=tmp_path)


def test_project_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".grocker.yml").mkdir()

    with pytest.raises(ConfigError, match=r"\.grocker\.yml is a directory"):
        api.load_config([], cwd=tmp_path)


def test_project_file_that_is_a_broken_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".grocker.yml").symlink_to(tmp_path / "gone.yml")

    with pytest.raises(ConfigError, match=r"\.grocker\.yml is a symbolic link to .*gone\.yml, which does not exist"):
        api.load_config([], cwd=tmp_path)


# ---- runtimes entries as strictly as the rest (issue 13.4)


def test_unknown_runtime_field_suggests_the_nearest(tmp_path: Path) -> None:
    error = config_error(tmp_path, {"runtimes": {"mine/3.13": {"imgae": "debian:trixie"}}})

    assert "`runtimes.mine/3.13.imgae` is not a runtime field" in error.message
    assert "Did you mean `image`?" in error.message


def test_unknown_field_in_an_unused_runtime_is_refused_too(tmp_path: Path) -> None:
    error = config_error(tmp_path, {"runtimes": {"trixie/3.13": {"pyhton": "python3"}}})

    assert "Did you mean `python`?" in error.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("runtimes:\n  1: {image: 'debian:trixie'}\n", "names must be `<distribution>/<python version>`"),
        ("runtimes:\n  mine/3.10: {image: 'debian:trixie', python_version: 3.10}\n", "put it in quotes"),
        ("runtimes:\n  mine/3.13: [debian]\n", "must be a mapping of image"),
        ("runtimes:\n  mine/3.13: {image: 'debian:trixie', dependencies: {rum: [x]}}\n", "Did you mean `run`?"),
    ],
)
def test_runtime_entries_are_checked(tmp_path: Path, text: str, fragment: str) -> None:
    error = config_error(tmp_path, text)

    assert fragment in error.message


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Names of files that open() refuses with EACCES (tests run as root, which chmod cannot stop)."""
    names: set[str] = set()
    real_open = Path.open

    def fake_open(self: Path, *args: object, **kwargs: object) -> object:
        if self.name in names:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", fake_open)
    return names


def test_unreadable_files_are_refused_before_any_engine_work(grocker, tmp_path: Path, unreadable: set[str]) -> None:
    write(tmp_path / "constraints.txt", "six==1.16.0\n")
    write(tmp_path / "ca.pem", "-----BEGIN CERTIFICATE-----\n")
    write(tmp_path / "pip.conf", f"[global]\ncert = {tmp_path / 'ca.pem'}\n")
    (tmp_path / "app-1.0-py3-none-any.whl").write_bytes(b"")
    unreadable.update({"constraints.txt", "ca.pem", "app-1.0-py3-none-any.whl"})
    cases = [
        (["--dry-run", "--pip-constraint", "constraints.txt", RELEASE_PIN], 2, "constraints.txt"),
        (["--dry-run", "--pip-conf", "pip.conf", RELEASE_PIN], 3, "ca.pem"),
        (["--dry-run", "./app-1.0-py3-none-any.whl"], 2, "app-1.0-py3-none-any.whl"),
    ]

    for args, code, name in cases:
        run = grocker("build", *args)

        assert run.exit_code == code, run.stderr
        assert name in run.stderr
        assert "cannot be read" in run.stderr
        assert run.stdout == ""
