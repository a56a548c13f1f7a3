"""Fuzz the command line with a generated, deterministic table of hostile inputs (issue 11.8).

Configuration files, command-line options, RELEASE strings and pip settings, each run through
the CLI with the core's build replaced (see conftest.grocker). Every case must end in one
paragraph on stderr with the exit code of its class (usage 2, configuration 3): never a
traceback, never "failed unexpectedly", never a hang, and nothing written.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PGP_KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBE50MmIBCAD+FPYK\n-----END PGP PUBLIC KEY BLOCK-----\n"
RELEASE = "ipython==8.18.1"

# Hostile scalars, as YAML flow values. None of them is a valid value for the keys below.
YAML_VALUES = {
    "empty-string": '""',
    "blank": '" "',
    "newline": '"\\n"',
    "two-lines": '"a\\nb"',
    "trailing-newline": '"abc\\n"',
    "long": '"' + "x" * 5000 + '"',
    "command-substitution": '"$(id)"',
    "backticks": '"`id`"',
    "semicolon": '"a;b"',
    "single-quote": '"\'"',
    "double-quote": "'\"'",
    "backslash": '"\\\\"',
    "nul": '"\\0"',
    "arabic-digits": '"٨٠"',
    "fullwidth-digits": '"８０"',
    "parent-path": '"../../etc"',
    "option": '"-rf"',
    "redirect": '"a>b"',
    "mapping": "{a: b}",
    "list": "[1, 2]",
    "null": "null",
    "bool": "true",
    "infinity": ".inf",
    "binary": "!!binary aGk=",
    "set": "!!set {a, b}",
    "date": "2024-01-01",
}
# Values a key accepts (an empty value means "not set"; any name is a package name, however
# long): excluded where they would be valid.
VALID_FOR = {
    "docker_image_prefix": {"null"},
    "pip_constraint": {"null"},
    "package": {"long"},
    "entrypoint_name": {
        "command-substitution",
        "backticks",
        "semicolon",
        "long",
        "nul",
        "arabic-digits",
        "fullwidth-digits",
        "parent-path",
        "option",
        "redirect",
    },
    "image_base_name": {
        "long",
        "command-substitution",
        "backticks",
        "semicolon",
        "parent-path",
        "option",
        "redirect",
        "arabic-digits",
        "fullwidth-digits",
        "two-lines",
        "trailing-newline",
        "backslash",
        "single-quote",
        "double-quote",
        "nul",
        "blank",
        "newline",
        "null",
    },
}


@dataclass(frozen=True)
class Case:
    """One hostile invocation: files to write, arguments, environment, expected exit code."""

    args: tuple[str, ...]
    exit_code: int
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    secret: str = ""
    """A token the input holds, which no output may show (issue 20)."""


def _config_cases() -> Iterator[tuple[str, Case]]:
    def case(text: str) -> Case:
        return Case(("-c", "conf.yml", RELEASE), 3, {"conf.yml": text})

    for name, value in YAML_VALUES.items():
        yield f"config-runtime-{name}", case(f"runtime: {value}\n")
        yield f"config-ports-{name}", case(f"ports: [{value}]\n")
        yield f"config-volumes-{name}", case(f"volumes: [{value}]\n")
        if name not in VALID_FOR["docker_image_prefix"]:
            yield f"config-prefix-{name}", case(f"docker_image_prefix: {value}\n")
        if name not in VALID_FOR["package"]:
            yield f"config-package-{name}", case(f"dependencies: {{run: [{value}]}}\n")
        yield f"config-env-name-{name}", case(f"env: {{{value}: v}}\n")
        yield f"config-repository-uri-{name}", case(f"repositories: {{r: {{uri: {value}, key: {PGP_KEY!r}}}}}\n")
        yield f"config-runtime-name-{name}", case(f"runtimes: {{{value}: {{image: 'debian:trixie'}}}}\n")
        if name not in VALID_FOR["pip_constraint"]:
            yield f"config-pip-constraint-{name}", case(f"pip_constraint: {value}\n")
        for key in ("entrypoint_name", "image_base_name"):
            if name not in VALID_FOR[key]:
                yield f"config-{key}-{name}", case(f"{key}: {value}\n")
        if name in ("newline", "two-lines", "trailing-newline", "mapping", "list", "null", "binary", "set", "date"):
            yield f"config-env-value-{name}", case(f"env: {{A: {value}}}\n")
    documents = {
        "list-document": "- a\n- b\n",
        "scalar-document": "just a string\n",
        "unknown-key": "runtim: trixie/3.13\n",
        "deprecated-and-new": "envs: {A: 1}\nenv: {B: 2}\n",
        "duplicate-key": "ports: [80]\nports: [81]\n",
        "unclosed-bracket": "ports: [80\nvolumes: []\n",
        "tab-indent": "env:\n\tA: 1\n",
        "bad-alias": "ports: *nowhere\n",
        "recursive-alias": "ports: &a [*a]\n",
        "alias-bomb": "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
        + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdef", "bcdefg", strict=True))
        + "ports: *g\n",
        "deep-nesting": "env: " + "[" * 5000 + "]" * 5000 + "\n",
        "two-documents": "ports: [80]\n---\nports: [81]\n",
        "not-utf8": b"env: {A: caf\xe9}\n",
        "nul-byte": b"env: {A: a\x00b}\n",
        "pre-6-dependencies": "dependencies: [libpq5]\n",
        "repository-credentials": "repositories: {r: {uri: 'deb https://u:p4ssw0rd@h/ x y', key: "
        + repr(PGP_KEY)
        + "}}\n",
        "repository-on-alpine": "runtime: alpine/3.12\nrepositories: {r: {uri: 'deb http://h/ x y', key: "
        + repr(PGP_KEY)
        + "}}\n",
        "runtime-typo": "runtimes: {mine/3.13: {imgae: 'debian:trixie'}}\n",
        "runtime-retired": "runtime: jessie/2.7\n",
        "runtime-number-version": "runtimes: {mine/3.10: {image: 'debian:trixie', python_version: 3.10}}\n",
        "runtime-bad-family": "runtime: mine/3.13\nruntimes: {mine/3.13: {image: 'debian:trixie', family: arch}}\n",
        "runtime-without-image": "runtime: mine/3.13\nruntimes: {mine/3.13: {python: python3}}\n",
        "constraint-escape": "pip_constraint: ../../../../.netrc\n",
        "constraint-absolute": "pip_constraint: /etc/passwd\n",
        "constraint-home": "pip_constraint: ~/.netrc\n",
        "port-zero": "ports: [0]\n",
        "port-too-big": "ports: [65536]\n",
        "port-protocol": "ports: [80/http]\n",
        "port-negative": "ports: [-1]\n",
        "volume-relative": "volumes: [data]\n",
        "volume-control": 'volumes: ["/data\\x07"]\n',
    }
    for name, text in documents.items():
        yield (
            f"document-{name}",
            case(text) if isinstance(text, str) else Case(("-c", "conf.yml", RELEASE), 3, {"conf.yml": text}),
        )
    yield "config-missing", Case(("-c", "missing.yml", RELEASE), 3)
    yield "config-directory", Case(("-c", "folder", RELEASE), 3, {"folder/keep": ""})
    yield "config-dev-zero", Case(("-c", "/dev/zero", RELEASE), 3)
    yield "config-too-big", Case(("-c", "big.yml", RELEASE), 3, {"big.yml": "#" * (2 << 20)})


def _option_cases() -> Iterator[tuple[str, Case]]:
    hostile = ["", " ", "a b", "a\nb", "$(id)", "x" * 5000, "٨٠", "8080\n", "../x", "-"]
    for index, value in enumerate(hostile):
        yield f"option-port-{index}", Case(("--port", value, RELEASE), 2)
        yield f"option-volume-{index}", Case(("--volume", value, RELEASE), 2)
        yield f"option-prefix-{index}", Case(("--image-prefix", value, RELEASE), 2)
        yield f"option-image-name-{index}", Case(("-n", value, RELEASE), 2)
        yield f"option-runtime-{index}", Case(("-r", value, RELEASE), 2)
        if len(value) < 100:  # any length of name is valid
            yield f"option-env-name-{index}", Case(("--env", f"{value}=v", RELEASE), 2)
    for index, value in enumerate(["", " ", "a b", "a\nb", "a'b", 'a"b', "a\\b"]):
        yield f"option-entrypoint-{index}", Case(("-e", value, RELEASE), 2)
    more = {
        "env-without-equals": ("--env", "NAME", RELEASE),
        "env-value-newline": ("--env", "A=b\nc", RELEASE),
        "image-name-long-repository": ("-n", "a" * 300 + ":1", RELEASE),
        "image-name-long-tag": ("-n", "app:" + "1" * 129, RELEASE),
        "image-name-upper": ("-n", "App:1", RELEASE),
        "image-name-unicode-tag": ("-n", "app:é", RELEASE),
        "pip-conf-missing": ("--pip-conf", "missing.conf", RELEASE),
        "pip-constraint-missing": ("--pip-constraint", "missing.txt", RELEASE),
        "pip-constraint-dev-zero": ("--pip-constraint", "/dev/zero", RELEASE),
        "unknown-option": ("--no-such-option", RELEASE),
        "no-release": (),
        "runtime-retired": ("-r", "alpine/3.6", RELEASE),
    }
    for name, args in more.items():
        yield f"option-{name}", Case(args, 2)
    for index, value in enumerate(["a\x00b", "x" * 5000, "a/" * 3000 + "b"]):
        # A NUL or an over-long path is a command-line mistake, whatever the option.
        yield f"option-config-path-{index}", Case(("-c", value, RELEASE), 2)
        yield f"option-result-file-path-{index}", Case(("--result-file", value, RELEASE), 2)
        yield f"option-pip-conf-path-{index}", Case(("--pip-conf", value, RELEASE), 2)
        yield f"option-pip-constraint-path-{index}", Case(("--pip-constraint", value, RELEASE), 2)
    yield "option-result-file-directory", Case(("--result-file", "out", RELEASE), 3, {"out/keep": ""})
    yield "option-result-file-under-a-file", Case(("--result-file", "blocker/r.yml", RELEASE), 3, {"blocker": ""})


def _release_cases() -> Iterator[tuple[str, Case]]:
    releases = [
        "",
        " ",
        "==1.0",
        "app==",
        "app=1.0",
        "app==1.0 --index-url http://evil.example.com",
        "app==1.0; os_name == 'posix'",
        "app @ https://example.com/app.whl",
        "https://example.com/app-1.0-py3-none-any.whl",
        "git+https://example.com/app.git",
        "$(id)==1.0",
        "app[$(id)]==1.0",
        "app==1.0\nRUN id",
        "app\x00==1.0",
        "x" * 5000,
        "app>=1.0",
        "app==1.*",
        "app",
        "ａｐｐ==1.0",
        "dist/missing-1.0.tar.gz",
        "./app-1.0-py3-none-any.whl[$(id)]",
        "./app-1.0-py3-none-any.whl[a b]",
        "./notes.txt",
        "./bad name.whl",
        "./app-1.0-cp3x-abi3-manylinux_2_17_x86_64.whl",
        "./app-1.0-cp313-cp313-musllinux_1_2_x86_64.whl",
        "./app-1.0-cp313-cp313-win_amd64.whl",
        "./loop-1.0.tar.gz",
        "./folder-1.0.tar.gz",
    ]
    files: dict[str, str | bytes] = {
        "app-1.0-py3-none-any.whl": b"",
        "notes.txt": "",
        "bad name.whl": b"",
        "app-1.0-cp3x-abi3-manylinux_2_17_x86_64.whl": b"",
        "app-1.0-cp313-cp313-musllinux_1_2_x86_64.whl": b"",
        "app-1.0-cp313-cp313-win_amd64.whl": b"",
        "folder-1.0.tar.gz/keep": "",
    }
    for index, release in enumerate(releases):
        yield f"release-{index}", Case((release,), 2, files)


def _pip_cases() -> Iterator[tuple[str, Case]]:
    confs = {
        "no-section": "index-url = https://h.example.com/simple\n",
        "garbage": "[global\nindex-url\n",
        "not-utf8": b"[global]\nindex-url = https://h.example.com/caf\xe9\n",
        "two-index-urls": "[global]\nindex-url = https://a.example.com/ https://b.example.com/\n",
        "timeout-word": "[global]\ntimeout = soon\n",
        "timeout-injection": "[global]\ntimeout = 10\n  cert = /etc/shadow\n",
        "retries-shell": "[global]\nretries = $(id)\n",
        "trusted-host-shell": "[global]\ntrusted-host = a.example.com b;rm\n",
        "cert-missing": "[global]\ncert = /nonexistent/ca.pem\n",
        "cert-dev-zero": "[global]\ncert = /dev/zero\n",
        "cert-directory": "[global]\ncert = /etc\n",
        "client-cert-missing": "[global]\nclient-cert = /nonexistent/client.pem\n",
        "duplicate-option": "[global]\ntimeout = 1\ntimeout = 2\n",
        "duplicate-section": "[global]\n[global]\n",
    }
    for name, text in confs.items():
        yield f"pip-conf-{name}", Case(("--pip-conf", "pip.conf", RELEASE), 3, {"pip.conf": text})
    variables = {
        "PIP_TIMEOUT": "ten",
        "PIP_RETRIES": "-1",
        "PIP_INDEX_URL": "https://a.example.com/simple\ncert = /etc/shadow",
        "PIP_TRUSTED_HOST": "a'b",
        "PIP_CERT": "/nonexistent/ca.pem",
        "PIP_CLIENT_CERT": "/dev/null",
    }
    for name, value in variables.items():
        yield f"pip-variable-{name}", Case((RELEASE,), 3, env={name: value})


# URLs holding a token (issue 20): in the path of the known hosts or of any host, in the
# query, as the user name beside an empty or placeholder password. Each with the token.
TOKEN_URLS = {
    "fury-path": ("https://pypi.fury.io/Sh0rtT0k/team/", "Sh0rtT0k"),
    "fury-repo-path": ("https://repo.fury.io/Fury7Tok/team/", "Fury7Tok"),
    "cloudsmith-path": ("https://dl.cloudsmith.io/CsT0ken9/org/repo/python/simple/", "CsT0ken9"),
    "long-path": ("https://idx.example.com/Ab12Cd34Ef56Gh78Ij90/simple/", "Ab12Cd34Ef56Gh78Ij90"),
    "query-token": ("https://idx.example.com/simple/?token=Qu3ryT0k", "Qu3ryT0k"),
    "query-key": ("https://idx.example.com/simple/?key=K3yK3yK3y", "K3yK3yK3y"),
    "user-empty-password": ("https://Us3rT0ken:@idx.example.com/simple/", "Us3rT0ken"),
    "user-x-password": ("https://Us3rT0kenX:x@idx.example.com/simple/", "Us3rT0kenX"),
    "user-oauth-password": ("https://Us3rT0kenO:x-oauth-basic@idx.example.com/simple/", "Us3rT0kenO"),
    "user-only": ("https://Us3rT0kenU@idx.example.com/simple/", "Us3rT0kenU"),
    "password": ("https://deploy:Passw0rdPassw0rd@idx.example.com/simple/", "Passw0rdPassw0rd"),
}


def _token_cases() -> Iterator[tuple[str, Case]]:
    """Tokens in apt source lines (refused, exit 3) and in pip settings that fail (exit 3): never shown."""
    lines = {
        "deb": "deb {url} trixie main",
        "deb-options": "deb [arch=amd64] {url} trixie main",
        "deb-signed-by": "deb [signed-by=/usr/share/keyrings/k.gpg] {url} ./",
    }
    for url_name, (url, token) in TOKEN_URLS.items():
        apt_url = url.replace("/python/simple/", "/deb/debian").replace("/simple/", "/debian")
        for line_name, line in lines.items():
            uri = line.format(url=apt_url)
            conf = f"repositories: {{r: {{uri: {uri!r}, key: {PGP_KEY!r}}}}}\n"
            yield (
                f"token-repository-{url_name}-{line_name}",
                Case(("-c", "conf.yml", RELEASE), 3, {"conf.yml": conf}, secret=token),
            )
    failing = {
        "timeout-word": "timeout = soon\n",
        "retries-shell": "retries = $(id)\n",
        "trusted-host-shell": "trusted-host = a.example.com b;rm\n",
        "two-index-urls": None,
    }
    for url_name, (url, token) in TOKEN_URLS.items():
        for fail_name, extra in failing.items():
            text = f"[global]\nindex-url = {url} {url}\n" if extra is None else f"[global]\nindex-url = {url}\n{extra}"
            yield (
                f"token-pip-{url_name}-{fail_name}",
                Case(("--pip-conf", "pip.conf", RELEASE), 3, {"pip.conf": text}, secret=token),
            )
        yield (
            f"token-pip-variable-{url_name}",
            Case((RELEASE,), 3, env={"PIP_EXTRA_INDEX_URL": url, "PIP_TIMEOUT": "soon"}, secret=token),
        )


def _issue_20_cases() -> Iterator[tuple[str, Case]]:
    """RELEASE and --sbom inputs of issue 20's Lows."""
    huge = {
        "brackets": "[" * 100_000,
        "path-brackets": "a/[" * 100_000,
        "root-brackets": "/[" * 50_000 + "]",
        "extras-brackets": "./x.whl[" * 20_000 + "]",
        "closing-brackets": "]" * 100_000,
        "long-path": "./" + "a/" * 3000 + "app-1.0.tar.gz",
    }
    for name, release in huge.items():
        yield f"release-huge-{name}", Case((release,), 2)
    hostile_names = [
        "app-1.0-py3-none-any$(id).whl",
        "app-1.0-py3-none-any`id`.whl",
        "app-1.0-py3-none-any;id.whl",
        "äpp-1.0-py3-none-any.whl",
        "app-1.0-py3-none-an\u0660.whl",
        "app bar-1.0.tar.gz",
        "app-1.0$(id).tar.gz",
        "app-1.0-py3-none-any\u202e.whl",
    ]
    for index, name in enumerate(hostile_names):
        yield f"release-hostile-name-{index}", Case((f"./{name}",), 2, {name: b"PK"})
    sbom_paths = {
        "under-a-file": ("--sbom", "blocker/sbom.json"),
        "under-a-file-deeper": ("--sbom", "blocker/a/sbom.json"),
    }
    for name, args in sbom_paths.items():
        yield f"sbom-{name}", Case((*args, RELEASE), 3, {"blocker": ""})
        yield f"sbom-{name}-dry-run", Case(("--dry-run", *args, RELEASE), 3, {"blocker": ""})
    yield (
        "sbom-config-under-a-file",
        Case(("-c", "c.yml", RELEASE), 3, {"blocker": "", "c.yml": "sbom: blocker/s.json\n"}),
    )


