"""pip settings, read the way pip reads them; credentials masked. Never the machine's files:
every test passes `env`, `home` and `system_dir` inside tmp_path."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from grocker.config.pipconf import PipSettings, config_files, load_pip_settings, mask, public_url
from grocker.errors import ConfigError, UsageError


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    path = tmp_path / "etc"
    path.mkdir()
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_files_in_pip_order(tmp_path: Path, home: Path, etc: Path) -> None:
    env_file = write(tmp_path / "env.conf", "")
    env = {
        "XDG_CONFIG_DIRS": f"{tmp_path}/xdg1:{tmp_path}/xdg2",
        "VIRTUAL_ENV": str(tmp_path / "venv"),
        "PIP_CONFIG_FILE": str(tmp_path / "absent.conf"),
    }

    files = config_files(env, home, etc)
    with_env_file = config_files({**env, "PIP_CONFIG_FILE": str(env_file)}, home, etc)

    assert files == [
        tmp_path / "xdg1" / "pip" / "pip.conf",
        tmp_path / "xdg2" / "pip" / "pip.conf",
        etc / "pip.conf",
        home / ".pip" / "pip.conf",
        home / ".config" / "pip" / "pip.conf",
        tmp_path / "venv" / "pip.conf",
        tmp_path / "absent.conf",
    ]
    # As pip does: an existing PIP_CONFIG_FILE replaces the user's files.
    assert with_env_file == [
        tmp_path / "xdg1" / "pip" / "pip.conf",
        tmp_path / "xdg2" / "pip" / "pip.conf",
        etc / "pip.conf",
        tmp_path / "venv" / "pip.conf",
        env_file,
    ]


def test_default_locations(home: Path, etc: Path) -> None:
    assert config_files({}, home, etc) == [
        etc / "xdg" / "pip" / "pip.conf",
        etc / "pip.conf",
        home / ".pip" / "pip.conf",
        home / ".config" / "pip" / "pip.conf",
    ]
    assert config_files({"XDG_CONFIG_HOME": "/xdg/home"}, home, etc)[-1] == Path("/xdg/home/pip/pip.conf")


def test_devnull_config_file_disables_every_file(home: Path, etc: Path) -> None:
    write(home / ".config" / "pip" / "pip.conf", "[global]\nindex-url = https://user.example.com/simple\n")

    assert config_files({"PIP_CONFIG_FILE": os.devnull}, home, etc) == []
    assert load_pip_settings(None, {"PIP_CONFIG_FILE": os.devnull}, home, etc) == PipSettings()


def test_later_files_win(tmp_path: Path, home: Path, etc: Path) -> None:
    write(etc / "pip.conf", "[global]\nindex-url = https://etc.example.com/simple\ntimeout = 10\nretries = 2\n")
    write(home / ".pip" / "pip.conf", "[global]\nindex-url = https://legacy.example.com/simple\ntimeout = 20\n")
    write(home / ".config" / "pip" / "pip.conf", "[global]\nindex-url = https://user.example.com/simple\n")

    settings = load_pip_settings(None, {}, home, etc)

    assert settings.index_url == "https://user.example.com/simple"
    assert settings.timeout == "20"
    assert settings.retries == "2"
    assert settings.sources == (
        str(etc / "pip.conf"),
        str(home / ".pip" / "pip.conf"),
        str(home / ".config" / "pip" / "pip.conf"),
    )


def test_wheel_section_beats_global_of_a_later_file(home: Path, etc: Path) -> None:
    # pip pools the files first, then applies [global], then the command's section.
    write(etc / "pip.conf", "[wheel]\nindex-url = https://wheel.example.com/simple\n")
    write(home / ".config" / "pip" / "pip.conf", "[global]\nindex-url = https://global.example.com/simple\n")

    assert load_pip_settings(None, {}, home, etc).index_url == "https://wheel.example.com/simple"


def test_other_sections_are_ignored(home: Path, etc: Path) -> None:
    write(etc / "pip.conf", "[install]\nindex-url = https://install.example.com/simple\n")

    assert load_pip_settings(None, {}, home, etc).index_url is None


def test_pip_variables_override_files(home: Path, etc: Path) -> None:
    write(
        home / ".config" / "pip" / "pip.conf",
        "[wheel]\nindex-url = https://file.example.com/simple\ntrusted-host = file.example.com\n",
    )
    env = {
        "PIP_INDEX_URL": "https://env.example.com/simple",
        "PIP_EXTRA_INDEX_URL": "https://extra1.example.com/simple https://extra2.example.com/simple",
        "PIP_DEFAULT_TIMEOUT": "60",
        "PIP_RETRIES": "",
        "PIP_NO_CACHE_DIR": "1",
    }

    settings = load_pip_settings(None, env, home, etc)

    assert settings.index_url == "https://env.example.com/simple"
    assert settings.extra_index_urls == ("https://extra1.example.com/simple", "https://extra2.example.com/simple")
    assert settings.trusted_hosts == ("file.example.com",)
    assert settings.timeout == "60"
    assert settings.retries is None
    assert settings.sources == (
        str(home / ".config" / "pip" / "pip.conf"),
        "PIP_DEFAULT_TIMEOUT",
        "PIP_EXTRA_INDEX_URL",
        "PIP_INDEX_URL",
    )


def test_pip_conf_option_is_read_alone(tmp_path: Path, home: Path, etc: Path) -> None:
    write(etc / "pip.conf", "[global]\ntimeout = 99\n")
    write(home / ".config" / "pip" / "pip.conf", "[global]\nretries = 9\n")
    chosen = write(tmp_path / "ci-pip.conf", "[global]\nindex-url = https://ci.example.com/simple\n")
    env = {"PIP_INDEX_URL": "https://env.example.com/simple", "PIP_TIMEOUT": "1"}

    settings = load_pip_settings(chosen, env, home, etc)

    assert settings == PipSettings(index_url="https://ci.example.com/simple")
    assert settings.sources == (str(chosen),)


def test_missing_pip_conf_option_is_a_usage_error(tmp_path: Path, home: Path, etc: Path) -> None:
    with pytest.raises(UsageError, match=r"--pip-conf .*absent\.conf does not exist"):
        load_pip_settings(tmp_path / "absent.conf", {}, home, etc)


def test_option_spellings_pip_accepts(tmp_path: Path, home: Path, etc: Path) -> None:
    conf = write(
        tmp_path / "pip.conf",
        "[global]\nINDEX_URL = https://a.example.com/simple\nextra_index_url = https://b.example.com/simple\n"
        "default-timeout = 15\ntrusted_host =\n    a.example.com\n    b.example.com\n",
    )

    settings = load_pip_settings(conf, {}, home, etc)

    assert settings.index_url == "https://a.example.com/simple"
    assert settings.extra_index_urls == ("https://b.example.com/simple",)
    assert settings.timeout == "15"
    assert settings.trusted_hosts == ("a.example.com", "b.example.com")


def test_percent_in_a_value_is_literal(tmp_path: Path, home: Path, etc: Path) -> None:
    conf = write(tmp_path / "pip.conf", "[global]\nindex-url = https://deploy:p%40ss%word@pypi.example.com/simple\n")

    settings = load_pip_settings(conf, {}, home, etc)

    assert settings.index_url == "https://deploy:p%40ss%word@pypi.example.com/simple"
    # Raw and percent-decoded (pip may print either); the user name is not a secret.
    assert settings.secrets() == ("p%40ss%word", "p@ss%word")


def test_unparsable_file_is_a_config_error(tmp_path: Path, home: Path, etc: Path) -> None:
    conf = write(tmp_path / "pip.conf", "index-url = https://no-section.example.com/simple\n")

    with pytest.raises(ConfigError) as caught:
        load_pip_settings(conf, {}, home, etc)

    assert caught.value.exit_code == 3
    assert f"pip configuration {conf} cannot be parsed" in caught.value.message


def test_local_indexes_and_find_links_are_skipped_and_reported(tmp_path: Path, home: Path, etc: Path) -> None:
    conf = write(
        tmp_path / "pip.conf",
        "[global]\nindex-url = file:///srv/simple\n"
        "extra-index-url = https://extra.example.com/simple /srv/other\n"
        "find-links = /srv/wheels https://wheels.example.com/links file:///srv/more\n",
    )

    settings = load_pip_settings(conf, {}, home, etc)

    assert settings.index_url is None
    assert settings.extra_index_urls == ("https://extra.example.com/simple",)
    assert settings.find_links == ("https://wheels.example.com/links",)
    assert settings.skipped == (
        "index-url file:///srv/simple",
        "extra-index-url /srv/other",
        "find-links /srv/wheels",
        "find-links file:///srv/more",
    )


def test_certificates(tmp_path: Path, home: Path, etc: Path) -> None:
    cert = write(tmp_path / "ca.pem", "-----BEGIN CERTIFICATE-----\n")
    client = write(tmp_path / "client.pem", "-----BEGIN CERTIFICATE-----\n")
    conf = write(tmp_path / "pip.conf", f"[global]\ncert = {cert}\nclient-cert = {client}\n")

    settings = load_pip_settings(conf, {}, home, etc)

    assert (settings.cert, settings.client_cert) == (cert, client)


@pytest.mark.parametrize("key", ["cert", "client-cert"])
def test_missing_certificate_is_a_config_error(tmp_path: Path, home: Path, etc: Path, key: str) -> None:
    conf = write(tmp_path / "pip.conf", f"[global]\n{key} = {tmp_path}/missing.pem\n")

    with pytest.raises(ConfigError) as caught:
        load_pip_settings(conf, {}, home, etc)

    assert caught.value.exit_code == 3
    assert f"pip's `{key}` names {tmp_path}/missing.pem, which does not exist" in caught.value.message


def test_missing_certificate_from_a_variable_is_a_config_error(home: Path, etc: Path) -> None:
    with pytest.raises(ConfigError, match=r"pip's `cert` names /nonexistent/ca\.pem"):
        load_pip_settings(None, {"PIP_CERT": "/nonexistent/ca.pem"}, home, etc)


def test_config_text_for_the_compile_container() -> None:
    settings = PipSettings(
        index_url="https://pypi.example.com/simple",
        extra_index_urls=("https://a.example.com/simple", "https://b.example.com/simple"),
        trusted_hosts=("a.example.com",),
        timeout="30",
        retries="3",
        cert=Path("/host/ca.pem"),
        client_cert=Path("/host/client.pem"),
        find_links=("https://wheels.example.com/links",),
    )

    text = settings.config_text("/tmp/grocker-input/cert.pem", "/tmp/grocker-input/client-cert.pem")

    assert text == (
        "[global]\n"
        "index-url = https://pypi.example.com/simple\n"
        "extra-index-url = https://a.example.com/simple https://b.example.com/simple\n"
        "trusted-host = a.example.com\n"
        "find-links = https://wheels.example.com/links\n"
        "timeout = 30\n"
        "retries = 3\n"
        "cert = /tmp/grocker-input/cert.pem\n"
        "client-cert = /tmp/grocker-input/client-cert.pem\n"
    )
    assert "/host/" not in text
    assert PipSettings().config_text(None, None) == "[global]\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:token@pypi.example.com/simple", "https://user:****@pypi.example.com/simple"),
        ("https://tokenonly@pypi.example.com/simple", "https://****@pypi.example.com/simple"),
        (
            "pip wheel --index-url https://u:pass1@a.example.com/simple --extra-index-url http://v:pass2@b.example.com/",
            "pip wheel --index-url https://u:****@a.example.com/simple --extra-index-url http://v:****@b.example.com/",
        ),
        ("https://pypi.example.com/simple", "https://pypi.example.com/simple"),
        ("mail me at someone@example.com", "mail me at someone@example.com"),
    ],
)
def test_mask_hides_url_credentials(text: str, expected: str) -> None:
    assert mask(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A token given as user name beside an empty or placeholder password (issue 20).
        ("https://Tok3nTok3n:@pypi.fury.io/team/", "https://****:****@pypi.fury.io/team/"),
        ("https://Tok3nTok3n:x@pypi.example.com/simple", "https://****:****@pypi.example.com/simple"),
        ("https://ghp0tok:x-oauth-basic@git.example.com/", "https://****:****@git.example.com/"),
        # A user name that looks like a token is hidden whatever its password.
        ("https://Ab12Cd34Ef56Gh78Ij90:longpassword@h.example.com/", "https://****:****@h.example.com/"),
        # A real password: the user name stays readable.
        ("https://deploy:longpassword@h.example.com/", "https://deploy:****@h.example.com/"),
        # The path token of the known hosts, in any URL of any line.
        ("GET https://pypi.fury.io/sh0rt/team/six/", "GET https://pypi.fury.io/****/team/six/"),
        ("at https://repo.fury.io/abc/acct/", "at https://repo.fury.io/****/acct/"),
        (
            "https://dl.cloudsmith.io/AbCdEf/org/repo/python/simple/",
            "https://dl.cloudsmith.io/****/org/repo/python/simple/",
        ),
        # Their public forms and every other host keep their paths.
        ("https://pypi.fury.io/team/", "https://pypi.fury.io/team/"),
        (
            "https://dl.cloudsmith.io/public/org/repo/python/simple/",
            "https://dl.cloudsmith.io/public/org/repo/python/simple/",
        ),
        (
            "https://dl.cloudsmith.io/basic/org/repo/python/simple/",
            "https://dl.cloudsmith.io/basic/org/repo/python/simple/",
        ),
        ("https://pypi.example.com/abc/team/", "https://pypi.example.com/abc/team/"),
        ("https://notfury.io.example.com/abc/team/", "https://notfury.io.example.com/abc/team/"),
    ],
)
def test_mask_hides_tokens_as_user_and_in_known_paths(text: str, expected: str) -> None:
    assert mask(text) == expected


@pytest.mark.parametrize(
    ("url", "line", "token"),
    [
        ("https://Tok3nTok3n:@pypi.fury.io/team/", "ERROR: 401 for user Tok3nTok3n", "Tok3nTok3n"),
        ("https://Tok3nTok3n:x@pypi.example.com/simple", "Looking in indexes: user Tok3nTok3n", "Tok3nTok3n"),
        ("https://pypi.fury.io/Sh0rtT0k/team/", "token Sh0rtT0k in a relayed line", "Sh0rtT0k"),
        ("https://dl.cloudsmith.io/CsT0ken9/org/repo/python/simple/", "CsT0ken9 leaked", "CsT0ken9"),
    ],
)
def test_tokens_of_the_pip_settings_are_hidden_in_any_line(url: str, line: str, token: str) -> None:
    masked = mask(line, PipSettings(extra_index_urls=(url,)).secrets())

    assert token not in masked
    assert "****" in masked


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:s3cret@pypi.example.com:8443/simple/?token=abc#frag", "https://pypi.example.com:8443/simple/"),
        ("https://pypi.fury.io/Sh0rtT0k/team/", "https://pypi.fury.io/****/team/"),
        ("https://Tok3nTok3n:@pypi.fury.io/team/", "https://pypi.fury.io/team/"),
        (
            "https://dl.cloudsmith.io/CsT0ken9/org/repo/python/simple/",
            "https://dl.cloudsmith.io/****/org/repo/python/simple/",
        ),
        (
            "https://dl.cloudsmith.io/public/org/repo/python/simple/",
            "https://dl.cloudsmith.io/public/org/repo/python/simple/",
        ),
        ("https://idx.example.com/Ab12Cd34Ef56Gh78Ij90/simple/", "https://idx.example.com/****/simple/"),
        ("https://pypi.org/simple/", "https://pypi.org/simple/"),
    ],
)
def test_public_url_keeps_no_secret(url: str, expected: str) -> None:
    assert public_url(url) == expected


def test_a_file_url_loses_the_tokens_of_its_index_and_keeps_its_name() -> None:
    index = "https://idx.example.com/Ab12Cd34Ef56Gh78Ij90/simple/"
    digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
    file_url = f"https://idx.example.com/Ab12Cd34Ef56Gh78Ij90/packages/{digest}/six-1.16.0-py2.py3-none-any.whl"

    assert (
        public_url(file_url, index) == f"https://idx.example.com/****/packages/{digest}/six-1.16.0-py2.py3-none-any.whl"
    )
    pypi = f"https://files.pythonhosted.org/packages/ab/cd/{digest}/six-1.16.0-py2.py3-none-any.whl"
    assert public_url(pypi, "https://pypi.org/simple/") == pypi


def test_mask_hides_known_secrets_anywhere() -> None:
    assert mask("Authorization failed for s3cr3t-token", ("s3cr3t-token",)) == "Authorization failed for ****"


def test_secrets_are_found_in_every_index_url(tmp_path: Path, home: Path, etc: Path) -> None:
    conf = write(
        tmp_path / "pip.conf",
        "[global]\nindex-url = https://deploy:tok-12345678@pypi.example.com/simple\n"
        "extra-index-url = https://gl-token-456@gitlab.example.com/simple https://x@short.example.com/\n"
        "find-links = https://links:pw-7890123@wheels.example.com/\n",
    )

    settings = load_pip_settings(conf, {}, home, etc)
    log_line = f"using {settings.index_url}; tokens tok-12345678 gl-token-456 pw-7890123"

    assert settings.secrets() == ("tok-12345678", "gl-token-456", "x", "pw-7890123")
    masked = mask(log_line, settings.secrets())
    for secret in ("tok-12345678", "gl-token-456", "pw-7890123"):
        assert secret not in masked
    # `x` is too short to hide everywhere, but it is hidden where it stands as a token.
    assert mask("https://x@short.example.com/", settings.secrets()) == "https://****@short.example.com/"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The password ends at the LAST `@` before the host, as pip reads it.
        ("https://deploy:p@ss@pypi.example.com/simple", "https://deploy:****@pypi.example.com/simple"),
        ("https://deploy:p@ss@w0rd@pypi.example.com/", "https://deploy:****@pypi.example.com/"),
        (
            "Looking in indexes: https://TOKEN123@host.example.com/simple",
            "Looking in indexes: https://****@host.example.com/simple",
        ),
        ("'https://u:pw@h.example.com'", "'https://****:****@h.example.com'"),  # pw: a placeholder
        ("https://host.example.com/simple?x=a@b", "https://host.example.com/simple?x=a@b"),
        ("git+ssh://git@github.com/org/repo.git", "git+ssh://****@github.com/org/repo.git"),
    ],
)
def test_mask_splits_user_info_at_the_last_at(text: str, expected: str) -> None:
    assert mask(text) == expected


@pytest.mark.parametrize(
    ("url", "line", "hidden", "kept"),
    [
        # A short user name or password is no reason to hide ordinary words (issue 11.5).
        (
            "https://apt:hello@pypi.example.com/simple",
            "apt-get install hello-world==1.0.0",
            [],
            ["apt-get", "hello-world"],
        ),
        ("https://apt:hello@pypi.example.com/simple", "auth apt:hello@pypi.example.com", ["hello"], ["apt"]),
        # A long secret is hidden wherever it appears, inside longer tokens too.
        ("https://user:s3cr3t-pass@pypi.example.com/", "header xx-s3cr3t-pass-yy", ["s3cr3t-pass"], ["header"]),
        # A token alone in the user info is a secret, even when short.
        ("https://tok@pypi.example.com/simple", "403 for https://tok@pypi.example.com/simple", ["tok@"], []),
        # Tokens in the path and query of an index URL (Gemfury, Azure-style) are secrets.
        (
            "https://pypi.fury.io/Ab12Cd34Ef56Gh78Ij90/team/",
            "GET https://pypi.fury.io/Ab12Cd34Ef56Gh78Ij90/team/ returned 404",
            ["Ab12Cd34Ef56Gh78Ij90"],
            ["team", "pypi.fury.io"],
        ),
        (
            "https://idx.example.com/simple?token=abc123",
            "url https://idx.example.com/simple?token=abc123",
            ["abc123"],
            ["simple"],
        ),
        # Scheme-less: the user info is still found.
        (
            "deploy:LongPassword99@pypi.example.com/simple",
            "deploy:LongPassword99@pypi.example.com",
            ["LongPassword99"],
            ["deploy"],
        ),
        # Percent-encoded in the configuration, decoded in some output.
        (
            "https://u:pa%24%24word-long@h.example.com/",
            "pa$$word-long and pa%24%24word-long",
            ["pa$$word-long", "pa%24%24word-long"],
            [],
        ),
    ],
)
def test_mask_hides_every_secret_and_only_secrets(url: str, line: str, hidden: list[str], kept: list[str]) -> None:
    settings = PipSettings(index_url=url)

    masked = mask(line, settings.secrets())

    for secret in hidden:
        assert secret not in masked
    for word in kept:
        assert word in masked


def test_skipped_settings_are_secrets_too() -> None:
    settings = PipSettings(skipped=("index-url deploy:LongPassword99@pypi.example.com/simple",))

    assert "LongPassword99" in settings.secrets()


@pytest.mark.parametrize(
    "text",
    [
        "a" * 200_000,
        "https://" + "a" * 200_000,
        "://" * 70_000,
        "https://u:" + "@" * 200_000,
        "x" * 100_000 + "://" + "b@" * 50_000,
        ("https://user:pw@h.example.com/ " * 40_000)[:1_000_000],
        "=" + "ab" * 100_000,
    ],
)
def test_mask_is_linear(text: str) -> None:
    secrets = ("LongPassword99", "pw", "ab", "Ab12Cd34Ef56Gh78Ij90")
    start = time.monotonic()

    masked = mask(text, secrets)

    assert time.monotonic() - start < 2.0, "masking must not backtrack (ReDoS guard)"
    assert "LongPassword99" not in masked


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("timeout = 10\n  [evil]", "`timeout` must be a number"),
        ("retries = many", "`retries` must be a number"),
        ("index-url = https://a.example.com/ https://b.example.com/", "`index-url` holds several words"),
        ("trusted-host = a.example.com b;rm", "`trusted-host` has 'b;rm'"),
    ],
)
def test_hostile_pip_settings_are_refused(tmp_path: Path, home: Path, etc: Path, lines: str, message: str) -> None:
    conf = write(tmp_path / "pip.conf", "[global]\n" + lines + "\n")

    with pytest.raises(ConfigError) as caught:
        load_pip_settings(conf, {}, home, etc)

    assert message in caught.value.message


def test_a_newline_in_a_pip_variable_cannot_add_a_setting(home: Path, etc: Path) -> None:
    env = {"PIP_INDEX_URL": "https://a.example.com/simple\ncert = /etc/shadow"}

    with pytest.raises(ConfigError, match="`index-url` holds several words"):
        load_pip_settings(None, env, home, etc)
    with pytest.raises(ConfigError, match="spans lines"):
        PipSettings(index_url="https://a.example.com/\n[global]\ncert=/x").config_text(None, None)


@pytest.mark.parametrize("kind", ["fifo", "directory-link", "unreadable-size", "devzero"])
def test_certificate_must_be_a_small_regular_file(tmp_path: Path, home: Path, etc: Path, kind: str) -> None:
    target = tmp_path / "ca.pem"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory-link":
        target.symlink_to(tmp_path)
    elif kind == "unreadable-size":
        target.write_bytes(b"x" * (2 << 20))
    else:
        target = Path("/dev/zero")
    conf = write(tmp_path / "pip.conf", f"[global]\ncert = {target}\n")

    with pytest.raises(ConfigError) as caught:
        load_pip_settings(conf, {}, home, etc)

    assert caught.value.exit_code == 3
    assert "\n" not in caught.value.message


def test_pip_conf_option_must_be_a_regular_file(tmp_path: Path, home: Path, etc: Path) -> None:
    fifo = tmp_path / "pip.fifo"
    os.mkfifo(fifo)

    # is_file() is False for a FIFO: refused before anything opens it (which would block).
    with pytest.raises(UsageError):
        load_pip_settings(fifo, {}, home, etc)
