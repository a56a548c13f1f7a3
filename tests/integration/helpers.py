"""Helpers of the integration tests: the CLI in a subprocess, fixture packaging, registry queries, polling.

Waiting in tests goes through `poll_until`: a condition and a deadline, never a bare sleep.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import docker
import pytest

from grocker.api import load_config
from grocker.config.pipconf import load_pip_settings
from grocker.naming import InternalNames, internal_names

REPO_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def poll_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.2,
    stop_if: Callable[[], bool] | None = None,
    explain: Callable[[], str] | None = None,
) -> T:
    """Call `predicate` until it returns a true value, and return that value.

    Fails the test, naming `what` and the last value seen, once `timeout` seconds have passed,
    or at once when `stop_if()` says waiting longer is pointless (the process that should
    answer has ended). `explain()`, if given, adds what to read to the failure (a log's tail).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        stopped = stop_if is not None and stop_if()
        if stopped or time.monotonic() > deadline:
            why = "the process it waited for ended" if stopped else f"did not happen within {timeout:.0f} s"
            more = f"\n{explain()}" if explain is not None else ""
            pytest.fail(f"{what}: {why} (last seen: {value!r}){more}")
        time.sleep(interval)


@dataclass
class Run:
    """A finished `grocker` invocation."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Grocker:
    """Runs the real CLI in a subprocess and remembers the images it names."""

    def __init__(self, client: docker.DockerClient, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.client = client
        self.workdir = workdir
        # What points the subprocess at the engine under test (DOCKER_HOST), over os.environ.
        self.env = dict(env or {})
        self.images: list[str] = []

    def name(self, repository: str = "app", tag: str = "1") -> str:
        """A unique image name, removed at the end of the session."""
        name = f"grocker-test-{repository}-{uuid.uuid4().hex[:8]}:{tag}"
        self.images.append(name)
        return name

    def run(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 900) -> Run:
        """Run `python -m grocker ARGS`; never raises on a non-zero exit."""
        full_env = dict(os.environ)
        full_env.update(self.env)
        full_env.update(env or {})
        completed = subprocess.run(
            [sys.executable, "-m", "grocker", *args],
            cwd=cwd or self.workdir,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Run(completed.returncode, completed.stdout, completed.stderr)

    def build(self, *args: str, **kwargs: object) -> Run:
        """`grocker build ARGS`, asserting success, and remembering the image it prints."""
        result = self.run("build", *args, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, result.output
        image = result.stdout.strip().splitlines()[-1]
        self.images.append(image)
        return result

    def docker_run(self, image: str, *args: str, entrypoint: str | None = None) -> str:
        """Run the image and return what it printed (stdout and stderr)."""
        container = self.client.containers.run(image, list(args), entrypoint=entrypoint, detach=True)
        try:
            container.wait()
            return container.logs(stdout=True, stderr=True).decode("utf-8")
        finally:
            container.remove(v=True)  # with the anonymous volumes of the image's VOLUMEs


OUTPUT_END = "grocker-test-output-end"


def output_of(client: docker.DockerClient, image: str, command: list[str], **options: object) -> bytes:
    """What `command` printed on stdout in a container of `image` (through its /bin/sh); then remove it.

    Podman 5 now and then returns the logs of a container that just exited empty, or only their
    first lines, for a moment (seen in CI). The command runs with a marker printed after it, and the
    logs are read again until the marker is there: the output is then whole. A command that fails
    fails the test with its output. `options` go to docker-py's `containers.run` (volumes, user).
    """
    script = f'"$@"; status=$?; echo {OUTPUT_END}; exit $status'
    container = client.containers.run(
        image, ["-c", script, "sh", *command], entrypoint="/bin/sh", detach=True, **options
    )
    try:
        status = container.wait()["StatusCode"]
        marker = f"{OUTPUT_END}\n".encode()

        def whole() -> bytes:
            output = bytes(container.logs(stdout=True, stderr=False))
            return output if marker in output else b""

        output = poll_until(whole, timeout=30, what=f"the whole output of {command[:3]} in {image}")
        assert status == 0, (status, container.logs(stdout=True, stderr=True).decode("utf-8", "replace"))
        return output.replace(marker, b"")
    finally:
        container.remove(v=True)


def manifest_digest(reference: str) -> str:
    """The registry's digest of a pushed image's manifest (localhost:5000/repo:tag)."""
    registry, _, rest = reference.partition("/")
    repository, _, tag = rest.rpartition(":")
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return str(response.headers["Docker-Content-Digest"])


def package_fixture(name: str, dist: Path, kind: str = "sdist", version: str = "1.0.0") -> Path:
    """Build an sdist or wheel of tests/fixtures/NAME (pure-app takes its version from env)."""
    source = REPO_ROOT / "tests" / "fixtures" / name
    with tempfile.TemporaryDirectory() as work:
        copy = Path(work) / name
        shutil.copytree(source, copy)
        # An sdist's setup.py runs again where it is built, without FIXTURE_VERSION: the version
        # goes into its text, so that the sdist builds the version its file name says.
        setup = copy / "setup.py"
        if setup.is_file():
            text = setup.read_text()
            setup.write_text(text.replace('os.environ.get("FIXTURE_VERSION", "1.0.0")', repr(version)))
        out = dist / f"{name}-{version}-{kind}"
        out.mkdir(exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "build", f"--{kind}", "--no-isolation", "--outdir", str(out), str(copy)],
            check=True,
            capture_output=True,
            env={**os.environ, "FIXTURE_VERSION": version},
        )
    (built,) = out.iterdir()
    return built


def names_for(pip_conf: Path | None, workdir: Path) -> InternalNames:
    """The internal names of a build of the default configuration run in `workdir` with `--pip-conf pip_conf`.

    The wheel volume is the one of those pip settings' indexes (grocker.trust); without
    `pip_conf`, of the settings the CLI reads from this environment, as a build without it does.
    """
    config = load_config(cwd=workdir)
    return internal_names(config, load_pip_settings(pip_conf, os.environ, Path.home()))


class Background:
    """`python -m grocker ARGS` running in the background, its output in files."""

    def __init__(self, args: list[str], cwd: Path, logs: Path, env: dict[str, str] | None = None) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout_path, self.stderr_path = logs / "stdout", logs / "stderr"
        with self.stdout_path.open("w") as stdout, self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "grocker", *args],
                cwd=cwd,
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, **(env or {})},
            )

    def wait(self, timeout: float) -> Run:
        """Wait for the exit; the process is killed if it takes longer than `timeout`."""
        try:
            returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        return Run(returncode, self.stdout_path.read_text(), self.stderr_path.read_text())


def download_wheels(dest: Path, *requirements: str) -> None:
    """Wheels of `requirements` from the index of this environment into `dest` (no dependencies)."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:"]
    subprocess.run([*command, "--dest", str(dest), *requirements], check=True)
