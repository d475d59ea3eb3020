#!/usr/bin/env bash
# Builds a Debian bookworm base image from Debian packages alone (debootstrap + docker import),
# for machines where no container registry answers. The result stands in for
# the registry's Debian slim image in every Dockerfile of this repository (ARG BASE_IMAGE).
# Usage: images/base/build.sh IMAGE SUITE   (stackctl passes both from images/versions.env)
set -Eeuo pipefail

IMAGE=${1:?usage: build.sh IMAGE SUITE}
SUITE=${2:?usage: build.sh IMAGE SUITE}
# The mirror the host's own apt uses, so the image reaches what the host reaches.
host_debian_mirror() {
  # one-line (sources.list) and deb822 (*.sources) formats alike
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true
}
MIRROR=${DEBIAN_MIRROR:-$(host_debian_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

log() { printf '[base] %s\n' "$*" >&2; }

command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install debootstrap"; exit 1; }

rootfs=$(mktemp -d /tmp/bookworm-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

log "debootstrap $SUITE from $MIRROR (about a minute)"
debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >/dev/null

# Same apt sources as the official image (main + updates + security), and the slim image's
# habit of not keeping docs, man pages or package lists.
cat >"$rootfs/etc/apt/sources.list" <<SRC
deb ${MIRROR%/} $SUITE main
deb ${MIRROR%/} $SUITE-updates main
deb ${MIRROR%/}-security $SUITE-security main
SRC
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*

log "importing as $IMAGE"
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' - "$IMAGE" >/dev/null
log "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
