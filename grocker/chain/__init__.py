"""The build chain: the orchestrator, and its steps, one module per concern.

- build: the one place that decides which steps run, and in what order;
- session: what one build shares between its steps (request, names, result, engine);
- freshness: whether the final image is up to date (image inspects only);
- registry_freshness: whether the fleet's registry holds the final image from the same inputs (then pulled);
- images: the internal images (look up, pull from the prefix's registry, build, refresh);
- wheelhouse: the wheel volume, the compile step and the wheel lock;
- wheel_server: the nginx container that serves the volume to the runner build;
- background: containers started in a thread of their own while the build goes on;
- abi: the ABI gate, before any runner is built;
- runner: the final image (context, build, entrypoint check, tag);
- push: the final image and the internal images to the registry;
- sbom: the SBOM's steps (write once the runner exists, push after it);
- render: the build contexts (Dockerfiles, scripts), rendered from the templates; pure.

Every step talks to the engine through grocker.engine.protocol only. This __init__ imports
nothing, so that importing one step does not import the others.
"""
