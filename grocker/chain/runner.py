"""The runner: the final image, built FROM root with the wheels of the lock, checked, then tagged.

The final name is given only to an image that built and whose entrypoint resolves, so a failed
build never leaves the name pointing at a stale or broken image.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import json
import re
from collections.abc import Mapping, Sequence
from importlib import resources

from packaging.version import Version

from grocker import labels as keys
from grocker.chain import freshness, render, wheel_server
from grocker.chain.render import APP_VENV
from grocker.chain.session import Session
from grocker.engine.protocol import NO_NETWORK
from grocker.errors import BuildError, EngineError
from grocker.log import counted, phase, tail
from grocker.naming import base_kind, internal_labels, runner_labels
from grocker.wheels import WheelLock
from grocker.wire.runner import MISSING_MODULE_MARK, SETUPTOOLS_MARK

# Docker's classic builder says "---> Using cache"; Podman's (buildah) "--> Using cache ID".
_CACHED_STEP_RE = re.compile(r"-{2,3}> Using cache(?: [0-9a-f]{12,64})?")


def build_runner(
    session: Session,
    served: wheel_server.Served,
    server: wheel_server.Starting,
    labels: Mapping[str, str] | None = None,
    cache_from: Sequence[str] = (),
) -> str:
    """Build the runner from the wheel server, check its entrypoint, then tag it; return its ID.

    `served` is the build's wheel server (`server`), serving the files of the build's lock; the
    server is removed while the entrypoint check runs. `labels` go on the image with the
    runner's own; `cache_from` are the build's cache sources (`freshness.cache_sources`).
    """
    image_id: str | None = None
    try:
        # Leaving the pool waits for the check, whose container its own block removes.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="grocker-check") as pool:
            try:
                image_id = _build_image(session, served.lock, served, labels or {}, cache_from)
                checked = pool.submit(_check_entrypoint, session, image_id)
            finally:
                server.close()
            checked.result()
    except BaseException:
        # Interrupts included. An image that already has a name is an earlier build's (a fully
        # cached build gives the same image): it stays.
        with contextlib.suppress(EngineError):  # never hide the first error
            info = session.engine.image(image_id) if image_id else None
            if info is not None and not info.tags:
                session.engine.try_remove_image(info.id)
        raise
    session.engine.tag(image_id, session.request.image_name)
    return image_id


def _build_image(
    session: Session, lock: WheelLock, served: wheel_server.Served, extra: Mapping[str, str], cache_from: Sequence[str]
) -> str:
    release, config = session.request.release, session.config
    epoch = session.request.source_date_epoch
    # With the user's SOURCE_DATE_EPOCH the label is as reproducible as the layers; otherwise it
    # says when the image was built (the engine records that time in the configuration anyway).
    when = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc) if epoch is not None else None
    created = (when or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = runner_labels(release, config, created)
    labels[keys.APP_VERSION_LABEL] = labels[keys.OCI_VERSION] = lock.app_version
    labels.update(freshness.inputs_label(session))
    labels.update(extra)
    # A version range resolves to one release: the result file names the one built.
    session.result.release = release.pinned(lock.app_version).requirement if release.version is None else release.text
    # The labels are the Dockerfile's last instruction (see purge.built_by_grocker), not
    # build options, which the classic builder turns into one step each.
    context = render.runner_context(release, config, session.names.runner_base(config), lock, labels, epoch)
    cached: list[str] = []
    python = config.runtime.python
    missing_python: list[str] = []

    def on_line(line: str) -> None:
        if _CACHED_STEP_RE.fullmatch(line.strip()):
            cached.append(line)
        # dash: "/bin/sh: 1: python3: not found"; busybox: "/bin/sh: python3: not found".
        if line.strip().endswith(f" {python}: not found"):
            missing_python.append(line)
        session.stream_line(line)

    with phase(f"build image {session.request.image_name}") as note:
        try:
            image_id = session.engine.build(
                context.files,
                labels={},
                what="runner image",
                on_line=on_line,
                network=served.network,
                extra_hosts=served.hosts,
                nocache=session.request.no_cache,
                cache_from=cache_from,
            )
        except BuildError as err:
            if not missing_python:
                raise
            # The ABI gate says so when it runs; a lock it has nothing to check in starts no gate.
            raise BuildError(
                f"The runner's steps could not run in the {base_kind(config)} "
                f"{session.names.runner_base(config)}: it has no "
                f"{python}. A runtime's root image must have its Python: add its package to the "
                "runtime's run dependencies, or fix the runtime's `python`.",
                details=missing_python[-1].strip(),
            ) from err
        if cached:
            note(counted(len(cached), "cached layer"))
            session.reused(counted(len(cached), "cached layer"))
    return image_id


# The entrypoint check (resources/entrypoint/): probe.py, run by the venv's python, finds the
# command and runs load.py's text, which imports the console script's entry point and reports a
# module missing from the image (MISSING_MODULE_MARK, SETUPTOOLS_MARK).
def _entrypoint_program(name: str) -> str:
    """The text of the entrypoint check's program resources/entrypoint/NAME.py."""
    return resources.files("grocker").joinpath(f"resources/entrypoint/{name}.py").read_text("utf-8")


