#!/usr/bin/env bash
# Everything Grocker's demo and tests need on a fresh Debian machine (run as root):
# a Docker engine, the Debian base images, a registry on loopback, and a venv with Grocker.
# Idempotent: what is already there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

need_packages=()
command -v dockerd >/dev/null || need_packages+=(docker.io)
command -v debootstrap >/dev/null || need_packages+=(debootstrap)
command -v docker-registry >/dev/null || need_packages+=(docker-registry)
command -v dot >/dev/null || need_packages+=(graphviz)
# The ssh:// engine tests start their own sshd on loopback; the package's own must not start.
[ -x /usr/sbin/sshd ] || need_packages+=(openssh-server)
command -v gcc >/dev/null || need_packages+=(gcc libc6-dev)
# The ABI gate's tests build a shared object for another architecture.
command -v aarch64-linux-gnu-gcc >/dev/null || need_packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
if [ ${#need_packages[@]} -gt 0 ]; then
    log "installing ${need_packages[*]}"
    apt-get update -q >/dev/null
    no_services=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        no_services=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_packages[@]}" >/dev/null
    [ -z "$no_services" ] || rm -f /usr/sbin/policy-rc.d
fi

if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    setsid nohup dockerd >/tmp/grocker-dockerd.log 2>&1 < /dev/null &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -n 20 /tmp/grocker-dockerd.log >&2; exit 1; }
fi

imports=()
for suite in trixie bookworm; do
    bash scripts/import-debian-image.sh "$suite" &
    imports+=($!)
done
# Wait for the imports only: a bare `wait` would also wait for dockerd.
for pid in "${imports[@]}"; do
    wait "$pid"
done

if ! curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1; then
    log "starting a registry on 127.0.0.1:5000"
    mkdir -p /tmp/grocker-registry
    cat >/tmp/grocker-registry/config.yml <<'YAML'
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: /tmp/grocker-registry/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:5000}
YAML
    setsid nohup docker-registry serve /tmp/grocker-registry/config.yml >/tmp/grocker-registry/log 2>&1 < /dev/null &
    for _ in $(seq 1 30); do
        curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1 && break
        sleep 0.5
    done
fi

if [ ! -x .venv/bin/grocker ]; then
    log "creating .venv with Grocker and its test tools"
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,lint,type,docs]' tox
log "ready: $(docker version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}')"
