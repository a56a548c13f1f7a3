"""The library entry points: prepare a build from options, run it, purge.

CI scripts call these directly; the CLI is a thin layer that parses arguments, calls them and
maps exceptions to exit codes. Environment and paths come in as arguments, never from globals.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from grocker import naming, render
from grocker import purge as purge_module
from grocker.build import BuildRequest, BuildResult
from grocker.build import build as run_build
from grocker.config import CLI_SOURCE, Layer, ProjectConfig, describe, load_defaults, load_file, project_files, resolve
from grocker.log import logger
from grocker.pipconf import load_pip_settings
from grocker.purge import PurgeOptions, PurgeReport
from grocker.release import check_wheel_platform, parse_release


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
        naming.check_prefix(config.image_prefix)
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
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> BuildRequest:
    """Check the release and the options and decide the final name: a frozen BuildRequest."""
    cwd = cwd or Path.cwd()
    env = os.environ if env is None else env
    release = parse_release(release_text, cwd)
    check_wheel_platform(release, config.runtime.python_version)
    name = naming.check_image_name(image_name) if image_name else naming.default_image_name(release, config)
    pip = load_pip_settings(pip_conf, env, Path(env.get("HOME", str(Path.home()))))
    for skipped in pip.skipped:
        logger.warning(
            "pip setting %s is a local path that does not exist on the engine; it is not "
            "given to the compile container.",
            skipped,
        )
    return BuildRequest(
        release=release,
        config=config,
        image_name=name,
        pip=pip,
        result_file=result_file,
        build_dependencies=build_dependencies,
        build_image=build_image,
        # By default, push what this run builds, when its name says where to.
        push=(build_image and naming.has_registry(name)) if push is None else push,
        no_cache=no_cache,
    )


def build(request: BuildRequest, env: Mapping[str, str] | None = None) -> BuildResult:
    """Connect to the engine named by `env` (default: this process's) and run the build."""
    from grocker.engine import connect  # docker-py is imported only to reach an engine

    engine = connect(os.environ if env is None else env)
    return run_build(request, engine)


def dry_run(request: BuildRequest) -> str:
    """The resolved configuration and the four rendered build contexts, as text."""
    config = request.config
    names = naming.internal_names(config)
    lines = ["# Resolved configuration (value  [source])"]
    lines += [f"{key}: {value}  [{source}]" for key, value, source in describe(config)]
    lines += [
        f"release: {request.release.requirement}",
        f"image: {request.image_name}",
        f"root image: {names.root}",
        f"compiler image: {names.compiler}",
        f"wheel-server image: {names.wheel_server}",
        f"wheel volume: {names.volume}",
        f"pip settings from: {', '.join(request.pip.sources) or 'none'}",
        "",
    ]
    contexts = [
        render.root_context(config),
        render.compiler_context(config, names.root),
        render.wheel_server_context(config, names.root),
        render.runner_context(request.release, config, names.root, render.placeholder_lock(request.release)),
    ]
    for context in contexts:
        for path, content in context.files.items():
            if path == "Dockerfile" or path.endswith(".sh"):
                lines.append(f"# ---- {context.role} image: {path}")
                lines.append(content.decode("utf-8").rstrip("\n"))
                lines.append("")
    return "\n".join(lines)


def purge(options: PurgeOptions, env: Mapping[str, str] | None = None) -> PurgeReport:
    """Remove what Grocker created on the engine named by `env` (default: this process's)."""
    return purge_module.purge(options, os.environ if env is None else env)
