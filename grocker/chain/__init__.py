"""The build chain's steps, one module per concern; grocker.build decides their order.

- session: what one build shares between its steps (request, names, result, engine);
- freshness: whether the final image is up to date (image inspects only);
- registry_freshness: whether the fleet's registry holds the final image from the same inputs (then pulled);
- images: the internal images (look up, pull from the prefix's registry, build, refresh);
- wheelhouse: the wheel volume, the compile step and the wheel lock;
- wheel_server: the nginx container that serves the volume to the runner build;
- runner: the final image (context, build, entrypoint check, tag);
- push: the final image and the internal images to the registry.

Every step talks to the engine through grocker.protocol only.
"""
