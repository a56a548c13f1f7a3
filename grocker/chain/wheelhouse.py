"""The wheelhouse: the wheel volume, the compile step that fills it, and the wheel lock.

One volume per configuration holds every wheel its builds compiled; the compile container runs
grocker/compile.py, which reuses the wheels already there and writes one wheel lock per release
(grocker.layout says where). The runner is installed from exactly the wheels of that lock.
"""

from __future__ import annotations

import json

from grocker import layout
from grocker.chain.session import Session
from grocker.errors import BuildError
from grocker.labels import COMPILE, WHEEL_VOLUME
from grocker.log import logger, phase, tail
from grocker.naming import internal_labels
from grocker.pipconf import PipSettings, mask
from grocker.protocol import Container
from grocker.wheels import WheelLock, lock_key, parse_lock, parse_result_line

INPUT_DIR = "/tmp/grocker-input"
"""Where the compile container finds its request, pip settings and certificates."""


def compile_wheels(session: Session) -> WheelLock:
    """Build the wheels of the release into the volume; return the wheel lock naming them."""
    release = session.request.release
    pip = session.request.pip
    session.engine.create_volume(session.names.volume, internal_labels(session.config, WHEEL_VOLUME))
    files = compile_inputs(session)
    # Where packages come from, at -v; masked here too, for library callers without the CLI's mask.
    logger.debug("pip settings from %s:", ", ".join(pip.sources) or "no pip configuration")
    for line in files["pip.conf"].decode("utf-8").splitlines()[1:]:
        logger.debug("  pip %s", mask(line, session.secrets))
    with phase(f"compile wheels of {release.requirement}") as note:
        with session.engine.container(
            session.names.compiler,
            role=COMPILE,
            labels=internal_labels(session.config, COMPILE),
            command=[f"{INPUT_DIR}/request.json"],
            volumes={session.names.volume: (layout.COMPILE_MOUNT, "rw")},
            environment={"PIP_CONFIG_FILE": f"{INPUT_DIR}/pip.conf"},
        ) as container:
            container.put_files("/tmp", {f"grocker-input/{path}": content for path, content in files.items()})
            status, lines = container.run(session.stream_line)
        lock = parse_result_line(lines) if status == 0 else None
        if lock is None:
            raise BuildError(
                f"Compiling the wheels of {release.requirement} failed (exit status {status}). "
                f"{compile_advice(lines, pip)} The compiler's output ends with:",
                details=mask(tail(lines), session.secrets),
            )
        note(f"{len(lock.added)} new wheels, {len(lock.reused)} reused")
    if lock.reused:
        session.reused(f"{len(lock.reused)} wheels")
    return lock


def compile_inputs(session: Session) -> dict[str, bytes]:
    """The files given to the compile container: request, pip settings, certificates, sources."""
    release = session.request.release
    pip = session.request.pip
    config = session.config
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
    if config.pip_constraint is not None:
        files["constraints.txt"] = config.pip_constraint.read_bytes()
        constraint = f"{INPUT_DIR}/constraints.txt"
    request: dict[str, object] = {
        "target": target,
        "name": release.name,
        "lock": lock_key(release, config.pip_constraint),
        "constraint": constraint,
        "local": release.path is not None,
    }
    files["request.json"] = json.dumps(request).encode("utf-8")
    return files


def compile_advice(lines: list[str], pip: PipSettings) -> str:
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


def require_volume(session: Session) -> None:
    """Refuse to build the runner from a wheel volume that does not exist."""
    if session.engine.volume_labels(session.names.volume) is None:
        raise BuildError(
            f"There is no wheel volume {session.names.volume} yet, so --no-build-dependencies has "
            "nothing to build from. Run the build once with --build-dependencies (the default)."
        )


def read_lock(session: Session, server: Container) -> WheelLock:
    """The wheel lock of the release, read from the volume through the wheel server's container."""
    key = lock_key(session.request.release, session.config.pip_constraint)
    content = server.get_file(f"{layout.SERVE_MOUNT}/{layout.lock_file(key)}")
    if content is None:
        raise BuildError(
            f"The wheel volume {session.names.volume} holds no compiled wheels of "
            f"{session.request.release.requirement} (with these constraints), so the image cannot "
            "be built with --no-build-dependencies. Run the build with --build-dependencies first."
        )
    return parse_lock(json.loads(content))
