"""pip settings, read the way pip reads them; credentials masked. Never the machine's files:
every test passes `env`, `home` and `system_dir` inside tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from grocker.errors import ConfigError, UsageError
from grocker.pipconf import PipSettings, config_files, load_pip_settings, mask


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
    assert settings.secrets() == ("p%40ss%word", "deploy")


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
        ("https://user:token@pypi.example.com/simple", "https://****@pypi.example.com/simple"),
        ("https://tokenonly@pypi.example.com/simple", "https://****@pypi.example.com/simple"),
        (
            "pip wheel --index-url https://u:p@a.example.com/simple --extra-index-url http://v:q@b.example.com/",
            "pip wheel --index-url https://****@a.example.com/simple --extra-index-url http://****@b.example.com/",
        ),
        ("https://pypi.example.com/simple", "https://pypi.example.com/simple"),
        ("mail me at someone@example.com", "mail me at someone@example.com"),
    ],
)
def test_mask_hides_url_credentials(text: str, expected: str) -> None:
    assert mask(text) == expected


def test_mask_hides_known_secrets_anywhere() -> None:
    assert mask("Authorization failed for s3cr3t-token", ("s3cr3t-token",)) == "Authorization failed for ****"


def test_secrets_are_found_in_every_index_url(tmp_path: Path, home: Path, etc: Path) -> None:
    conf = write(
        tmp_path / "pip.conf",
        "[global]\nindex-url = https://deploy:tok-123@pypi.example.com/simple\n"
        "extra-index-url = https://gl-token-456@gitlab.example.com/simple https://x@short.example.com/\n"
        "find-links = https://links:pw-789@wheels.example.com/\n",
    )

    settings = load_pip_settings(conf, {}, home, etc)
    log_line = f"using {settings.index_url}; tokens tok-123 gl-token-456 pw-789"

    assert settings.secrets() == ("tok-123", "deploy", "gl-token-456", "pw-789", "links")
    masked = mask(log_line, settings.secrets())
    for secret in settings.secrets():
        assert secret not in masked
