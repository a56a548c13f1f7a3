"""The user's pip settings, read the way pip reads them, and forwarded to the compile container.

Only the settings that choose where packages come from travel: index-url, extra-index-url,
trusted-host, timeout, retries, cert, client-cert and remote find-links. Local find-links and
file:// indexes do not exist inside a container on the engine, so they are skipped with a
warning. Credentials in URLs are masked in everything Grocker prints.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grocker.errors import ConfigError, UsageError

# pip's sections that apply to `pip wheel`, lowest priority first; PIP_* variables come last.
_SECTIONS = ("global", "wheel")
_URL_CREDENTIALS_RE = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^/@:\s]*)(?::(?P<password>[^/@\s]*))?@")
_KEYS = ("index-url", "extra-index-url", "trusted-host", "timeout", "retries", "cert", "client-cert", "find-links")
# Other spellings pip accepts for the same option.
_ALIASES = {"default-timeout": "timeout"}


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
    find_links: tuple[str, ...] = ()
    sources: tuple[str, ...] = field(default=(), compare=False)
    skipped: tuple[str, ...] = field(default=(), compare=False)

    def secrets(self) -> tuple[str, ...]:
        """Passwords and tokens found in the index URLs, to be masked wherever text is shown."""
        found = []
        for url in (self.index_url or "", *self.extra_index_urls, *self.find_links):
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
        if self.find_links:
            lines.append("find-links = " + " ".join(self.find_links))
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
    """Hide URL credentials (`https://****@host`) and any known secret in `text`.

    The whole user-info goes, not only the password: index tokens are often given as the user
    name (`https://TOKEN@host`).
    """
    text = _URL_CREDENTIALS_RE.sub(lambda match: f"{match.group('scheme')}****@", text)
    for secret in secrets:
        text = text.replace(secret, "****")
    return text


def config_files(env: Mapping[str, str], home: Path, system_dir: Path = Path("/etc")) -> list[Path]:
    """pip's configuration files in the order pip reads them (later ones win).

    Site-wide files (each of XDG_CONFIG_DIRS in its order, then /etc), the user's files (unless
    PIP_CONFIG_FILE names an existing file), the virtualenv's, then PIP_CONFIG_FILE; none at
    all when PIP_CONFIG_FILE is os.devnull. `system_dir` stands for /etc, so tests never read
    the machine's files.
    """
    env_file = env.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []
    xdg_dirs = (env.get("XDG_CONFIG_DIRS") or "").strip() or str(system_dir / "xdg")
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs.split(os.pathsep) if d]
    files.append(system_dir / "pip.conf")
    if not (env_file and Path(env_file).exists()):
        xdg_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        files += [home / ".pip" / "pip.conf", xdg_home / "pip" / "pip.conf"]
    virtual_env = env.get("VIRTUAL_ENV")
    if virtual_env:
        files.append(Path(virtual_env) / "pip.conf")
    if env_file:
        files.append(Path(env_file))
    return files


def load_pip_settings(
    pip_conf: Path | None, env: Mapping[str, str], home: Path, system_dir: Path = Path("/etc")
) -> PipSettings:
    """Read `--pip-conf FILE` alone, or else every pip config file and the PIP_* variables.

    As pip does, files are pooled first (a later file wins for the same section and key), then
    `[global]` is applied, then `[wheel]`, then the PIP_* variables; empty values are ignored.
    """
    pooled: dict[tuple[str, str], str] = {}
    sources: list[str] = []
    files = [pip_conf] if pip_conf is not None else config_files(env, home, system_dir)
    if pip_conf is not None and str(pip_conf) == os.devnull:
        files = []  # `--pip-conf /dev/null`: no pip settings at all, as PIP_CONFIG_FILE=/dev/null does for pip
    for path in files:
        if not path.is_file():
            if pip_conf is not None:
                raise UsageError(f"--pip-conf {path} does not exist; give the path of a pip.conf file.")
            continue
        # Raw: pip reads its files without interpolation, so `%` in a password is literal.
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as err:
            problem = _parse_problem(err)
            raise ConfigError(f"pip configuration {path} cannot be parsed: {problem}. Fix or remove it.") from err
        read_any = False
        for section in _SECTIONS:
            if parser.has_section(section):
                for name, value in parser.items(section):
                    key = _option_name(name)
                    if key in _KEYS and value.strip():
                        pooled[(section, key)] = value
                        read_any = True
        if read_any:
            sources.append(str(path))
    values = {key: value for section in _SECTIONS for (sect, key), value in pooled.items() if sect == section}
    if pip_conf is None:
        for name, value in sorted(env.items()):
            key = _option_name(name[4:]) if name.startswith("PIP_") else ""
            if key in _KEYS and value.strip():
                values[key] = value
                sources.append(name)
    return _settings(values, sources)


def _parse_problem(err: Exception) -> str:
    """What is wrong in a pip config file, on one line and without quoting it: its lines may hold tokens."""
    if isinstance(err, configparser.MissingSectionHeaderError):
        return f"line {err.lineno} comes before any section header (put the settings under [global])"
    if isinstance(err, configparser.ParsingError):
        lines = [str(lineno) for lineno, _text in err.errors]
        what = "is not a `name = value` setting" if len(lines) == 1 else "are not `name = value` settings"
        return f"line {', '.join(lines)} {what}"
    if isinstance(err, UnicodeDecodeError):
        return f"it is not UTF-8 text (byte {err.start})"
    return mask(str(err).splitlines()[0])


def _option_name(name: str) -> str:
    """pip's spelling of an option name: `index_url`, `--index-url`, `INDEX_URL` -> `index-url`."""
    key = name.lower().replace("_", "-").lstrip("-")
    return _ALIASES.get(key, key)


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
    find_links = []
    for link in values.get("find-links", "").split():
        if _is_local(link):
            skipped.append(f"find-links {link}")
        else:
            find_links.append(link)
    return PipSettings(
        index_url=index_url,
        extra_index_urls=tuple(extra),
        trusted_hosts=tuple(values.get("trusted-host", "").split()),
        timeout=values.get("timeout") or None,
        retries=values.get("retries") or None,
        cert=_existing_file(values.get("cert"), "cert"),
        client_cert=_existing_file(values.get("client-cert"), "client-cert"),
        find_links=tuple(find_links),
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
