"""RELEASE: a pinned requirement, or the path of a wheel or sdist of the application."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from grocker.config.release import Release, check_wheel_platform, parse_release
from grocker.errors import UsageError


@pytest.mark.parametrize(
    ("text", "name", "extras", "version", "requirement"),
    [
        ("ipython==8.18.1", "ipython", (), "8.18.1", "ipython==8.18.1"),
        ("IPython==8.18.1", "ipython", (), "8.18.1", "ipython==8.18.1"),
        ("uvicorn[standard]==0.32.0", "uvicorn", ("standard",), "0.32.0", "uvicorn[standard]==0.32.0"),
        ("My_App[Zeta, alpha]==1.0", "my-app", ("alpha", "zeta"), "1.0", "my-app[alpha,zeta]==1.0"),
        ("app===1.0+local", "app", (), "1.0+local", "app==1.0+local"),
        ("  app == 2.0  ", "app", (), "2.0", "app==2.0"),
        ("app", "app", (), None, "app"),
    ],
)
def test_requirements(text: str, name: str, extras: tuple[str, ...], version: str | None, requirement: str) -> None:
    release = parse_release(text, Path("/nowhere"))

    assert (release.name, release.extras, release.version, release.path) == (name, extras, version, None)
    assert release.requirement == requirement
    assert release.extras_text == ",".join(extras)
    assert release.is_wheel is False


@pytest.mark.parametrize(
    ("text", "requirement"),
    [
        ("app>=1.0", "app>=1.0"),
        ("app==1.*", "app==1.*"),
        ("app~=1.0", "app~=1.0"),
        ("app>1,<2", "app<2,>1"),
        ("App[X]>=8.18,<9", "app[x]<9,>=8.18"),
    ],
)
def test_ranges_keep_their_specifier(text: str, requirement: str) -> None:
    # As the seed says: the newest version the range allows is built (an image name is then needed).
    release = parse_release(text, Path("/nowhere"))

    assert release.version is None
    assert release.requirement == requirement
    pinned = release.pinned("8.19.0")
    assert (pinned.version, pinned.specifier) == ("8.19.0", "")
    assert pinned.requirement.endswith("==8.19.0")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("app @ https://example.com/app-1.0.tar.gz", "is a URL requirement"),
        ("app[x]@https://example.com/app-1.0-py3-none-any.whl", "is a URL requirement"),
        ("https://example.com/app-1.0-py3-none-any.whl", "is a URL requirement"),
        ("git+https://example.com/app.git", "is a URL requirement"),
        ('app==1.0; python_version >= "3.10"', "has an environment marker"),
        ("app=1.0", "is not a valid requirement"),
        ("", "is not a valid requirement"),
    ],
)
def test_invalid_releases(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_release(text, Path("/nowhere"))

    assert message in caught.value.message
    assert "\n" not in caught.value.message
    assert caught.value.exit_code == 2


def test_wheel_path(tmp_path: Path) -> None:
    wheel = tmp_path / "dist" / "My_App-1.2.0-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"")

    release = parse_release("dist/My_App-1.2.0-py3-none-any.whl[web]", tmp_path)

    assert release.name == "my-app"
    assert release.version == "1.2.0"
    assert release.extras == ("web",)
    assert release.path == wheel
    assert release.is_wheel is True
    assert release.requirement == "my-app[web]==1.2.0"


@pytest.mark.parametrize("file_name", ["myapp-2.0.tar.gz", "myapp-2.0.zip"])
def test_sdist_path(tmp_path: Path, file_name: str) -> None:
    (tmp_path / file_name).write_bytes(b"")

    release = parse_release(file_name, tmp_path)

    assert (release.name, release.version, release.path) == ("myapp", "2.0", tmp_path / file_name)
    assert release.is_wheel is False


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        parse_release("./dist/myapp-1.0.tar.gz", tmp_path)

    assert f"{tmp_path}/dist/myapp-1.0.tar.gz does not exist" in caught.value.message
    assert "NAME==VERSION" in caught.value.message


@pytest.mark.parametrize(
    ("file_name", "message"),
    [
        ("notes/readme.txt", "is neither a wheel (.whl) nor an sdist"),
        ("badly-named.whl", "is not a standard package file name"),
        ("nope.tar.gz", "is not a standard package file name"),
    ],
)
def test_files_that_are_not_packages(tmp_path: Path, file_name: str, message: str) -> None:
    path = tmp_path / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")

    with pytest.raises(UsageError) as caught:
        parse_release(file_name, tmp_path)

    assert caught.value.message.startswith("RELEASE ")
    assert message in caught.value.message


def _wheel(file_name: str) -> Release:
    return Release(text=file_name, name="foo", version="1.0", path=Path("/dist") / file_name)


@pytest.mark.parametrize(
    ("file_name", "python_version"),
    [
        ("foo-1.0-py3-none-any.whl", "3.13"),
        ("foo-1.0-py2.py3-none-any.whl", "3.11"),
        ("foo-1.0-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "3.13"),
        ("foo-1.0-cp39-abi3-manylinux_2_17_x86_64.whl", "3.13"),
        ("foo-1.0-cp310-abi3-linux_x86_64.whl", "3.10"),
    ],
)
def test_wheels_that_install_on_the_runtime(file_name: str, python_version: str) -> None:
    check_wheel_platform(_wheel(file_name), python_version)


@pytest.mark.parametrize(
    ("file_name", "python_version"),
    [
        ("foo-1.0-cp313-cp313-win_amd64.whl", "3.13"),
        ("foo-1.0-cp313-cp313-macosx_11_0_arm64.whl", "3.13"),
        ("foo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", "3.13"),
        ("foo-1.0-cp311-abi3-manylinux_2_17_x86_64.whl", "3.10"),
        ("foo-1.0-py2-none-any.whl", "3.13"),
    ],
)
def test_wheels_of_another_platform_are_refused(file_name: str, python_version: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_wheel_platform(_wheel(file_name), python_version)

    assert caught.value.message.startswith(f"Wheel {file_name} is built for ")
    assert f"CPython {python_version}" in caught.value.message
    assert "Give the sdist instead" in caught.value.message


def test_platform_check_ignores_requirements_and_sdists() -> None:
    check_wheel_platform(Release(text="foo==1.0", name="foo", version="1.0"), "3.13")
    check_wheel_platform(Release(text="x", name="foo", version="1.0", path=Path("foo-1.0.tar.gz")), "3.13")


def test_musl_wheels_install_on_alpine_only() -> None:
    musl = _wheel("foo-1.0-cp312-cp312-musllinux_1_2_x86_64.whl")
    glibc = _wheel("foo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl")

    check_wheel_platform(musl, "3.12", "alpine")
    check_wheel_platform(glibc, "3.12", "debian")
    with pytest.raises(UsageError, match="glibc: manylinux"):
        check_wheel_platform(musl, "3.12", "debian")
    with pytest.raises(UsageError, match="musl: musllinux"):
        check_wheel_platform(glibc, "3.12", "alpine")


@pytest.mark.parametrize(
    "file_name",
    ["foo-1.0-cp3x-abi3-manylinux_2_17_x86_64.whl", "foo-1.0-cpX-abi3-linux_x86_64.whl", "foo-1.0-cp-abi3-any.whl"],
)
def test_odd_python_tags_are_refused_not_crashed(file_name: str) -> None:
    with pytest.raises(UsageError, match="Give the sdist instead"):
        check_wheel_platform(_wheel(file_name), "3.13")


def test_symlink_loop_as_release_is_a_usage_error(tmp_path: Path) -> None:
    loop = tmp_path / "app-1.0-py3-none-any.whl"
    loop.symlink_to(loop)

    with pytest.raises(UsageError) as caught:
        parse_release(loop.name, tmp_path)

    assert "\n" not in caught.value.message


@pytest.mark.parametrize("extras", ["a b", "x;rm", "$(id)", "-x", "x-", 'a"b', "é"])
def test_extras_of_a_path_are_pep508_names(tmp_path: Path, extras: str) -> None:
    (tmp_path / "app-1.0-py3-none-any.whl").write_bytes(b"")

    with pytest.raises(UsageError, match="is not a valid extra name"):
        parse_release(f"./app-1.0-py3-none-any.whl[{extras}]", tmp_path)


@pytest.mark.parametrize("text", ["app==1.0\n", "app==1.0\nRUN id", "app\x00==1.0"])
def test_line_breaks_and_nul_are_refused(text: str) -> None:
    with pytest.raises(UsageError):
        parse_release(text + "x" if text.endswith("\n") else text, Path("/nowhere"))


def test_a_directory_as_release_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "app-1.0.tar.gz").mkdir()

    with pytest.raises(UsageError, match="is not a regular file"):
        parse_release("./app-1.0.tar.gz", tmp_path)


@pytest.mark.parametrize(
    "name",
    [
        "foo-1.0-py3-none-any$(id).whl",
        "fóo-1.0-py3-none-any.whl",
        "foo-1.0-py3-none-an\u0660.whl",
        "foo bar-1.0.tar.gz",
        "foo-1.0-py3-none-any;x.whl",
        "foo-1.0-py3-none-any`x`.whl",
    ],
)
def test_hostile_local_file_names_are_refused_at_once(tmp_path: Path, name: str) -> None:
    """Issue 20: packaging accepts them; the build refused them late, saying the volume was tampered with."""
    (tmp_path / name).write_bytes(b"PK")

    with pytest.raises(UsageError) as raised:
        parse_release(str(tmp_path / name), tmp_path)

    assert "has characters a package file name does not have" in raised.value.message
    assert "tampered" not in raised.value.message


@pytest.mark.parametrize(
    "name", ["zope.interface-6.0.tar.gz", "My_App-1.0rc1+local.1-py3-none-any.whl", "pkg-1.0.post1.zip"]
)
def test_standard_local_file_names_pass(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"PK")

    assert parse_release(str(tmp_path / name), tmp_path).path == tmp_path / name


def test_the_local_name_patterns_are_the_publishers(tmp_path: Path) -> None:
    from grocker.config import release
    from tests.unit.conftest import load_publishing

    publisher = load_publishing("names")
    for name in ("a-1.0-py3-none-any.whl", "a_b.c-1.0-1abc-cp313-cp313-manylinux_2_17_x86_64.whl", "a-1-x-y-z$.whl"):
        assert bool(release.WHEEL_NAME_RE.fullmatch(name)) == bool(publisher.WHEEL_RE.fullmatch(name))
    for name in ("a-1.0.tar.gz", "a.b-c-1.0.zip", "a b-1.0.tar.gz", "-a-1.tar.gz"):
        assert bool(release.SDIST_NAME_RE.fullmatch(name)) == bool(publisher.SDIST_RE.fullmatch(name))


@pytest.mark.parametrize("text", ["[" * 100_000, "a/[" * 100_000, "/[" * 50_000 + "]", "x[" * 100_000 + "]"])
def test_a_huge_release_is_refused_in_linear_time(tmp_path: Path, text: str) -> None:
    """Issue 20: 100,000 `[` took quadratic time in the path/extras pattern."""
    start = time.monotonic()

    with pytest.raises(UsageError) as raised:
        parse_release(text, tmp_path)

    assert time.monotonic() - start < 1.0
    assert len(raised.value.message) < 600


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dist/a.whl", ("dist/a.whl", "")),
        ("dist/a.whl[x,y]", ("dist/a.whl", "x,y")),
        ("dist/a.whl[]", ("dist/a.whl", "")),
        ("a[b[c]", ("a", "b[c")),
        ("a]b[c]", ("a]b", "c")),
        ("[x]", ("[x]", "")),
        ("a[b]c", ("a[b]c", "")),
    ],
)
def test_split_extras(text: str, expected: tuple[str, str]) -> None:
    from grocker.config.release import split_extras

    assert split_extras(text) == expected
