"""A connected Docker engine through docker-py: the build chain's half, and the whole adapter.

DockerEngine implements grocker.engine.protocol.Engine: the images, volumes and builds here, the
containers and networks in grocker.engine.containers, the mutex in grocker.engine.mutex and
purge's removals in grocker.engine.cleanup. Every call reaches docker-py through the door of
grocker.engine._calls, which turns what docker-py and its transports raise into EngineErrors.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from grocker.engine._calls import EngineRefusalError, GuardedApi, sentence
from grocker.engine.cleanup import CleanupOps
from grocker.engine.containers import ContainerOps, tar
from grocker.engine.lease import Lease
from grocker.engine.mutex import MutexOps
from grocker.engine.protocol import ImageInfo, LabelledImage, LineHandler
from grocker.errors import BuildError, EngineError, PushError
from grocker.log import logger, tail
from grocker.reference import split_tag

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
# The push stream's last status line, `<tag>: digest: sha256:<hex> size: <bytes>`.
_PUSHED_DIGEST_RE = re.compile(r"(?:\S+: )?digest: (sha256:[0-9a-f]{64}) size: \d+")


class DockerEngine(ContainerOps, MutexOps, CleanupOps):
    """A connected engine, with the operations the build chain and purge need (grocker.engine.protocol.Engine)."""

    def __init__(
        self,
        client: Any,
        described: str,
        *,
        podman: bool = False,
        containerd_store: bool = False,
        parallel: bool = True,
        leases: bool = True,
    ) -> None:
        self.client = client
        # "the Docker engine at HOST (how it was chosen)": every error names it.
        self.described = described
        self.api = GuardedApi(client.api, described)
        self.lease = Lease(self.api, enabled=leases)
        # Podman's Docker-compatible API reads the build's extra hosts as JSON, and its builds do
        # not resolve names through the build network's DNS.
        self._podman = podman
        self.build_network_dns = not podman
        # Docker's containerd image store counts an image's size differently (see image()).
        self.containerd_store = containerd_store
        # Over ssh, each call in flight is an ssh session, and sshd limits them: one at a time.
        self.parallel = parallel

    # Images

    def image(self, name: str) -> ImageInfo | None:
        """Inspect a local image, or None when it does not exist."""
        try:
            attrs = self.api.inspect_image(name)
        except EngineRefusalError as err:
            if err.not_found:
                return None
            raise
        info = image_info(attrs)
        if self.containerd_store:
            # The store's `Size` counts the stored content, compressed for the layers built here;
            # the unpacked size, the one overlay2 and Podman give, is the layers' in the history.
            info = dataclasses.replace(info, size=unpacked_size(self.api.history(info.id)))
        return info

    def pull(self, name: str) -> bool:
        """Pull an image; False when the registry does not have it or cannot be reached."""
        repository, tag = split_tag(name)
        try:
            for chunk in self.api.pull(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    logger.debug("pull %s: %s", name, chunk["error"])
                    return False
        except EngineRefusalError as err:
            # The engine's answer about the registry; losing the engine itself is an error.
            logger.debug("pull %s: %s", name, err)
            return False
        return self.image(name) is not None

    def labelled_image(self, labels: Mapping[str, str]) -> str | None:
        """The ID of one local image that carries every one of `labels` with its value, or None."""
        # Several `label` filters: the engine keeps the images that match them all.
        wanted = [f"{label}={value}" for label, value in sorted(labels.items())]
        found = self.api.images(filters={"label": wanted}, quiet=True)
        return str(found[0]) if found else None

    def labelled_images(self, labels: Mapping[str, str]) -> Sequence[LabelledImage]:
        """The local images that carry every one of `labels` with its value, newest first, once each."""
        wanted = [f"{label}={value}" for label, value in sorted(labels.items())]
        images = self.api.images(filters={"label": wanted})
        ordered = sorted(images, key=lambda image: int(image.get("Created") or 0), reverse=True)
        found: dict[str, LabelledImage] = {}
        for image in ordered:
            image_id = str(image["Id"])
            found.setdefault(image_id, LabelledImage(image_id, dict(image.get("Labels") or {})))
        return list(found.values())

    def build(
        self,
        files: Mapping[str, bytes],
        *,
        labels: Mapping[str, str],
        what: str,
        on_line: LineHandler,
        extra_hosts: Mapping[str, str] | None = None,
        network: str | None = None,
        nocache: bool = False,
        cache_from: Sequence[str] = (),
    ) -> str:
        """Build an image from in-memory files, streaming its output; return the new image ID.

        The image is left untagged: the caller tags it once it is known to be good, so that a
        failed build never moves a name. With `network`, the RUN steps join that network.
        """
        lines: list[str] = []
        try:
            stream = self.api.build(
                fileobj=tar(files),
                custom_context=True,
                rm=True,
                forcerm=True,
                labels=dict(labels),
                # A string for Podman (JSON), which docker-py passes through as the parameter's value.
                extra_hosts=self._extra_hosts(extra_hosts),
                network_mode=network,
                nocache=nocache,
                # Buildah reads cache sources as repositories to pull from, not local images, and
                # Docker 26's classic builder on the containerd image store fails to restore a cached
                # step from them ("failed to read diff archive"): Docker with overlay2 only.
                cache_from=None if self._podman or self.containerd_store else list(cache_from) or None,
                decode=True,
            )
            image_id = _read_build(stream, what, lines, on_line)
        except EngineRefusalError as err:
            # The engine refused the request itself (no build step ran): its answer, not a failing
            # step, so an engine error.
            raise EngineError(
                f"{sentence(self.described)} refused to build the {what}: {err.explanation}. "
                "This is the engine's answer to the build request, not a failing build step: check the "
                "engine's log, and that it is one Grocker supports (Docker 20.10+, Podman 5 through "
                "its Docker-compatible API).",
                details=tail(lines),
            ) from err
        if image_id is None:
            raise BuildError(f"The {what} build ended without an image.", details=tail(lines))
        info = self.image(image_id)
        if info is None:
            raise BuildError(f"The {what} build reported image {image_id}, which does not exist.")
        return info.id

    def _extra_hosts(self, extra_hosts: Mapping[str, str] | None) -> dict[str, str] | str | None:
        """The build's `extrahosts` parameter, in the form the engine parses."""
        if not extra_hosts:
            return None
        if self._podman:
            # Podman decodes the parameter as a JSON list; docker-py sends Docker's repeated
            # `host:ip` form, which Podman refuses ("invalid character 'g'").
            return json.dumps([f"{host}:{address}" for host, address in extra_hosts.items()])
        return dict(extra_hosts)

    def tag(self, image_id: str, name: str) -> None:
        """Point `name` at the image."""
        repository, tag = split_tag(name)
        self.api.tag(image_id, repository, tag=tag, force=True)

    def push(self, name: str, on_line: LineHandler) -> str:
        """Push an image; return the registry's manifest digest, taken from the push itself."""
        repository, tag = split_tag(name)
        digest = None
        lines: list[str] = []
        try:
            for chunk in self.api.push(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise PushError(
                        f"The push of {name} failed: {chunk['error'].strip()}. Check that the "
                        "registry is reachable and that you are logged in to it (`docker login`) "
                        "with the right to push there.",
                        details=tail(lines),
                    )
                status = chunk.get("status")
                if status:
                    line = f"{chunk.get('id', '')} {status} {chunk.get('progress', '')}".strip()
                    lines.append(line)
                    on_line(line)
                digest = push_digest(chunk) or digest
        except EngineRefusalError as err:
            raise PushError(f"The push of {name} failed: {err.explanation}.") from err
        if not digest:
            raise PushError(f"The push of {name} ended without a manifest digest.", details=tail(lines))
        return str(digest)

    # Volumes

    def volume_labels(self, name: str) -> Mapping[str, str] | None:
        """The labels of a volume, or None when it does not exist."""
        try:
            attrs = self.api.inspect_volume(name)
        except EngineRefusalError as err:
            if err.not_found:
                return None
            raise
        return attrs.get("Labels") or {}

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        """Create a labelled volume (idempotent)."""
        self.api.create_volume(name=name, labels=dict(labels))


def _read_build(stream: Any, what: str, lines: list[str], on_line: LineHandler) -> str | None:
    """Read a build's JSON stream into `lines`; return the image ID it reports. BuildError on a failed step."""
    pending = ""
    image_id = None
    for chunk in stream:
        # A line may span chunks, and so may the colour codes the engine puts around a step's
        # stderr: join the chunks into lines first, then drop the codes (NO_COLOR).
        pending += chunk.get("stream", "")
        *complete, pending = pending.split("\n")
        if "error" in chunk and pending:
            complete.append(pending)
            pending = ""
        for raw in complete:
            line = _ANSI_RE.sub("", raw).rstrip("\r")
            lines.append(line)
            on_line(line)
            found = re.match(r"^Successfully built ([0-9a-f]+)$", line.strip())
            if found:
                image_id = found.group(1)
        if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
        if "error" in chunk:
            lines.append(chunk["error"])
            raise BuildError(f"The {what} build failed: {chunk['error'].strip()}", details=tail(lines))
    if pending:
        lines.append(_ANSI_RE.sub("", pending))
        on_line(lines[-1])
    return image_id


def push_digest(chunk: Mapping[str, Any]) -> str | None:
    """The manifest digest a push stream's chunk reports, or None.

    Docker with overlay2 and Podman send it in an `aux` chunk; Docker's containerd image store
    sends no `aux` at all, only the final status line, which every engine sends.
    """
    aux = chunk.get("aux")
    if isinstance(aux, dict) and isinstance(aux.get("Digest"), str) and aux["Digest"]:
        return str(aux["Digest"])
    found = _PUSHED_DIGEST_RE.fullmatch(str(chunk.get("status") or "").strip())
    return found.group(1) if found else None


def unpacked_size(steps: Sequence[Mapping[str, Any]]) -> int:
    """An image's unpacked size: the sum of its history's layer sizes."""
    return sum(int(step.get("Size") or 0) for step in steps)


def image_info(attrs: Mapping[str, Any]) -> ImageInfo:
    """What Grocker needs of an image, from the engine's inspection of it."""
    config = attrs.get("Config") or {}
    return ImageInfo(
        id=str(attrs["Id"]),
        tags=tuple(attrs.get("RepoTags") or ()),
        labels=dict(config.get("Labels") or {}),
        size=int(attrs.get("Size") or 0),
    )
