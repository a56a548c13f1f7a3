"""What one build shares between the steps of the chain."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from grocker.config import ProjectConfig
from grocker.config.pipconf import PipSettings, mask
from grocker.config.release import Release
from grocker.engine.protocol import ChainEngine
from grocker.log import logger
from grocker.naming import InternalNames


@dataclass(frozen=True)
class BuildRequest:
    """Everything one `grocker build` needs, decided before the engine is touched."""

    release: Release
    config: ProjectConfig
    image_name: str
    pip: PipSettings = field(default_factory=PipSettings)
    result_file: Path | None = None
    build_dependencies: bool = True
    build_image: bool = True
    push: bool = True
    no_cache: bool = False
    refresh: bool = False
    """Resolve the release's dependencies against the index again, even when it has a wheel lock."""
    source_date_epoch: int | None = None
    """The runner layers' file times (the user's SOURCE_DATE_EPOCH); None: derived from the wheels."""
    docker_config: Path | None = None
    """The Docker CLI's configuration folder (DOCKER_CONFIG, else ~/.docker): registry logins for the SBOM push."""


@dataclass
class BuildResult:
    """What a build produced, as written to the result file."""

    release: str
    image: str
    runtime: str
    root_image: str | None = None
    compiler_image: str | None = None
    image_id: str | None = None
    size: int | None = None
    hash: str | None = None
    sbom: str | None = None
    sbom_digest: str | None = None
    duration_seconds: float = 0.0
    reused: list[str] = field(default_factory=list)
    dependencies: str | None = None
    """For the summary line: "locked on DATE" (an existing wheel lock) or "resolved now"."""
    wheels: dict[str, int] | None = None
    """Where the lock's wheels came from: total, registry, downloaded, compiled, reused (grocker.chain.fleet)."""
    up_to_date: bool = False
    """True when the image existed, built from the same inputs, and nothing was built."""
    pulled_from: str | None = None
    """The registry the up-to-date image was pulled from (built by another engine of the fleet)."""

    def as_dict(self) -> dict[str, object]:
        """The result file's content: set values only, keys sorted when dumped."""
        values: dict[str, object] = {
            "release": self.release,
            "image": self.image,
            "runtime": self.runtime,
            "duration_seconds": round(self.duration_seconds, 1),
        }
        for key in ("root_image", "compiler_image", "image_id", "size", "hash", "sbom", "sbom_digest", "pulled_from"):
            value = getattr(self, key)
            if value is not None:
                values[key] = value
        if self.wheels is not None:
            values["wheels"] = dict(self.wheels)
        return values


@dataclass(frozen=True)
class Session:
    """One build's request, the internal names it decided, its engine and its result so far."""

    engine: ChainEngine
    request: BuildRequest
    names: InternalNames
    result: BuildResult
    secrets: tuple[str, ...] = ()
    """What must never reach a log line (credentials of the index URLs)."""
    resolving: threading.Event = field(default_factory=threading.Event, compare=False)
    """Set once the resolve's container runs, or will not run: the containers started in the
    background (the publisher's, the wheel server) wait for it (grocker.chain.background.wait_turn)."""

    @property
    def config(self) -> ProjectConfig:
        """The project configuration of the build."""
        return self.request.config

    def stream_line(self, line: str) -> None:
        """Engine output: shown at -v only, always masked."""
        logger.debug("  %s", mask(line, self.secrets))

    def reused(self, what: str) -> None:
        """Record something the build did not have to make again (the summary lists them)."""
        self.result.reused.append(what)
