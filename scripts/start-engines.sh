#!/usr/bin/env bash
# Start the extra engines of Grocker's test matrix beside the host engine, all from Debian's archive
# (no registry pull), each in a container of the host engine, published on loopback:
#   docker-26             tcp://127.0.0.1:23751  Debian trixie's docker.io 26.1, overlay2
#   docker-26-containerd  tcp://127.0.0.1:23752  the same with the containerd image store
#   podman-5              tcp://127.0.0.1:23753  Debian trixie's podman 5.4, Docker-compatible API
# Each gets the Debian base images from the host engine and reaches the host's registry as
# localhost:5000. Idempotent: an engine that answers is kept. On failure, prints the engine's log
# and exits non-zero.
#   usage: scripts/start-engines.sh [ENGINE...]      (default: all three)
#   env:   GROCKER_ENGINES_ROOT  where the engines' data roots live (default /var/lib/grocker-engines)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[engines] %s\n' "$*" >&2; }

root=${GROCKER_ENGINES_ROOT:-/var/lib/grocker-engines}
engines=("$@")
[ ${#engines[@]} -gt 0 ] || engines=(docker-26 docker-26-containerd podman-5)
base_images=(debian:trixie debian:bookworm)

# The engine image is named after its content, so a change of its files builds a new one.
image="grocker-test-engine:$(cat scripts/engines/Dockerfile scripts/engines/engine-entrypoint.sh | sha256sum | cut -c1-12)"
if ! docker image inspect "$image" >/dev/null 2>&1; then
    log "building $image FROM debian:trixie"
    docker build -q -t "$image" --label grocker.test.engine-image=1 scripts/engines >/dev/null
fi

# The host registry listens on 127.0.0.1 only; the engines' containers reach it through this
# forwarder on the host bridge's gateway address.
gateway=$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}')
if [ -z "$gateway" ]; then
    # Docker 20.10 leaves the default bridge's gateway out of its IPAM data: read the bridge.
    bridge=$(docker network inspect bridge --format '{{index .Options "com.docker.network.bridge.name"}}')
    gateway=$(ip -4 -o addr show "${bridge:-docker0}" | awk '{split($4, a, "/"); print a[1]; exit}')
fi
[ -n "$gateway" ] || { log "cannot find the host bridge's gateway address"; exit 1; }
forwarder=grocker-engine-registry-forwarder
if [ "$(docker inspect -f '{{join .Args " "}} {{.State.Running}}' "$forwarder" 2>/dev/null)" \
    != "TCP-LISTEN:5000,bind=$gateway,fork,reuseaddr TCP:127.0.0.1:5000 true" ]; then
    docker rm -f "$forwarder" >/dev/null 2>&1 || true
    log "forwarding $gateway:5000 to the host registry 127.0.0.1:5000"
    docker run -d --name "$forwarder" --network host --entrypoint socat "$image" \
        "TCP-LISTEN:5000,bind=$gateway,fork,reuseaddr" TCP:127.0.0.1:5000 >/dev/null
fi

port_of() {
    case "$1" in
    docker-26) echo 23751 ;;
    docker-26-containerd) echo 23752 ;;
    podman-5) echo 23753 ;;
    *) log "unknown engine $1 (known: docker-26 docker-26-containerd podman-5)"; return 2 ;;
    esac
}

answers() { DOCKER_HOST="tcp://127.0.0.1:$1" timeout 10 docker version >/dev/null 2>&1; }

start_one() {
    local name=$1 port kind data container
    port=$(port_of "$name")
    container="grocker-engine-$name"
    case "$name" in
    docker-26) kind=docker data=/var/lib/docker ;;
    docker-26-containerd) kind=docker-containerd data=/var/lib/docker ;;
    podman-5) kind=podman data=/var/lib/containers ;;
    esac
    if [ "$(docker inspect -f '{{.Config.Image}} {{join .Args " "}} {{.State.Running}}' "$container" 2>/dev/null)" \
        = "$image $kind $gateway:5000 true" ] \
        && answers "$port"; then
        log "$name already answers on tcp://127.0.0.1:$port"
    else
        docker rm -f "$container" >/dev/null 2>&1 || true
        mkdir -p "$root/$name"
        # --privileged fails here (the host engine lacks CAP_SYS_RESOURCE): all other capabilities,
        # no confinement, and the host's cgroup tree writable for the inner engine's containers.
        docker run -d --name "$container" --label grocker.test.engine="$name" \
            --cap-add ALL --cap-drop SYS_RESOURCE \
            --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
            --security-opt systempaths=unconfined \
            --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
            -v "$root/$name:$data" -p "127.0.0.1:$port:2375" \
            "$image" "$kind" "$gateway:5000" >/dev/null
        local deadline=$((SECONDS + 90))
        until answers "$port"; do
            if [ $SECONDS -gt $deadline ] || [ "$(docker inspect -f '{{.State.Running}}' "$container")" != true ]; then
                log "$name did not answer on tcp://127.0.0.1:$port; its log:"
                docker logs --tail 40 "$container" >&2 || true
                return 1
            fi
            sleep 1
        done
        log "$name answers on tcp://127.0.0.1:$port"
    fi
    local missing=()
    for base in "${base_images[@]}"; do
        DOCKER_HOST="tcp://127.0.0.1:$port" docker image inspect "$base" >/dev/null 2>&1 || missing+=("$base")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        DOCKER_HOST="tcp://127.0.0.1:$port" docker load -q -i "$archive" >/dev/null
        log "$name: loaded ${missing[*]}"
    fi
}

archive=$(mktemp /tmp/grocker-base-images.XXXXXX.tar)
trap 'rm -f "$archive"' EXIT
docker save -o "$archive" "${base_images[@]}"

started=$SECONDS
pids=()
for name in "${engines[@]}"; do
    start_one "$name" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
[ $status -eq 0 ] || { log "an engine failed to start (see its log above)"; exit 1; }
log "engines ready in $((SECONDS - started)) s: ${engines[*]}"
