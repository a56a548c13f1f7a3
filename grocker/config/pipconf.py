"""The user's pip settings, read the way pip reads them, and forwarded to the compile container.

Only the settings that choose where packages come from travel: index-url, extra-index-url,
trusted-host, timeout, retries, cert, client-cert and remote find-links. Local find-links and
file:// indexes do not exist inside a container on the engine, so they are skipped with a
warning. Credentials in URLs are masked in everything Grocker prints.

What counts as a secret (see docs/security.rst): the password of a URL's user info, and its
user name when there is no password or only a placeholder one (an index token given as
`https://TOKEN@host`, `https://TOKEN:@host`, `https://TOKEN:x@host`), or when the user name
itself looks like a token; the path token of the hosts whose URLs carry one in a known place
(Gemfury, Cloudsmith), in any URL; and, in the URLs of the pip settings only, path segments and
query values that look like tokens (`?token=...`). A user name next to a real password is not a
secret: masking it would hide ordinary words of the output (`apt`, `hello`) everywhere.
"""

from __future__ import annotations

import configparser
import io
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from grocker.errors import ConfigError, UsageError, cut, shown

# pip's sections that apply to `pip wheel`, lowest priority first; PIP_* variables come last.
_SECTIONS = ("global", "wheel")
# The authority of a URL: what follows `://` up to the path, query, fragment or the end of the
# word. Anchored on the literal `://` and with a single character class, so matching is linear
# in the text's length (no nested quantifier to backtrack through).
# The first two path segments are kept with it, for the hosts whose URLs hold a token there;
# the repetition is bounded and its class excludes `/`, so this stays linear too.
_AUTHORITY_RE = re.compile(r"://([^/?#\s'\"<>]*)((?:/[^/?#\s'\"<>]*){0,2})")
# A path segment or query value that reads as a token rather than a word: long, and made of
# letters and digits both (`simple`, `packages`, `v1` are not).
_TOKEN_RE = re.compile(r"[A-Za-z0-9_.~+=-]{16,}")
# A secret shorter than this is hidden only where it stands as a URL password or query value
# (after `:` or `=` and before `@`, `&`, `#`, `/`, a quote, a space or the end): short strings
# are ordinary words too, and hiding `apt` would turn `apt-get` into `****-get`.
MIN_LITERAL_SECRET = 8
# A password this short, or one of these words, is a placeholder beside a token given as user
# name (`https://TOKEN:x@host`, GitHub's `TOKEN:x-oauth-basic`): the user name is the secret.
_PLACEHOLDER_LENGTH = 4
_PLACEHOLDER_PASSWORDS = frozenset({"x-oauth-basic", "dummy", "unused", "none", "null"})
# Hosts whose index URLs carry the token as the first path segment: Gemfury
# (`https://pypi.fury.io/TOKEN/ACCOUNT/`; its public form `https://pypi.fury.io/ACCOUNT/` has a
# single segment) and Cloudsmith (`https://dl.cloudsmith.io/TOKEN/ORG/REPO/python/simple/`; its
# public and basic-auth forms start with `public` and `basic`).
_FURY_SUFFIX = "fury.io"
_CLOUDSMITH_HOST = "dl.cloudsmith.io"
_CLOUDSMITH_WORDS = frozenset({"public", "basic"})
_NUMBER_RE = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")
_HOST_RE = re.compile(r"[A-Za-z0-9._\[\]:-]+")
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
        """Passwords and tokens found in the pip settings' URLs, to be masked wherever text is shown.

        Skipped settings count too: their warning quotes them.
        """
        found: list[str] = []
        urls = (self.index_url or "", *self.extra_index_urls, *self.find_links, *self.skipped)
        for value in urls:
            for word in value.split():
                found += url_secrets(word)
        return tuple(dict.fromkeys(found))

    def config_text(self, cert_path: str | None, client_cert_path: str | None) -> str:
        """A pip.conf for the compile container, with the certificate paths it was given.

        Written by configparser, and every value was checked to be one line: a value cannot add
        a setting or a section of its own.
        """
        values = {
            "index-url": self.index_url,
            "extra-index-url": " ".join(self.extra_index_urls),
            "trusted-host": " ".join(self.trusted_hosts),
            "find-links": " ".join(self.find_links),
            "timeout": self.timeout,
            "retries": self.retries,
            "cert": cert_path,
            "client-cert": client_cert_path,
        }
        parser = configparser.RawConfigParser()
        parser.add_section("global")
        for key, value in values.items():
            if value:
                if "\n" in value or "\r" in value:
                    raise ConfigError(f"pip setting `{key}` spans lines. Give it on one line.")
                parser.set("global", key, value)
        out = io.StringIO()
        parser.write(out)
        return out.getvalue().rstrip("\n") + "\n"


