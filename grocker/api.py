"""The library entry points: prepare a build from options, run it, purge.

CI scripts call these directly; the CLI is a thin layer that parses arguments, calls them and
maps exceptions to exit codes. Environment and paths come in as arguments, never from globals.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from grocker import naming, reference
from grocker import purge as purge_module
from grocker.chain import render
from grocker.chain.build import BuildRequest, BuildResult
from grocker.chain.build import build as run_build
from grocker.config import CLI_SOURCE, Layer, ProjectConfig, describe, load_defaults, load_file, project_files, resolve
from grocker.config.pipconf import load_pip_settings, mask
from grocker.config.release import check_wheel_platform, parse_release
from grocker.engine import endpoint
from grocker.errors import ConfigError, cut, shown
from grocker.log import logger
from grocker.purge import PurgeOptions, PurgeReport


def load_config(
    config_files: Sequence[Path] = (),
    *,
    cwd: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ProjectConfig:
    """Merge the packaged defaults, the config files (or ./.grocker.yml) and `overrides`."""
    cwd = cwd or Path.cwd()
    layers = [load_defaults(), *(load_file(path) for path in project_files(config_files, cwd))]
    if overrides:
        layers.append(Layer(CLI_SOURCE, dict(overrides)))
    config = resolve(layers)
    if config.image_prefix:
        reference.check_prefix(config.image_prefix)
    return config


def prepare_build(
    release_text: str,
    config: ProjectConfig,
    *,
    image_name: str | None = None,
    pip_conf: Path | None = None,
    result_file: Path | None = None,
    build_dependencies: bool = True,
    build_image: bool = True,
    push: bool | None = None,
    no_cache: bool = False,
    refresh: bool = False,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> BuildRequest:
    """Check the release and the options and decide the final name: a frozen BuildRequest."""
    cwd = cwd or Path.cwd()
    env = os.environ if env is None else env
    if result_file is not None:
        check_result_file(cwd / result_file)
    if config.sbom is not None:
        # Written after the build and before the push: a path that cannot be written fails now.
        check_output_file(cwd / config.sbom, f"The SBOM file {cut(str(config.sbom))} (--sbom or `sbom`)")
    release = parse_release(release_text, cwd)
    check_wheel_platform(release, config.runtime.python_version, config.runtime.family)
    # `-n ""` is a mistake, not a request for the default name.
    name = (
        reference.check_image_name(image_name) if image_name is not None else naming.default_image_name(release, config)
    )
    pip = load_pip_settings(pip_conf, env, Path(env.get("HOME", str(Path.home()))))
    for skipped in pip.skipped:
        logger.warning(
            "pip setting %s is a local path that does not exist on the engine; it is not "
            "given to the compile container.",
            # Logged before the CLI installs the mask of these settings: masked here.
            mask(skipped, pip.secrets()),
        )
    return BuildRequest(
        release=release,
        config=config,
        image_name=name,
        pip=pip,
        result_file=result_file,
        build_dependencies=build_dependencies,
        build_image=build_image,
        push=decide_push(push, name, config, build_dependencies=build_dependencies, build_image=build_image),
        no_cache=no_cache,
        refresh=refresh,
        source_date_epoch=source_date_epoch(env),
        docker_config=endpoint.docker_config_dir(env),
    )


def decide_push(
    push: bool | None, name: str, config: ProjectConfig, *, build_dependencies: bool, build_image: bool
) -> bool:
    """Whether the run pushes: `--push/--no-push` as given, else wherever a registry is named.

    By default a run pushes when it builds the image or is the push phase alone (neither
    dependencies nor image built), and the final name or the image prefix names a registry or
    a namespace: the final image goes to its name's registry, the internal images to the
    prefix's. A dependencies-only run pushes only when asked. An explicit --push with no
    registry anywhere is a configuration error, raised before any engine work.
    """
    pushable = reference.has_registry(name) or bool(config.image_prefix)
    if push is None:
        return pushable and (build_image or not build_dependencies)
    if push and not pushable:
        raise ConfigError(
            f"--push failed because neither the image name {cut(name)} nor an image prefix names a "
            "registry to push to. Give the image a name under a registry (-n REGISTRY/NAME:TAG), or a "
            "prefix (--image-prefix REGISTRY, or docker_image_prefix in the configuration), or drop --push."
        )
    return push


def source_date_epoch(env: Mapping[str, str]) -> int | None:
    """The SOURCE_DATE_EPOCH of `env` (reproducible-builds.org's convention), checked; None if unset or empty."""
    text = env.get("SOURCE_DATE_EPOCH", "")
    if not text:
        return None
    if not re.fullmatch(r"[0-9]{1,12}", text):
        raise ConfigError(
            f"SOURCE_DATE_EPOCH {shown(text, 40)} is not a whole number of seconds since 1970-01-01 UTC. "
            "Set it to one (e.g. `git log -1 --format=%ct`) or unset it to let Grocker derive one from the wheels."
        )
    return render.check_source_date_epoch(int(text))


def check_result_file(path: Path) -> Path:
    """Refuse a result file that could not be written after the build, before any engine work.

    Nothing is created here (a dry run writes nothing): the nearest existing folder must be a
    writable directory, and the file itself, if it exists, a writable non-directory.
    """
    return check_output_file(path, f"--result-file {cut(str(path))}")


def check_output_file(path: Path, where: str) -> Path:
    """Refuse a file Grocker writes after the build (result file, SBOM) when it could not be written."""
    try:
        _check_result_path(path, where)
    except (OSError, ValueError) as err:  # a name too long, a NUL character
        problem = err.strerror if isinstance(err, OSError) and err.strerror else cut(str(err), 80)
        raise ConfigError(f"{where} cannot be used: {problem}. Give another path.") from err
    return path


def _check_result_path(path: Path, where: str) -> None:
    try:
        os.stat(path)  # Path.is_dir() would hide a NUL character or a name too long
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        pass  # reported below, with the folder that is a file
    if path.is_dir():
        raise ConfigError(f"{where} is a directory. Give the path of a file (it is created with its folders).")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{where} exists and cannot be written. Fix its permissions or give another path.")
    parent = path.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(
            f"{where} cannot be created: {cut(str(parent))} is not a directory. Give a path under a directory."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{where} cannot be created: the directory {cut(str(parent))} is not writable. Fix its "
            "permissions or give another path."
        )


def build(request: BuildRequest, env: Mapping[str, str] | None = None) -> BuildResult:
    """Connect to the engine named by `env` (default: this process's) and run the build."""
    from grocker.engine.connection import connect  # docker-py is imported only to reach an engine

    engine = connect(endpoint.from_environment(os.environ if env is None else env))
    return run_build(request, engine)


def dry_run(request: BuildRequest) -> str:
    """The resolved configuration and the four rendered build contexts, as text."""
    config = request.config
    names = naming.internal_names(config, request.pip)
    lines = ["# Resolved configuration (value  [source])"]
    lines += [f"{key}: {value}  [{source}]" for key, value, source in describe(config)]
    lines += [
        f"release: {request.release.requirement}",
        f"image: {request.image_name}",
        f"root image: {names.root}",
        f"compiler image: {names.compiler}",
        f"wheel-server image: {names.wheel_server}",
        *([f"minimal base image: {names.minimal}"] if config.runner == "minimal" else []),
        f"wheel volume: {names.volume}",
        f"candidates volume: {names.candidates}",
        f"pip settings from: {', '.join(request.pip.sources) or 'none'}",
        "",
    ]
    contexts = [
        render.root_context(config),
        render.compiler_context(config, names.root),
        render.wheel_server_context(config, names.root),
        *([render.minimal_context(config, names.root)] if config.runner == "minimal" else []),
        render.runner_context(
            request.release,
            config,
            names.runner_base(config),
            render.placeholder_lock(request.release),
            # The runner's complete Dockerfile, labels included; the version and date are
            # known only when the build runs.
            _dry_run_labels(request),
            request.source_date_epoch,
        ),
    ]
    for context in contexts:
        for path, content in context.files.items():
            if path == "Dockerfile" or path.endswith(".sh"):
                lines.append(f"# ---- {context.role} image: {path}")
                lines.append(content.decode("utf-8").rstrip("\n"))
                lines.append("")
    return "\n".join(lines)


def _dry_run_labels(request: BuildRequest) -> dict[str, str]:
    labels = naming.runner_labels(request.release, request.config, "<build time>")
    if request.release.version is None:
        labels["grocker.app.version"] = labels["org.opencontainers.image.version"] = "<resolved version>"
    return labels


def purge(options: PurgeOptions, env: Mapping[str, str] | None = None) -> PurgeReport:
    """Remove what Grocker created on the engine named by `env` (default: this process's)."""
    return purge_module.purge(options, os.environ if env is None else env)
