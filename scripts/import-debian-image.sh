#!/usr/bin/env bash
# Provide a Debian base image (debian:<suite>) on an engine that cannot pull one:
# debootstrap the suite from this machine's apt mirror, then `docker import` it.
# For air-gapped users and for CI machines without registry access.
#
# usage: scripts/import-debian-image.sh SUITE [IMAGE]     e.g. trixie  -> debian:trixie
# env:   MIRROR=http://...   override the mirror read from the apt configuration
set -euo pipefail

suite=${1:?usage: $0 SUITE [IMAGE]}
image=${2:-debian:$suite}

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image is already on the engine" >&2
    exit 0
fi

mirror_from_apt() {
    # deb822 sources first (URIs: ...), then one-line sources (deb URI suite ...).
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -e "$f" ] || continue
        awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' "$f"
    done
}

mirror=${MIRROR:-$(mirror_from_apt | head -n 1)}
if [ -z "$mirror" ]; then
    echo "No Debian mirror found in /etc/apt; set MIRROR=http://your.mirror/debian" >&2
    exit 3
fi
if ! command -v debootstrap >/dev/null; then
    echo "debootstrap is missing: apt-get install -y debootstrap" >&2
    exit 3
fi

rootfs=$(mktemp -d /tmp/grocker-rootfs-XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap $suite from $mirror" >&2
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 20 "$rootfs.log" >&2
    rm -f "$rootfs.log"
    exit 1
}
rm -f "$rootfs.log"
# Same apt sources as the official image, pointing at the mirror used here.
printf 'deb %s %s main\n' "$mirror" "$suite" >"$rootfs/etc/apt/sources.list"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
tar -C "$rootfs" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV LANG=C.UTF-8' \
    - "$image" >/dev/null
echo "imported $image" >&2
