"""Runtime families (Debian, Alpine) as data: what the templates run for each package manager.

A runtime names its family; the templates only use the fields below and never test a family's
name, so a new family is one more entry of FAMILIES (and a `family:` value in the runtimes
table), not an edit of three templates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from grocker.config.pipconf import mask, url_secrets
from grocker.errors import ConfigError, shown

_DEBIAN_SETTINGS = """\
# Small images: no recommends, no documentation, no translations.
cat > /etc/apt/apt.conf.d/90grocker <<'EOF_APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF_APT
cat > /etc/dpkg/dpkg.cfg.d/90grocker <<'EOF_DPKG'
force-unsafe-io
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF_DPKG"""


@dataclass(frozen=True)
class Family:
    """How one family of distributions installs packages and trusts repositories.

    Commands are shell text run by `sh -eu`; an empty one is skipped. Package names are appended
    to `install`, each quoted by the template.
    """

    name: str
    environment: str
    """Exported before any package command."""
    settings: str
    """Package manager settings, written once in the root image."""
    update: str
    """Refreshes the package indexes."""
    upgrade: str
    install: str
    clean: str
    """Removes indexes and caches at the end of each image's provisioning."""
    add_user: str
    """Creates the user `grocker` with the UID `{uid}`."""
    https_packages: tuple[str, ...]
    """Installed before repositories that are reached over HTTPS."""
    root_packages: tuple[str, ...]
    """Always installed in the root image: what the runner's installer needs to start."""
    key_file: str
    """Where a repository's key goes, `{id}` being the repository's id."""
    source_file: str
    """The file a repository's line is appended to."""
    key_marker: str
    """Text every key of this family contains."""
    key_help: str
    uri_pattern: str
    """A whole repository line, matched with re.fullmatch."""
    uri_help: str
    signed_by: bool
    """The repository line names its key file (`[signed-by=...]`)."""
    minimal_runner: bool
    """The runner can be made FROM a minimal base: the packages' files are listed in a dpkg database."""
    owner_query: str
    """Prints `<soname> <owner>` for each library name given as an argument that an installed package
    provides (the ABI gate's suggestion of a package for dependencies.run)."""
    missing_package: str
    """A log line of the package manager saying that a package does not exist; its group 1 is the name."""

    def source_line(self, repo_id: str, uri: str) -> str:
        """The line that declares the repository, pinned to its own key where the family can."""
        if not self.signed_by:
            return uri
        match = re.fullmatch(r"(deb(?:-src)?)\s+(?:\[(?P<options>[^\]]*)\]\s+)?(?P<rest>.*)", uri)
        if match is None:
            return uri
        options = [opt for opt in (match.group("options") or "").split() if not opt.startswith("signed-by=")]
        options.append(f"signed-by={self.key_file.format(id=repo_id)}")
        return f"{match.group(1)} [{' '.join(options)}] {match.group('rest')}"


