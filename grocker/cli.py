"""The command line: parse, build one frozen request, call the core, map errors to exit codes."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click

from grocker import api
from grocker._version import __version__
from grocker.config import parse_env_options
from grocker.config.pipconf import mask
from grocker.errors import GrockerError, InterruptError, shown
from grocker.log import Mask, logger, setup
from grocker.purge import PurgeOptions

T = TypeVar("T")


@dataclass(frozen=True)
class _State:
    """What the group gives its commands: the verbosity, and the mask every printed line goes through."""

    verbosity: int
    mask: Mask


class _InputPath(click.Path):
    """click.Path that refuses a NUL character or an over-long value in one short sentence.

    click's own check would crash on a NUL (ValueError from os.stat) and quote a path of
    thousands of characters whole in its message.
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = os.fsdecode(value) if isinstance(value, (str, bytes, os.PathLike)) else str(value)
        if "\x00" in text or len(text) > 1024 or any(len(part) > 255 for part in text.split("/")):
            self.fail(f"{shown(text)} is not a usable path (a NUL character, or too long).", param, ctx)
        return super().convert(value, param, ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="grocker")
@click.option("-v", "--verbose", count=True, help="Show engine output (-v) and tracebacks (-vv).")
@click.option("-q", "--quiet", is_flag=True, help="Show only warnings and errors.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Grocker: build a minimal Docker image of a released Python application."""
    # URL credentials are hidden from the first line on, before the pip settings are read.
    ctx.obj = _State(-1 if quiet else verbose, Mask(mask))
    setup(ctx.obj.verbosity, os.environ, ctx.obj.mask)


@main.command("build")
@click.argument("release")
@click.option(
    "-c",
    "--config",
    "config_files",
    multiple=True,
    metavar="<filename>",
    type=_InputPath(path_type=Path),
    help="Grocker config file (repeatable, applied in order; default ./.grocker.yml)",
)
@click.option("-r", "--runtime", metavar="<runtime>", help="runtime used to build and run this image")
@click.option(
    "--pip-conf",
    metavar="<filename>",
    type=_InputPath(exists=True, dir_okay=False, path_type=Path),
    help="pip configuration file used to download dependencies (by default, the user's pip configuration)",
)
@click.option(
    "--pip-constraint",
    metavar="<filename>",
    type=_InputPath(exists=True, dir_okay=False, path_type=Path),
    help="pip constraint file used to download dependencies",
)
@click.option("-e", "--entrypoint", metavar="<entrypoint>", help="Docker entrypoint to use to run this image")
@click.option(
    "--volume",
    "volumes",
    multiple=True,
    metavar="<volume>",
    help="Container storage and configuration area (repeatable)",
)
@click.option(
    "--port",
    "ports",
    multiple=True,
    metavar="<port>",
    help="Port on which a container will listen for connections (repeatable)",
)
@click.option(
    "--env",
    "env",
    multiple=True,
    metavar="<env=value>",
    help="Additional environment variable for final image (repeatable)",
)
@click.option("--image-prefix", metavar="<uri>", help="docker registry or account on Docker official registry to use")
@click.option(
    "--image-base-name",
    metavar="<name>",
    help="base name for the image (eg '<image-prefix>/<image-base-name>:<image-version>')",
)
@click.option("-n", "--image-name", metavar="<name>", help="name used to tag the build image")
@click.option(
    "--result-file",
    metavar="<filename>",
    # Checked by api.prepare_build (a configuration error, exit 3), not by click.
    type=_InputPath(path_type=Path),
    help="yaml file where results (image name, ...) are written",
)
@click.option(
    "--sbom",
    metavar="<filename>",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write a CycloneDX JSON SBOM of the image there (and push it with the image)",
)
@click.option(
    "--runner",
    type=click.Choice(["full", "minimal"]),
    help="runner flavour: full (FROM the root image) or minimal (no shell, no package manager)",
)
@click.option(
    "--build-dependencies/--no-build-dependencies", default=True, show_default=True, help="build the dependencies"
)
@click.option("--build-image/--no-build-image", default=True, show_default=True, help="build the docker image")
@click.option(
    "--push/--no-push",
    default=None,
    help="push the image to its name's registry and the internal images to the prefix's (by default, when "
    "this run builds the image or only pushes, and the name or the prefix names a registry)",
)
@click.option(
    "--no-cache",
    is_flag=True,
    help="rebuild the root, compiler, wheel-server and final images without the engine's "
    "layer cache (the wheels in the volume are kept)",
)
@click.option(
    "--refresh",
    is_flag=True,
    help="resolve the release's dependencies against the index again, even when an earlier build "
    "locked them (the newest versions allowed)",
)
@click.option(
    "--dry-run", is_flag=True, help="print the resolved configuration and the rendered Dockerfiles; touch no engine"
)
@click.pass_context
def build_command(
    ctx: click.Context,
    /,
    release: str,
    config_files: tuple[Path, ...],
    runtime: str | None,
    pip_conf: Path | None,
    pip_constraint: Path | None,
    entrypoint: str | None,
    volumes: tuple[str, ...],
    ports: tuple[str, ...],
    env: tuple[str, ...],
    image_prefix: str | None,
    image_base_name: str | None,
    image_name: str | None,
    result_file: Path | None,
    sbom: Path | None,
    runner: str | None,
    build_dependencies: bool,
    build_image: bool,
    push: bool | None,
    no_cache: bool,
    refresh: bool,
    dry_run: bool,
) -> None:
    """Build docker image for <release> (a NAME==VERSION requirement, or a wheel or sdist path)."""

    def run() -> None:
        # The configuration keys set on the command line; lists given there replace the configured ones.
        overrides: dict[str, Any] = {
            "runtime": runtime,
            "pip_constraint": str(pip_constraint.resolve()) if pip_constraint else None,
            "entrypoint_name": entrypoint,
            "docker_image_prefix": image_prefix,
            "image_base_name": image_base_name,
            "volumes": list(volumes) or None,
            "ports": list(ports) or None,
            "env": parse_env_options(env) or None,
            "sbom": str(sbom.resolve()) if sbom else None,
            "runner": runner,
        }
        given = {key: value for key, value in overrides.items() if value is not None}
        config = api.load_config(config_files, overrides=given)
        for warning in config.warnings:
            logger.warning("%s", warning)
        request = api.prepare_build(
            release,
            config,
            image_name=image_name,
            pip_conf=pip_conf,
            result_file=result_file,
            build_dependencies=build_dependencies,
            build_image=build_image,
            push=push,
            no_cache=no_cache,
            refresh=refresh,
        )
        secrets = request.pip.secrets()
        _state(ctx).mask.learn(secrets)
        if dry_run:
            click.echo(mask(api.dry_run(request), secrets))
            return
        result = api.build(request)
        click.echo(result.image)

    _handle(ctx, run)


@main.command("purge")
@click.option(
    "-a",
    "--all-versions/--only-old-versions",
    default=False,
    help="also purge what the current Grocker version created",
)
@click.option(
    "-f",
    "--including-final-images/--excluding-final-images",
    default=False,
    help="also remove runner (final) images and the stopped containers that use them "
    "(a runner other images are built FROM loses its names only)",
)
@click.pass_context
def purge_command(ctx: click.Context, all_versions: bool, including_final_images: bool) -> None:
    """Purge Grocker created Docker stuff (found by label; nothing else is touched)."""

    def run() -> None:
        report = api.purge(
            PurgeOptions(all_versions=all_versions, including_final_images=including_final_images), os.environ
        )
        for line in report.lines():
            click.echo(line)

    _handle(ctx, run)


def _state(ctx: click.Context) -> _State:
    """The group's state; a command invoked alone (its own tests) gets the defaults."""
    return ctx.find_object(_State) or _State(0, Mask(mask))


def _handle(ctx: click.Context, run: Callable[[], None]) -> None:
    state = _state(ctx)
    previous = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        run()
    except GrockerError as err:
        _report(err, state)
        ctx.exit(err.exit_code)
    except KeyboardInterrupt:
        _report(InterruptError("SIGINT", 130), state)
        ctx.exit(130)
    except Exception as err:
        _report(
            GrockerError(
                f"Grocker failed unexpectedly: {type(err).__name__}: {err}. This is a bug in Grocker: "
                "run the command again with -vv to see the traceback, and report it."
            ),
            state,
        )
        ctx.exit(1)
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # The build removes its containers on its way out: a second signal (Ctrl-C pressed twice)
    # must not cut that short and leave them behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if signum == signal.SIGTERM:
        raise InterruptError("SIGTERM", 143)
    raise KeyboardInterrupt


def _report(err: GrockerError, state: _State) -> None:
    if state.verbosity >= 2:
        # Masked too: an exception's text may quote a pip setting, token included.
        sys.stderr.write(state.mask(traceback.format_exc()))
    logger.error("%s", err.message)
    if err.details:
        # The tail of a build or compile log: plain lines, so they read as the tool printed them.
        click.echo(state.mask("\n".join(f"  | {line}" for line in err.details.splitlines())), err=True)