def mask(text: str, secrets: Sequence[str] = ()) -> str:
    """Hide URL credentials and the known `secrets` in `text`, in time linear in its length.

    In any URL, the password of the user info becomes `****` (`https://user:****@host`), and the
    user name too when it is the secret (see user_is_secret: `https://****@host`,
    `https://****:****@host`); so does the path token of a known host (`https://pypi.fury.io/****/team/`).
    The user info ends at the last `@` before the host, as pip reads it, so a password may hold `@`.
    Then each secret of MIN_LITERAL_SECRET characters or more is hidden wherever it appears, and
    a shorter one only where it stands as a password or query value.
    """
    text = _AUTHORITY_RE.sub(_mask_url, text)
    short = []
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= MIN_LITERAL_SECRET:
            text = text.replace(secret, "****")
        elif secret:
            short.append(re.escape(secret))
    if short:
        pattern = rf"(?<=[:=])(?:{'|'.join(short)})(?=[@&#/\s'\"]|$)"
        text = re.sub(pattern, "****", text)
    return text


def url_secrets(url: str) -> list[str]:
    """The secrets of one URL of the pip settings (scheme-less ones too), raw and percent-decoded.

    The password of its user info, or the user name when there is no password; path segments
    and query values that look like tokens (see _TOKEN_RE); every query value of a parameter
    named like a credential (token, key, secret, password, auth, sig).
    """
    try:
        parts = urlsplit(url if "://" in url else f"//{url}")
    except ValueError:
        return [url]  # not even a URL: keep it all out of sight
    found: list[str] = []
    userinfo, at, host = parts.netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        found.append(password if colon else user)
        if colon and user_is_secret(user, password):
            found.append(user)
    segments = parts.path.split("/")
    found += [segment for segment in segments if _looks_like_token(segment)]
    token = host_path_token(host, segments[1:3])
    if token:
        found.append(token)
    for pair in parts.query.split("&"):
        name, _eq, value = pair.partition("=")
        credential = any(word in name.lower() for word in ("token", "key", "secret", "pass", "auth", "sig"))
        if value and (credential or _looks_like_token(value)):
            found.append(value)
    found = [secret for secret in found if secret]
    return found + [unquote(secret) for secret in found if unquote(secret) != secret]


def user_is_secret(user: str, password: str) -> bool:
    """Whether the user name of `user:password@` is a secret too: beside a placeholder password, or token-like."""
    placeholder = len(password) < _PLACEHOLDER_LENGTH or password.lower() in _PLACEHOLDER_PASSWORDS
    return bool(user) and (placeholder or _looks_like_token(user))


def host_path_token(host: str, segments: Sequence[str]) -> str | None:
    """The token that `host`'s URL layout puts first in the path (`segments`: its first two), if any.

    Conservative: on Gemfury, any first segment followed by another one counts, so a public
    account's project pages lose their account name in the output; better that than a token.
    """
    name = host.rpartition("@")[2].split(":")[0].lower().rstrip(".")
    first = segments[0] if segments else ""
    if not first:
        return None
    if name == _FURY_SUFFIX or name.endswith("." + _FURY_SUFFIX):
        return first if len(segments) > 1 and segments[1] else None
    if name == _CLOUDSMITH_HOST:
        return None if first.lower() in _CLOUDSMITH_WORDS else first
    return None


