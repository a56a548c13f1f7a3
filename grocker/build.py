"""The build chain: root, compiler, compile, wheel server, runner, push.

Each step takes what the configuration already decided (names, rendered contexts) and runs it
on the engine. Internal images and the wheel volume are shared by every build of the same
configuration; the final image is tagged only once it is built and its entrypoint resolves.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from grocker import render, sbom_step
from grocker.config import ProjectConfig
from grocker.engine import Container, Engine
from grocker.errors import BuildError, EngineError, PushError
from grocker.log import logger, phase, tail
from grocker.naming import InternalNames, has_registry, internal_labels, internal_names, runner_labels
from grocker.pipconf import PipSettings, mask
from grocker.release import Release
from grocker.wheels import WHEELS_PATH, Lock, lock_key, parse_lock, parse_result_line

INPUT_DIR = "/tmp/grocker-input"
# Labels recording what an internal image was built FROM, so that it is rebuilt when that changes.
BASE_LABEL = "grocker.base.id"
ROOT_LABEL = "grocker.root.id"
WHEEL_SERVER_TIMEOUT = 30.0


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

    def as_dict(self) -> dict[str, object]:
        """The result file's content: set values only, keys sorted when dumped."""
        values: dict[str, object] = {
            "release": self.release,
            "image": self.image,
            "runtime": self.runtime,
            "duration_seconds": round(self.duration_seconds, 1),
        }
        for key in ("root_image", "compiler_image", "image_id", "size", "hash", "sbom", "sbom_digest"):
            value = getattr(self, key)
            if value is not None:
                values[key] = value
        return values


def build(request: BuildRequest, engine: Engine) -> BuildResult:
    """Run the enabled phases of the chain for one release and return what they produced."""
    start = time.monotonic()
    config = request.config
    names = internal_names(config)
    secrets = request.pip.secrets()
    result = BuildResult(release=request.release.text, image=request.image_name, runtime=config.runtime.name)
    chain = _Chain(engine, config, names, request, secrets, result)
    lock: Lock | None = None
    if request.build_dependencies or request.build_image:
        result.root_image = chain.ensure_root()
    if request.build_dependencies:
        compiler_context = render.compiler_context(config, names.root)
        result.compiler_image = chain.ensure_child("compiler", names.compiler, compiler_context)
        lock = chain.compile()
    if request.build_image:
        image_id = chain.build_runner(lock)
        info = engine.image(image_id)
        result.image_id = image_id
        result.size = info.size if info else None
    sbom_text = None
    if config.sbom is not None:
        sbom_text = sbom_step.write(engine, config, request.image_name, request.release, names.volume, lock)
        result.sbom = str(config.sbom)
    if request.push and not has_registry(request.image_name):
        logger.warning(
            "Not pushing %s: its name has no registry or namespace (use --image-prefix or -n).", request.image_name
        )
    elif request.push:
        if not request.build_image and engine.image(request.image_name) is None:
            raise PushError(
                f"There is no image {request.image_name} on the engine to push. Build it first (run "
                "without --no-build-image), then push with --no-build-dependencies --no-build-image --push."
            )
        chain.push_internal_images()
        with phase(f"push {request.image_name}") as note:
            result.hash = engine.push(request.image_name, chain.stream_line)
            note(result.hash)
        if sbom_text is not None:
            result.sbom_digest = sbom_step.push(config, request.image_name, result.hash, sbom_text)
    result.duration_seconds = time.monotonic() - start
    _summary(result)
    if request.result_file is not None:
        write_result(request.result_file, result)
    return result


