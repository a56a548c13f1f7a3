#!/bin/bash
# Start one engine of Grocker's test matrix inside this container, serving tcp://0.0.0.0:2375.
#   usage: engine-entrypoint docker|docker-containerd|podman REGISTRY_HOST:PORT
# localhost:5000 inside this container forwards to the host's registry, so that the engine
# pushes to the same `localhost:5000` name as the host engine (insecure-allowed by default).
set -euo pipefail
kind=${1:?usage: engine-entrypoint docker|docker-containerd|podman REGISTRY}
upstream=${2:?the host registry as HOST:PORT}

socat TCP-LISTEN:5000,bind=127.0.0.1,fork,reuseaddr "TCP:${upstream}" &

case "$kind" in
docker | docker-containerd)
    mkdir -p /etc/docker
    if [ "$kind" = docker-containerd ]; then
        echo '{"features": {"containerd-snapshotter": true}}' >/etc/docker/daemon.json
    else
        echo '{}' >/etc/docker/daemon.json
    fi
    # Inner bridge away from the host's 172.17.0.0/16 that this container lives on.
    exec dockerd --tls=false -H tcp://0.0.0.0:2375 -H unix:///var/run/docker.sock --bip 10.213.0.1/24
    ;;
podman)
    # RUN steps raise NOFILE and NPROC to the defaults; this container cannot go above its hard
    # limits (no CAP_SYS_RESOURCE), so the defaults are those limits.
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    [ "$nproc" = unlimited ] && nproc=65536
    [ "$nofile" = unlimited ] && nofile=1048576
    mkdir -p /etc/containers
    cat >/etc/containers/containers.conf <<CONF
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
[engine]
# crun refuses this machine's hybrid cgroup tree ("cgroups in hybrid mode not supported"); runc runs.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "netavark"
firewall_driver = "nftables"
CONF
    cat >/etc/containers/registries.conf <<CONF
unqualified-search-registries = ["docker.io"]
[[registry]]
location = "localhost:5000"
insecure = true
CONF
    cat >/etc/containers/storage.conf <<CONF
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF
    exec podman system service --time=0 tcp:0.0.0.0:2375
    ;;
*)
    echo "unknown engine kind: $kind" >&2
    exit 2
    ;;
esac