def public_url(url: str, index: str | None = None) -> str:
    """`url` as it may be recorded (origins, SBOMs): no user info, query or fragment, path tokens as `****`.

    The path tokens: the segments of the index URL (`index`, else `url` itself, an index) that
    look like tokens (see _looks_like_token), wherever they stand in `url`, and a known host's
    token segment (see host_path_token). A file's own name and the hash folders of a file URL
    are kept: they look like tokens but are not. The publisher (resources/wheelhouse/publish.py)
    applies the same rule inside its container.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
        tokens = {segment for segment in urlsplit(index or url).path.split("/") if _looks_like_token(segment)}
    except ValueError:
        return "****"
    host = (parts.hostname or "") + (f":{port}" if port else "")
    segments = parts.path.split("/")
    token = host_path_token(host, segments[1:3])
    cleaned = [
        "****" if segment in tokens or (position == 1 and segment == token) else segment
        for position, segment in enumerate(segments)
    ]
    return urlunsplit((parts.scheme, host, "/".join(cleaned), "", ""))


def _looks_like_token(text: str) -> bool:
    return (
        _TOKEN_RE.fullmatch(text) is not None
        and any(char.isdigit() for char in text)
        and any(char.isalpha() for char in text)
    )


def _mask_url(match: re.Match[str]) -> str:
    authority, path = match.group(1), match.group(2)
    userinfo, at, host = authority.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if not colon:
            authority = f"****@{host}"
        elif user_is_secret(user, password):
            authority = f"****:****@{host}"
        else:
            authority = f"{user}:****@{host}"
    segments = path.split("/")
    token = host_path_token(host, segments[1:3])
    if token:
        path = "/****" + path[1 + len(token) :]
    return f"://{authority}{path}"


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
        if pip_conf is not None:
            # A FIFO or a device would block or never end; is_file() follows symlinks.
            _check_regular(path, "--pip-conf", UsageError)
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
    index_url = values.get("index-url", "").strip() or None
    if index_url and len(index_url.split()) > 1:
        raise ConfigError(
            f"pip setting `index-url` holds several words ({shown(mask(index_url, url_secrets(index_url)))}): "
            "it takes one URL. Put the other indexes in `extra-index-url`."
        )
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
    hosts = tuple(values.get("trusted-host", "").split())
    for host in hosts:
        if not _HOST_RE.fullmatch(host):
            raise ConfigError(
                f"pip setting `trusted-host` has {shown(host)}, which is not a host name or host:port. "
                "Fix the pip configuration (pip config list shows where it is set)."
            )
    return PipSettings(
        index_url=index_url,
        extra_index_urls=tuple(extra),
        trusted_hosts=hosts,
        timeout=_number(values.get("timeout"), "timeout"),
        retries=_number(values.get("retries"), "retries"),
        cert=_existing_file(values.get("cert"), "cert"),
        client_cert=_existing_file(values.get("client-cert"), "client-cert"),
        find_links=tuple(find_links),
        sources=tuple(dict.fromkeys(sources)),
        skipped=tuple(skipped),
    )


def _number(value: str | None, key: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if not _NUMBER_RE.fullmatch(value):
        raise ConfigError(
            f"pip setting `{key}` must be a number, got {shown(value)}. Fix the pip configuration "
            "(pip config list shows where it is set) or pass --pip-conf FILE."
        )
    return value


def _is_local(url: str) -> bool:
    return url.startswith("file:") or "://" not in url


def _existing_file(value: str | None, key: str) -> Path | None:
    if not value or not value.strip():
        return None
    path = Path(value.strip()).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"pip's `{key}` names {cut(str(path))}, which does not exist. Fix the pip configuration "
            "(pip config list shows where it is set) or pass --pip-conf FILE."
        )
    _check_regular(path, f"pip's `{key}`", ConfigError)
    return path


# Certificates and pip.conf files are small; a bigger file is a mistake (or /dev/zero).
MAX_INPUT_BYTES = 1 << 20


def _check_regular(path: Path, what: str, error: type[UsageError] | type[ConfigError]) -> None:
    """Refuse what is not a readable regular file of at most MAX_INPUT_BYTES, before any engine work."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} names {cut(str(path))}, which is not a regular file. Give the path of a file.")
        if info.st_size > MAX_INPUT_BYTES:
            raise error(
                f"{what} names {cut(str(path))}, which is larger than {MAX_INPUT_BYTES >> 20} MiB. Give the right file."
            )
        with path.open("rb") as stream:
            stream.read(1)
    except OSError as err:
        raise error(
            f"{what} names {cut(str(path))}, which cannot be read: {err.strerror}. Fix its permissions "
            "or give another file."
        ) from err