_IMPORT_CHECK = _entrypoint_program("load")
_CHECK_SCRIPT = _entrypoint_program("probe")
_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def _check_entrypoint(session: Session, image_id: str) -> None:
    entrypoint = session.config.entrypoint_name
    with session.engine.container(
        image_id,
        role=keys.CHECK,
        labels=internal_labels(session.config, keys.CHECK),
        entrypoint=[f"{APP_VENV}/bin/python", "-c", _CHECK_SCRIPT.strip()],
        command=[entrypoint, _IMPORT_CHECK],
        # The application's code runs here (the import): it gets no network, and its failures
        # to reach one are not the check's concern.
        network=NO_NETWORK,
    ) as container:
        status, lines = container.run(session.stream_line)
    app = session.request.release.name
    if status == 1:
        raise BuildError(
            f"The image's entrypoint {entrypoint!r} does not exist in it: neither the "
            f"application {app} nor its dependencies install a command of "
            "that name, and it is not on the image's PATH. Name an existing command with "
            "-e/--entrypoint (or entrypoint_name in .grocker.yml), or add a console_scripts "
            f"entry point called {entrypoint!r} to the application."
        )
    if status != 0:
        raise BuildError(
            f"The check of the image's entrypoint {entrypoint!r} failed because the image's Python could "
            f"not look up the command's entry point (status {status}). See its output below (all of it "
            "with -v), and check that the application's metadata installs and loads with that Python.",
            details=tail(lines),
        )
    missing = [line[len(MISSING_MODULE_MARK) :] for line in lines if line.startswith(MISSING_MODULE_MARK)]
    if missing:
        setuptools = [line[len(SETUPTOOLS_MARK) :] for line in lines if line.startswith(SETUPTOOLS_MARK)]
        installed = _setuptools_version(setuptools[-1]) if setuptools else UNKNOWN
        raise BuildError(missing_module_message(entrypoint, app, _module_name(missing[-1]), installed))


UNKNOWN = "?"
"""The setuptools version when the check did not say whether setuptools is installed."""
_NO_PKG_RESOURCES = Version("82")
"""The first setuptools release without pkg_resources."""
_REPLACE = (
    "or replace pkg_resources in the code with importlib.metadata and importlib.resources (see "
    "Troubleshooting in Grocker's documentation)."
)


def missing_module_message(entrypoint: str, app: str, module: str, setuptools: str | None = UNKNOWN) -> str:
    """What to do when the entrypoint's import fails because `module` is not in the image.

    `setuptools` is the version of setuptools installed in the image, None when there is none, or
    UNKNOWN; it matters only for pkg_resources, which setuptools before 82 ships.
    """
    failure = f'"No module named {module!r}"'
    start = f"The image's entrypoint {entrypoint!r} cannot start: importing it fails with {failure}."
    if module == "pkg_resources" or module.startswith("pkg_resources."):
        if setuptools is None:
            return (
                f"{start} The runner image has no setuptools and no pip, and pkg_resources is part of "
                f"setuptools. Declare setuptools as a dependency of the application {app} (install_requires, "
                "or dependencies in pyproject.toml) with a version before 82, the first without "
                f"pkg_resources (`setuptools<82`), {_REPLACE}"
            )
        if setuptools == UNKNOWN:
            return (
                f"{start} pkg_resources is part of setuptools before version 82: the application {app} needs "
                f"setuptools<82 in the image (declared as its dependency, or constrained with a line "
                f"`setuptools<82` in the pip_constraint file), {_REPLACE}"
            )
        if Version(setuptools) >= _NO_PKG_RESOURCES:
            return (
                f"{start} The image has setuptools {setuptools}, and setuptools 82 and later no longer ship "
                "pkg_resources. Constrain setuptools to an older version: a line `setuptools<82` in a pip "
                "constraints file named by pip_constraint in .grocker.yml (or --pip-constraint FILE), then "
                f"build again; {_REPLACE}"
            )
        return (
            f"{start} The image has setuptools {setuptools}, but no pkg_resources: check that no other "
            f"distribution of the application {app}'s dependencies removes or replaces it, {_REPLACE}"
        )
    return (
        f"{start} No distribution installed in the image provides that module. Declare the one that "
        f"does as a dependency of the application {app} (or give the extra that brings it in RELEASE)."
    )


def _setuptools_version(reported: str) -> str | None:
    """The setuptools version the check printed (JSON), None for none, UNKNOWN for anything else."""
    with contextlib.suppress(ValueError):
        found = json.loads(reported)
        if found is None:
            return None
        if isinstance(found, str) and len(found) <= 64:
            return str(Version(found))  # InvalidVersion is a ValueError: a forged line says nothing
    return UNKNOWN


def _module_name(reported: str) -> str:
    """The module name the check printed, as JSON; a plain dotted name, or a shortened placeholder."""
    with contextlib.suppress(ValueError):
        name = json.loads(reported)
        if isinstance(name, str) and _MODULE_RE.fullmatch(name):
            return name
    return "?"
