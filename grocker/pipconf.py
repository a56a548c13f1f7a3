"""The user's pip settings, read the way pip reads them, and forwarded to the compile container.

Only the settings that choose where packages come from travel: index-url, extra-index-url,
trusted-host, timeout, retries, cert and client-cert. Local find-links and file:// indexes
do not exist inside a container on the engine, so they are skipped with a warning.
Credentials in URLs are masked in everything Grocker prints.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grocker.errors import ConfigError, UsageError

# pip's sections that apply to `pip wheel`, lowest priority first.
_SECTIONS = ("global", "wheel")
_URL_CREDENTIALS_RE = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^/@:\s]*)(?::(?P<password>[^/@\s]*))?@")
_KEYS = ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout", "retries", "cert", "client-cert", "find-links")


@dataclass(frozen=True)
class PipSettings:
    """The pip settings the compile container receives."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    timeout: str | None = None
    retries: str | None = None
    cert: Path | None = None
    client_cert: Path | None = None
    sources: tuple[str, ...] = field(default=(), compare=False)
    skipped: tuple[str, ...] = field(default=(), compare=False)

    def secrets(self) -> tuple[str, ...]:
        """Passwords and tokens found in the index URLs, to be masked wherever text is shown."""
        found = []
        for url in (self.index_url or "", *self.extra_index_urls):
            for match in _URL_CREDENTIALS_RE.finditer(url):
                for part in (match.group("password"), match.group("user")):
                    if part and len(part) >= 3:
                        found.append(part)
        return tuple(found)

    def config_text(self, cert_path: str | None, client_cert_path: str | None) -> str:
        """A pip.conf for the compile container, with the certificate paths it was given."""
        lines = ["[global]"]
        if self.index_url:
            lines.append(f"index-url = {self.index_url}")
        if self.extra_index_urls:
            lines.append("extra-index-url = " + " ".join(self.extra_index_urls))
        if self.trusted_hosts:
            lines.append("trusted-host = " + " ".join(self.trusted_hosts))
        if self.timeout:
            lines.append(f"timeout = {self.timeout}")
        if self.retries:
            lines.append(f"retries = {self.retries}")
        if cert_path:
            lines.append(f"cert = {cert_path}")
        if client_cert_path:
            lines.append(f"client-cert = {client_cert_path}")
        return "\n".join(lines) + "\n"


def mask(text: str, secrets: Sequence[str] = ()) -> str:
    """Hide URL credentials (`https://user:****@host`) and any known secret in `text`."""

    def _hide(match: re.Match[str]) -> str:
        if match.group("password") is not None:
            return f"{match.group('scheme')}{match.group('user')}:****@"
        return f"{match.group('scheme')}****@"

    text = _URL_CREDENTIALS_RE.sub(_hide, text)
    for secret in secrets:
        text = text.replace(secret, "****")
    return text


def config_files(env: Mapping[str, str], home: Path) -> list[Path]:
    """pip's configuration files in the order pip reads them (later ones win)."""
    if env.get("PIP_CONFIG_FILE") == os.devnull:
        return []
    xdg_dirs = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
    files = [Path(d) / "pip" / "pip.conf" for d in reversed(xdg_dirs) if d]
    files.append(Path("/etc/pip.conf"))
    xdg_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    files += [home / ".pip" / "pip.conf", xdg_home / "pip" / "pip.conf"]
    virtual_env = env.get("VIRTUAL_ENV")
    if virtual_env:
        files.append(Path(virtual_env) / "pip.conf")
    if env.get("PIP_CONFIG_FILE"):
        files.append(Path(env["PIP_CONFIG_FILE"]))
    return files


def load_pip_settings(pip_conf: Path | None, env: Mapping[str, str], home: Path) -> PipSettings:
    """Read `--pip-conf FILE` alone, or else every pip config file and the PIP_* variables."""
    values: dict[str, str] = {}
    sources: list[str] = []
    files = [pip_conf] if pip_conf is not None else config_files(env, home)
    for path in files:
        if not path.is_file():
            if pip_conf is not None:
                raise UsageError(f"--pip-conf {path} does not exist; give the path of a pip.conf file.")
            continue
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as err:
            raise ConfigError(f"pip configuration {path} cannot be parsed: {err}. Fix or remove it.") from err
        read_any = False
        for section in _SECTIONS:
            if parser.has_section(section):
                for key, value in parser.items(section):
                    if key in _KEYS:
                        values[key] = value
                        read_any = True
        if read_any:
            sources.append(str(path))
    if pip_conf is None:
        for key in _KEYS:
            env_value = env.get("PIP_" + key.upper().replace("-", "_"))
            if env_value is not None:
                values[key] = env_value
                sources.append(f"PIP_{key.upper().replace('-', '_')}")
    return _settings(values, sources)


def _settings(values: Mapping[str, str], sources: list[str]) -> PipSettings:
    skipped: list[str] = []
    index_url = values.get("index-url") or None
    if index_url and _is_local(index_url):
        skipped.append(f"index-url {index_url}")
        index_url = None
    extra = []
    for url in values.get("extra-index-url", "").split():
        if _is_local(url):
            skipped.append(f"extra-index-url {url}")
        else:
            extra.append(url)
    for link in values.get("find-links", "").split():
        skipped.append(f"find-links {link}")
    return PipSettings(
        index_url=index_url,
        extra_index_urls=tuple(extra),
        trusted_hosts=tuple(values.get("trusted-host", "").split()),
        timeout=values.get("timeout") or values.get("default-timeout") or None,
        retries=values.get("retries") or None,
        cert=_existing_file(values.get("cert"), "cert"),
        client_cert=_existing_file(values.get("client-cert"), "client-cert"),
        sources=tuple(dict.fromkeys(sources)),
        skipped=tuple(skipped),
    )


def _is_local(url: str) -> bool:
    return url.startswith("file:") or "://" not in url


def _existing_file(value: str | None, key: str) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"pip's `{key}` names {path}, which does not exist. Fix the pip configuration "
            "(pip config list shows where it is set) or pass --pip-conf FILE."
        )
    return path
