"""Push as documented: the push phase alone, and the internal images going to the prefix's registry.

The registry is the loopback one (localhost:5000 for the engines, 127.0.0.1:5000 from here); what
it holds is read over its HTTP API, not through the engine that pushed. Which images go where is
decided before the engine is involved, so these run on the default engine only (DOCKER_HOST
points them at another), not on the whole matrix: CI time is short.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import yaml

from tests.integration.helpers import Grocker, manifest_digest

REGISTRY_API = "http://127.0.0.1:5000/v2"


def _tags(repository: str) -> list[str]:
    """The registry's tags list of `repository` (a path under the registry); [] when it has none."""
    try:
        with urllib.request.urlopen(f"{REGISTRY_API}/{repository}/tags/list", timeout=10) as response:  # noqa: S310
            return sorted(json.load(response).get("tags") or [])
    except urllib.error.HTTPError as err:
        if err.code == 404:  # NAME_UNKNOWN: nothing was ever pushed there
            return []
        raise


def _path(reference: str) -> tuple[str, str]:
    """("repository path under the registry", "tag") of localhost:5000/path:tag."""
    _registry, _, rest = reference.partition("/")
    repository, _, tag = rest.rpartition(":")
    return repository, tag


def test_push_phase_alone_pushes_where_the_name_or_the_prefix_says(
    grocker: Grocker, registry: str, pure_wheel: Path, tmp_path: Path
) -> None:
    namespace = f"grocker-push-{uuid.uuid4().hex[:8]}"
    prefix = f"{registry}/{namespace}"
    local = grocker.name("pushphase")  # no registry in the final name

    # 1. Build everything under the prefix, without pushing: the registry gets nothing.
    built = grocker.build(
        str(pure_wheel), "--image-prefix", prefix, "-n", local, "--no-push", "--result-file", str(tmp_path / "b.yml")
    )
    result = yaml.safe_load((tmp_path / "b.yml").read_text())
    assert "hash" not in result
    internal = [
        result["root_image"],
        result["compiler_image"],
        result["root_image"].replace("-root:", "-wheel-server:"),
    ]
    assert all(name.startswith(f"{prefix}/") for name in internal)
    assert [_tags(_path(name)[0]) for name in internal] == [[], [], []], built.stderr

    # 2. The push phase alone, with no --push: the prefix names a registry, so the internal images
    # go there although the final name has none; the output says why the final image stays.
    phase = grocker.run(
        "build", str(pure_wheel), "--image-prefix", prefix, "-n", local, "--no-build-dependencies", "--no-build-image"
    )
    assert phase.returncode == 0, phase.output
    assert f"not pushing {local}: its name has no registry or namespace" in phase.stderr
    for name in internal:
        repository, tag = _path(name)
        assert _tags(repository) == [tag]
    assert re.search(r"^push root image: [\d.]+s", phase.stderr, re.MULTILINE), phase.stderr

    # 3. The push phase alone of a final name under a registry, no prefix, no --push: it is pushed,
    # and the digest reported is the registry's.
    final = f"{registry}/{namespace}/app:1.0.0"
    grocker.client.images.get(local).tag(final)
    grocker.images.append(final)
    pushed = grocker.run(
        "build", str(pure_wheel), "-n", final, "--no-build-dependencies", "--no-build-image",
        "--result-file", str(tmp_path / "p.yml"),
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.output
    assert pushed.stdout.strip() == final
    assert yaml.safe_load((tmp_path / "p.yml").read_text())["hash"] == manifest_digest(final)
    assert _tags(f"{namespace}/app") == ["1.0.0"]

    # 4. No registry anywhere: the push phase alone says so in one line and exits 0.
    nowhere = grocker.run("build", str(pure_wheel), "-n", local, "--no-build-dependencies", "--no-build-image")
    assert nowhere.returncode == 0, nowhere.output
    assert [line for line in nowhere.stderr.splitlines() if "not pushing" in line] == [
        f"not pushing {local}: neither its name nor an image prefix names a registry "
        "(give -n REGISTRY/NAME:TAG or --image-prefix REGISTRY to push)"
    ]


def test_push_asked_with_no_registry_anywhere_fails_before_any_engine_work(
    grocker: Grocker, pure_wheel: Path, tmp_path: Path
) -> None:
    # An engine that does not exist: the error must come before Grocker tries to reach one.
    result = grocker.run(
        "build", str(pure_wheel), "-n", "pushme:1", "--push", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    )
    assert result.returncode == 3, result.output
    assert "--push failed because neither the image name pushme:1 nor an image prefix names a registry" in result.stderr
    assert result.stdout == ""