CASES = dict(
    [*_config_cases(), *_option_cases(), *_release_cases(), *_pip_cases(), *_token_cases(), *_issue_20_cases()]
)


def test_the_table_is_large_enough() -> None:
    assert len(CASES) + len(ENGINE_CASES) >= 500


def _snapshot(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_hostile_input_ends_in_one_paragraph(
    grocker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    if "loop-1.0.tar.gz" in " ".join(case.args):
        (tmp_path / "loop-1.0.tar.gz").symlink_to(tmp_path / "loop-1.0.tar.gz")
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    before = _snapshot(tmp_path)
    start = time.monotonic()

    run = grocker("build", *case.args)

    assert time.monotonic() - start < 5.0
    assert run.exit_code == case.exit_code, run.stderr
    assert run.requests == []
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    assert "unexpectedly" not in run.stderr
    # One paragraph: click's usage errors span a "Usage:" line, a hint line and the error line.
    lines = run.stderr.rstrip("\n").split("\n")
    if run.stderr.startswith("Usage:"):
        assert lines[-1].startswith("Error: ")
    else:
        assert len(lines) == 1, run.stderr
        assert lines[0].startswith("error: ")
    assert len(run.stderr) < 2000, "values in messages are shortened"
    assert _snapshot(tmp_path) == before, "nothing is written"
    assert not os.path.lexists(tmp_path / "out" / "r.yml")
    if case.secret:
        assert case.secret not in run.stderr


def _context_meta(name: str) -> str:
    return f"docker/contexts/meta/{hashlib.sha256(name.encode()).hexdigest()}/meta.json"


# Engine settings (issue 20): each ends in an engine error (exit 4) before any engine is reached.
ENGINE_CASES: dict[str, tuple[dict[str, str], dict[str, str | bytes], str]] = {
    **{
        f"docker-host-{index}": ({"DOCKER_HOST": host}, {}, "")
        for index, host in enumerate(
            [
                "tcp://127.0.0.1:99999",
                "tcp://127.0.0.1:65536",
                "127.0.0.1:70000",
                "tcp://[::1",
                "tcp://h:port",
                "ssh://me@host:123456",
                "https://h:0",
                "ftp://h:21",
                "tcp://h:" + "9" * 500,
            ]
        )
    },
    "context-meta-fifo": ({"DOCKER_CONTEXT": "ci"}, {}, "fifo"),
    "context-meta-dev-zero": ({"DOCKER_CONTEXT": "ci"}, {}, "/dev/zero"),
    "context-meta-not-json": ({"DOCKER_CONTEXT": "ci"}, {_context_meta("ci"): "{"}, ""),
    "context-meta-list": ({"DOCKER_CONTEXT": "ci"}, {_context_meta("ci"): "[]"}, ""),
    "context-meta-host-number": (
        {"DOCKER_CONTEXT": "ci"},
        {_context_meta("ci"): '{"Endpoints": {"docker": {"Host": 3}}}'},
        "",
    ),
    "context-meta-bad-port": (
        {"DOCKER_CONTEXT": "ci"},
        {_context_meta("ci"): '{"Endpoints": {"docker": {"Host": "tcp://h:99999"}}}'},
        "",
    ),
    "context-missing": ({"DOCKER_CONTEXT": "nowhere"}, {}, ""),
    "current-context-missing": ({}, {"docker/config.json": '{"currentContext": "gone"}'}, ""),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("env", "files", "special"), ENGINE_CASES.values(), ids=ENGINE_CASES.keys())
def test_hostile_engine_settings_end_in_an_engine_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], files: dict[str, str | bytes], special: str
) -> None:
    """The real api.build: the engine is chosen from the hostile settings, and never reached."""
    from click.testing import CliRunner

    from grocker import cli
    from grocker.engine import connection as engine

    def no_engine(endpoint: object) -> None:
        raise AssertionError(f"reached the engine {endpoint}")

    monkeypatch.setattr(engine, "connect", no_engine)
    monkeypatch.chdir(tmp_path)
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    if special:
        meta = tmp_path / _context_meta("ci")
        meta.parent.mkdir(parents=True, exist_ok=True)
        if special == "fifo":
            os.mkfifo(meta)
        else:
            meta.symlink_to(special)
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_TLS", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    start = time.monotonic()

    run = CliRunner().invoke(cli.main, ["build", "--no-push", RELEASE], catch_exceptions=False)

    assert time.monotonic() - start < 5.0
    assert run.exit_code == 4, run.stderr
    assert run.stderr.startswith("error: ")
    assert run.stderr.count("\n") == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert "unexpectedly" not in run.stderr
    assert len(run.stderr) < 2000
