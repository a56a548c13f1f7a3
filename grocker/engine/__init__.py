"""The engine: what Grocker needs from one (the protocols), which one to reach, and docker-py.

Everything Grocker does happens engine-side (builds, volumes, containers), so a remote engine
given by DOCKER_HOST works like a local one. The chain and purge see the engine only through the
protocols of grocker.engine.protocol. The modules:

- protocol: what the chain and purge need from an engine (typed protocols; no docker-py);
- endpoint: which engine to reach, chosen as the Docker CLI does (reads files only);
- connection: `connect`, which reaches the engine an Endpoint names and checks it;
- _calls: the one door every docker-py call goes through (its errors become EngineErrors);
- docker: DockerEngine, and the chain's images, builds, pushes and volumes;
- containers: the chain's containers and networks, and DockerContainer;
- mutex: the engine-wide mutex; lease: a command's lease on the engine;
- cleanup: purge's listing and removals, and the sweep of what lost commands left;
- dockerlib: docker-py, imported without its ssh transport unless it is needed.

This package's __init__ imports nothing, so that the chain may import the protocols and the
endpoint without docker-py: only connection, docker, containers, mutex, lease, cleanup and
_calls import it, and `import grocker` imports none of them.
"""