def write_result(path: Path, result: BuildResult) -> None:
    """Write the result file as YAML with sorted keys, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(result.as_dict(), sort_keys=True, default_flow_style=False), "utf-8")


def _compile_advice(lines: list[str], pip: PipSettings) -> str:
    """What to do about a failed compile, from what pip said."""
    missing = [line.split(" for ", 1)[1].strip() for line in lines if "No matching distribution found for " in line]
    if missing:
        where = ", ".join(pip.sources) or "pip's defaults"
        return (
            f"pip found no distribution of {missing[-1]} on the indexes it was given. Check that this "
            f"version is released there and that the pip settings (from {where}; -v shows them) "
            "name that index, with its credentials."
        )
    return (
        "If a C extension misses a header or library ('fatal error: foo.h: No such file', "
        "'library not found'), add its -dev package to dependencies.build and its runtime "
        "library to dependencies.run in .grocker.yml."
    )


def _summary(result: BuildResult) -> None:
    size = f", {result.size / 1e6:.0f} MB" if result.size else ""
    reused = f"; reused: {', '.join(result.reused)}" if result.reused else ""
    logger.info("done %s in %.1fs%s%s", result.image, result.duration_seconds, size, reused)


class _Chain:
    """The state one build shares between its steps."""

    def __init__(
        self,
        engine: Engine,
        config: ProjectConfig,
        names: InternalNames,
        request: BuildRequest,
        secrets: tuple[str, ...],
        result: BuildResult,
    ) -> None:
        self.engine = engine
        self.config = config
        self.names = names
        self.request = request
        self.secrets = secrets
        self.result = result

    def stream_line(self, line: str) -> None:
        """Engine output: shown at -v only, always masked."""
        logger.debug("  %s", mask(line, self.secrets))

    def ensure_root(self) -> str:
        """Get, pull or build the root image; rebuild it when its base image changed."""
        base = self.config.runtime.image
        base_info = self.engine.image(base)
        if base_info is None and self.config.image_prefix and not self.request.no_cache:
            # A machine sharing the prefix's registry may have built root already: its base
            # image is then not needed here at all.
            with phase("pull root image") as note:
                note("pulled from the registry" if self.engine.pull(self.names.root) else "not in the registry")
        if base_info is None and not self._available(self.names.root, BASE_LABEL, None):
            with phase(f"pull base image {base}"):
                if not self.engine.pull(base):
                    raise BuildError(
                        f"The base image {base} of runtime {self.config.runtime.name} is not on the "
                        "engine and cannot be pulled. Provide it: `docker load -i image.tar` from a "
                        "machine that has it, `docker import` of a debootstrapped root file system "
                        "(scripts/import-debian-image.sh in Grocker's repository does it), or a "
                        "registry mirror configured in the engine (registry-mirrors in daemon.json)."
                    )
            base_info = self.engine.image(base)
        base_id = base_info.id if base_info else None
        return self.ensure_image("root", self.names.root, render.root_context(self.config), (BASE_LABEL, base_id))

    def ensure_child(self, role: str, name: str, context: render.BuildContext) -> str:
        """Get, pull or build an image FROM root; rebuild it when root was rebuilt."""
        root = self.engine.image(self.names.root)
        return self.ensure_image(role, name, context, (ROOT_LABEL, root.id if root else None))

    def ensure_image(self, role: str, name: str, context: render.BuildContext, parent: tuple[str, str | None]) -> str:
        """Reuse a local image, pull it from the prefix's registry, or build and tag it.

        `parent` is the label recording the ID of the image it was built FROM, and that
        image's current ID: an image built from an older parent is stale and rebuilt.
        Concurrent builds of one configuration take turns to pull or build it: the first one
        does, the others wait and reuse its image, so that no name moves under a running build.
        """
        label, parent_id = parent
        if not self.request.no_cache and self._available(name, label, parent_id):
            self.result.reused.append(f"{role} image")
            logger.debug("%s image %s is already on the engine", role, name)
            return name
        waited: list[str] = []

        def on_wait() -> None:
            waited.append(name)
            logger.info("waiting for another Grocker build to finish the %s image %s", role, name)

        # The lock container needs a local image: root is built FROM the base, the others FROM root.
        lock_image = self.config.runtime.image if role == "root" else self.names.root
        with self.engine.lock(name, lock_image, internal_labels(self.config, "lock"), on_wait):
            if waited and not self.request.no_cache and self._available(name, label, parent_id):
                self.result.reused.append(f"{role} image (built by a concurrent build)")
                return name
            return self._pull_or_build(role, name, context, label, parent_id)

    def _pull_or_build(
        self, role: str, name: str, context: render.BuildContext, label: str, parent_id: str | None
    ) -> str:
        if not self.request.no_cache and self.config.image_prefix:
            with phase(f"pull {role} image") as note:
                if self.engine.pull(name) and self._available(name, label, parent_id):
                    note("pulled from the registry")
                    self.result.reused.append(f"{role} image (pulled)")
                    return name
                note("not in the registry")
        with phase(f"build {role} image {name}"):
            labels = internal_labels(self.config, role)
            if parent_id:
                labels[label] = parent_id
            image_id = self.engine.build(
                context.files,
                labels=labels,
                what=f"{role} image",
                on_line=self.stream_line,
                nocache=self.request.no_cache,
            )
            self.engine.tag(image_id, name)
        return name

    def push_internal_images(self) -> None:
        """Share the root, compiler and wheel-server images through the prefix's registry.

        Done in the push phase, whichever run built them (in CI, the build often runs with
        --no-push and a later run pushes); a layer the registry has is not sent again.
        """
        if not self.config.image_prefix:
            return
        for role, name in (
            ("root", self.names.root),
            ("compiler", self.names.compiler),
            ("wheel-server", self.names.wheel_server),
        ):
            if self.engine.image(name) is not None:
                with phase(f"push {role} image"):
                    self.engine.push(name, self.stream_line)

    def _available(self, name: str, label: str, parent_id: str | None) -> bool:
        """True when `name` is on the engine and was built from the current parent image."""
        info = self.engine.image(name)
        if info is None:
            return False
        built_from = info.labels.get(label)
        if parent_id and built_from and built_from != parent_id:
            logger.info("%s was built from an older %s; rebuilding it", name, label.split(".")[1])
            return False
        return True

    def compile(self) -> Lock:
        """Build the wheels of the release into the volume; return the lock naming them."""
        release = self.request.release
        self.engine.create_volume(self.names.volume, internal_labels(self.config, "wheel"))
        files = self._compile_inputs()
        # Where packages come from, at -v; masked here too, for library callers without the CLI's mask.
        logger.debug("pip settings from %s:", ", ".join(self.request.pip.sources) or "no pip configuration")
        for line in files["pip.conf"].decode("utf-8").splitlines()[1:]:
            logger.debug("  pip %s", mask(line, self.secrets))
        with phase(f"compile wheels of {release.requirement}") as note:
            with self.engine.container(
                self.names.compiler,
                role="compile",
                labels=internal_labels(self.config, "compile"),
                command=[f"{INPUT_DIR}/request.json"],
                volumes={self.names.volume: (WHEELS_PATH, "rw")},
                environment={
                    "PIP_CONFIG_FILE": f"{INPUT_DIR}/pip.conf",
                    # Recorded with each wheel built here from an sdist, for the SBOM.
                    "GROCKER_COMPILER_IMAGE_ID": self._id(self.names.compiler),
                },
            ) as container:
                container.put_files("/tmp", {f"grocker-input/{path}": content for path, content in files.items()})
                status, lines = container.run(self.stream_line)
            lock = parse_result_line(lines) if status == 0 else None
            if lock is None:
                raise BuildError(
                    f"Compiling the wheels of {release.requirement} failed (exit status {status}). "
                    f"{_compile_advice(lines, self.request.pip)} The compiler's output ends with:",
                    details=mask(tail(lines), self.secrets),
                )
            note(f"{len(lock.added)} new wheels, {len(lock.reused)} reused")
        if lock.reused:
            self.result.reused.append(f"{len(lock.reused)} wheels")
        return lock

    def _id(self, name: str) -> str:
        info = self.engine.image(name)
        return info.id if info else ""

    def _compile_inputs(self) -> dict[str, bytes]:
        release = self.request.release
        pip = self.request.pip
        files: dict[str, bytes] = {}
        target = release.requirement
        if release.path is not None:
            files[f"dist/{release.path.name}"] = release.path.read_bytes()
            extras = f"[{release.extras_text}]" if release.extras else ""
            target = f"{INPUT_DIR}/dist/{release.path.name}{extras}"
        cert = client_cert = None
        if pip.cert is not None:
            files["cert.pem"] = pip.cert.read_bytes()
            cert = f"{INPUT_DIR}/cert.pem"
        if pip.client_cert is not None:
            files["client-cert.pem"] = pip.client_cert.read_bytes()
            client_cert = f"{INPUT_DIR}/client-cert.pem"
        files["pip.conf"] = pip.config_text(cert, client_cert).encode("utf-8")
        constraint = None
        if self.config.pip_constraint is not None:
            files["constraints.txt"] = self.config.pip_constraint.read_bytes()
            constraint = f"{INPUT_DIR}/constraints.txt"
        request: dict[str, object] = {
            "target": target,
            "name": release.name,
            "lock": lock_key(release, self.config.pip_constraint),
            "constraint": constraint,
            "local": release.path is not None,
        }
        files["request.json"] = json.dumps(request).encode("utf-8")
        return files

    def build_runner(self, lock: Lock | None) -> str:
        """Serve the volume, build the runner from it, check its entrypoint, then tag it."""
        if self.engine.volume_labels(self.names.volume) is None:
            raise BuildError(
                f"There is no wheel volume {self.names.volume} yet, so --no-build-dependencies has "
                "nothing to build from. Run the build once with --build-dependencies (the default)."
            )
        server_image = self.ensure_child(
            "wheel-server", self.names.wheel_server, render.wheel_server_context(self.config, self.names.root)
        )
        image_id: str | None = None
        try:
            with self.engine.container(
                server_image,
                role="wheel-server",
                labels=internal_labels(self.config, "wheel-server"),
                volumes={self.names.volume: ("/wheels", "ro")},
            ) as server:
                with phase("start wheel server"):
                    server.start()
                    # nginx writes its pid file once its socket listens: a probe that needs no Python,
                    # which a runtime may install in the compiler only.
                    server.wait_until(
                        ["/bin/sh", "-c", "test -s /tmp/nginx.pid"],
                        WHEEL_SERVER_TIMEOUT,
                        "wheel server",
                    )
                    address = server.ip_address()
                if lock is None:
                    lock = self._read_lock(server)
                image_id = self._build_runner_image(lock, address)
            self._check_entrypoint(image_id)
        except BaseException:
            # Interrupts included. An image that already has a name is an earlier build's (a fully
            # cached build gives the same image): it stays.
            with contextlib.suppress(EngineError):  # never hide the first error
                info = self.engine.image(image_id) if image_id else None
                if info is not None and not info.tags:
                    self.engine.try_remove_image(info.id)
            raise
        self.engine.tag(image_id, self.request.image_name)
        return image_id

    def _read_lock(self, server: Container) -> Lock:
        key = lock_key(self.request.release, self.config.pip_constraint)
        content = server.get_file(f"/wheels/.grocker/locks/{key}.json")
        if content is None:
            raise BuildError(
                f"The wheel volume {self.names.volume} holds no compiled wheels of "
                f"{self.request.release.requirement} (with these constraints), so the image cannot "
                "be built with --no-build-dependencies. Run the build with --build-dependencies first."
            )
        return parse_lock(json.loads(content))

    def _build_runner_image(self, lock: Lock, wheel_server_address: str) -> str:
        release = self.request.release
        created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        labels = runner_labels(release, self.config, created)
        labels["grocker.app.version"] = labels["org.opencontainers.image.version"] = lock.app_version
        # The labels are the Dockerfile's last instruction (see purge.built_by_grocker), not
        # build options, which the classic builder turns into one step each.
        context = render.runner_context(release, self.config, self.names.root, lock, labels)
        cached: list[str] = []

        def on_line(line: str) -> None:
            if line.strip() == "---> Using cache":
                cached.append(line)
            self.stream_line(line)

        with phase(f"build image {self.request.image_name}") as note:
            image_id = self.engine.build(
                context.files,
                labels={},
                what="runner image",
                on_line=on_line,
                extra_hosts={render.WHEEL_SERVER_HOST: wheel_server_address},
                nocache=self.request.no_cache,
            )
            if cached:
                note(f"{len(cached)} cached layers")
                self.result.reused.append(f"{len(cached)} cached layers")
        return image_id

    def _check_entrypoint(self, image_id: str) -> None:
        entrypoint = self.config.entrypoint_name
        with self.engine.container(
            image_id,
            role="check",
            labels=internal_labels(self.config, "check"),
            entrypoint=["/bin/sh", "-c", 'command -v "$0" >/dev/null'],
            command=[entrypoint],
        ) as container:
            status, _lines = container.run(self.stream_line)
        if status != 0:
            raise BuildError(
                f"The image's entrypoint {entrypoint!r} does not exist in it: neither the "
                f"application {self.request.release.name} nor its dependencies install a command of "
                "that name, and it is not on the image's PATH. Name an existing command with "
                "-e/--entrypoint (or entrypoint_name in .grocker.yml), or add a console_scripts "
                f"entry point called {entrypoint!r} to the application."
            )
