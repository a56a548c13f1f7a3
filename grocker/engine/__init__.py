"""The Docker engine through docker-py: the only package that imports `docker`.

Everything Grocker does happens engine-side (builds, volumes, containers), so a remote engine
given by DOCKER_HOST works like a local one. The chain and purge see the engine only through the
protocols of grocker.protocol. The modules:

- connection: `connect`, which reaches the engine an Endpoint names and checks it;
- _calls: the one door every docker-py call goes through (its errors become EngineErrors);
- docker: DockerEngine, and the chain's images, builds, pushes and volumes;
- containers: the chain's containers and networks, and DockerContainer;
- mutex: the engine-wide mutex; lease: a command's lease on the engine;
- cleanup: purge's listing and removals, and the sweep of what lost commands left;
- dockerlib: docker-py, imported without its ssh transport unless it is needed.

Importing this package imports docker-py: `import grocker` does not import it.
"""

from __future__ import annotations

from grocker.engine.connection import CONNECT_TIMEOUT, MIN_API_VERSION, connect, uses_containerd_store
from grocker.engine.containers import DockerContainer, name_in_use
from grocker.engine.docker import DockerEngine, push_digest, split_tag, unpacked_size

__all__ = [
    "CONNECT_TIMEOUT",
    "MIN_API_VERSION",
    "DockerContainer",
    "DockerEngine",
    "connect",
    "name_in_use",
    "push_digest",
    "split_tag",
    "unpacked_size",
    "uses_containerd_store",
]