FAMILIES: dict[str, Family] = {
    "debian": Family(
        name="debian",
        environment="export DEBIAN_FRONTEND=noninteractive",
        settings=_DEBIAN_SETTINGS,
        update="apt-get update -q",
        upgrade="apt-get upgrade -y -q",
        install="apt-get install -y -q",
        clean=(
            "apt-get clean\n"
            "rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log /var/cache/debconf/*-old"
        ),
        add_user="useradd --create-home --shell /bin/bash --uid {uid} grocker",
        https_packages=("ca-certificates",),
        # The runner installs with Debian's own pip wheel (python3-pip-whl), which reads the
        # system CA bundle as soon as it starts.
        root_packages=("ca-certificates",),
        key_file="/etc/apt/keyrings/grocker-{id}.asc",
        source_file="/etc/apt/sources.list.d/grocker-{id}.list",
        key_marker="-----BEGIN PGP PUBLIC KEY BLOCK-----",
        key_help="an ASCII-armored PGP public key; export it with `gpg --armor --export`",
        uri_pattern=r"deb(?:-src)?\s+\S.*",
        uri_help="an apt source line starting with `deb `, e.g. `deb http://host/debian trixie main`",
        signed_by=True,
        minimal_runner=True,
        owner_query='for so in "$@"; do dpkg-query -S "*/$so" 2>/dev/null | sed "s|^|$so |"; done; true',
        missing_package=r"E: Unable to locate package (\S+)",
    ),
    "alpine": Family(
        name="alpine",
        environment="",
        settings="",
        # apk --no-cache fetches the indexes on each call, and keeps none.
        update="",
        upgrade="apk upgrade --no-cache",
        install="apk add --no-cache",
        clean="",
        add_user="adduser -D -s /bin/sh -u {uid} grocker",
        https_packages=(),
        root_packages=(),
        # apk finds the key by the name the index was signed with: the repository's id.
        key_file="/etc/apk/keys/{id}.rsa.pub",
        source_file="/etc/apk/repositories",
        key_marker="-----BEGIN PUBLIC KEY-----",
        key_help=(
            "the RSA public key in PEM the repository's index is signed with, and the repository's id "
            "must be that key's name (its file name in /etc/apk/keys without `.rsa.pub`)"
        ),
        uri_pattern=r"(?:@[A-Za-z0-9_.-]+\s+)?(?:https?://|/)\S+",
        uri_help="an apk repository, e.g. `https://host/alpine/v3.22/main` or `@tag https://host/repo`",
        signed_by=False,
        minimal_runner=False,
        owner_query=(
            'for so in "$@"; do for dir in /lib /usr/lib /usr/local/lib; do [ -e "$dir/$so" ] && '
            'apk info --who-owns "$dir/$so" 2>/dev/null | sed "s|^|$so |"; done; done; true'
        ),
        missing_package=r"\s+(\S+) \(no such package\):?",
    ),
}


def missing_packages(lines: Iterable[str]) -> list[str]:
    """The system packages a failed build's log says its distribution lacks, in any family's words."""
    patterns = [re.compile(family.missing_package) for family in FAMILIES.values()]
    found = (pattern.match(line) for line in lines for pattern in patterns)
    return list(dict.fromkeys(match.group(1) for match in found if match))


def missing_packages_message(what: str, lines: Iterable[str]) -> str | None:
    """Why the build of `what` failed when its log says that a system package does not exist; else None."""
    missing = missing_packages(lines)
    if not missing:
        return None
    return (
        f"The {what} build failed because the distribution has no system package named "
        f"{', '.join(missing)}. Correct the name in dependencies.run or dependencies.build of the "
        "configuration (or in the runtime's packages), or add the repository that provides it "
        "under `repositories`."
    )


def family_of(name: str) -> Family:
    """The family called `name`; ConfigError naming the known ones when there is none."""
    family = FAMILIES.get(name)
    if family is None:
        raise ConfigError(
            f"Runtime family {name!r} is not one Grocker knows how to provision: use one of "
            f"{', '.join(FAMILIES)} as the runtime's `family`."
        )
    return family


# User info in a URL: `scheme://user[:password]@`.
_URL_USERINFO_RE = re.compile(r"://[^/\s]*@")
# What Grocker says instead of taking a secret into a source line.
_REPOSITORY_ADVICE = (
    "which would be written into the root image and every image built on it. Grocker puts no apt "
    "credentials in an image (neither in a source line nor as an apt auth.conf): use a repository "
    "that needs no secret in its URL, or a local mirror of it that needs none"
)


def source_line_secret(uri: str) -> str | None:
    """What is wrong with a repository's source line holding a secret, or None when it holds none.

    The source line is written into the root image (its provision script, kept in a layer, and
    /etc/apt/sources.list.d): a secret there would ship with every image. A secret is user info,
    or a path or query token as the mask finds one in a pip index URL (grocker.config.pipconf.url_secrets:
    a segment of 16 or more letters, digits and `-._~+=` with letters and digits both, the first
    segment on Gemfury and Cloudsmith, a query value named like a credential). The message quotes
    the line masked.
    """
    secrets = [secret for word in uri.split() if "://" in word for secret in url_secrets(word)]
    if _URL_USERINFO_RE.search(uri):
        return (
            f"has credentials in its URL ({shown(mask(uri, secrets))}), {_REPOSITORY_ADVICE}, and give the URL "
            "without `user:password@`"
        )
    if secrets:
        return (
            f"has a token in its URL ({shown(mask(uri, secrets))}), {_REPOSITORY_ADVICE}. A path segment counts "
            "as a token when it is 16 or more letters, digits and `-._~+=` with both letters and digits, "
            "or the first one on pypi.fury.io and dl.cloudsmith.io"
        )
    return None
