#!/usr/bin/env bash
# build-base-image.sh: build a minimal Debian 12 base image from Debian packages alone (debootstrap
# + docker import), then the kooisv images on top of it. For machines that reach a Debian mirror but
# no container registry. Everyone else simply runs `docker compose build` (base: debian:12-slim).
#
#   deploy/docker/build-base-image.sh              # base image, then every kooisv image
#   deploy/docker/build-base-image.sh --base-only  # only the base image
#   deploy/docker/build-base-image.sh --images-only  # reuse an existing base image
#
# Environment: KOOISV_BASE_IMAGE (tag of the base, default kooisv/debian:12), KOOISV_IMAGE_PREFIX
# (default kooisv), KOOISV_VERSION (image tag, default the CMake project version), DEBIAN_MIRROR,
# DEBIAN_SECURITY_MIRROR, KOOISV_ROOTFS_DIR (scratch dir, default /var/tmp/kooisv-rootfs),
# DOCKER (client binary, default docker), DOCKER_BUILD_NETWORK (e.g. "host" when the default
# bridge has no route out), KOOISV_TARGETS (space-separated list, default all).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

base_image=${KOOISV_BASE_IMAGE:-kooisv/debian:12}
prefix=${KOOISV_IMAGE_PREFIX:-kooisv}
version=${KOOISV_VERSION:-$(sed -n 's/^project(kooisv VERSION \([0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")}
version=${version:-latest}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
rootfs=${KOOISV_ROOTFS_DIR:-/var/tmp/kooisv-rootfs}
docker=${DOCKER:-docker}
suite=bookworm
targets=${KOOISV_TARGETS:-"postgres dbinit lb prometheus gateway order tenant app audit billing emulator"}

do_base=1
do_images=1
case "${1:-}" in
    "") ;;
    --base-only) do_images=0 ;;
    --images-only) do_base=0 ;;
    -h | --help)
        sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "build-base-image.sh: unknown argument '$1' (try --help)" >&2
        exit 2
        ;;
esac

say() { printf '==> %s\n' "$*"; }

build_base() {
    if [ "$(id -u)" != 0 ]; then
        echo "build-base-image.sh: debootstrap needs root (run with sudo, or use --images-only)" >&2
        exit 1
    fi
    if ! command -v debootstrap >/dev/null; then
        say "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap
    fi
    # The rootfs is scratch space: never reuse a half-built one.
    case "$rootfs" in /|/usr|/var|/tmp|"") echo "refusing rootfs dir '$rootfs'" >&2; exit 1 ;; esac
    rm -rf "$rootfs"
    mkdir -p "$rootfs"

    say "debootstrap $suite (minbase) from $mirror into $rootfs"
    debootstrap --variant=minbase "$suite" "$rootfs" "$mirror"

    # The same tuning as the official slim images: no docs/man/locales on later installs, no
    # daemons started by package scripts, apt caches dropped after every install.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-no-languages" <<'EOF'
Acquire::Languages "none";
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 0755 "$rootfs/usr/sbin/policy-rc.d"

    # Security and point-release updates, so `apt-get upgrade` in an image gets fixes (spec §8:
    # nothing with a known CVSS >= 7 vulnerability).
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

    say "applying updates inside the rootfs"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get update -qq && apt-get -y -qq upgrade && apt-get clean'

    say "trimming the rootfs"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/* "$rootfs"/root/.bash_history \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
        "$rootfs"/usr/share/lintian/*
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    # Docker provides these per container; an image must not carry the build host's.
    : >"$rootfs/etc/resolv.conf"
    : >"$rootfs/etc/hostname"
    : >"$rootfs/etc/machine-id"

    say "importing $rootfs as $base_image"
    tar --numeric-owner --xattrs -C "$rootfs" -c . |
        "$docker" import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["bash"]' \
            --message "Debian $suite minbase via debootstrap ($mirror)" \
            - "$base_image"
    rm -rf "$rootfs"
}

# BuildKit builds only the stages a target needs. Clients >= 23 use it through buildx; older
# ones (Debian 12's docker.io 20.10) through DOCKER_BUILDKIT=1. Otherwise the legacy builder.
pick_builder() {
    [ -n "${DOCKER_BUILDKIT:-}" ] && return 0
    local v
    if "$docker" buildx version >/dev/null 2>&1; then
        export DOCKER_BUILDKIT=1
    else
        v=$("$docker" version --format '{{.Client.Version}}' 2>/dev/null || echo 0)
        if [ "${v%%.*}" -lt 23 ] 2>/dev/null; then export DOCKER_BUILDKIT=1; else export DOCKER_BUILDKIT=0; fi
    fi
}

build_images() {
    local net=()
    [ -n "${DOCKER_BUILD_NETWORK:-}" ] && net=(--network "$DOCKER_BUILD_NETWORK")
    pick_builder
    say "builder: $([ "$DOCKER_BUILDKIT" = 1 ] && echo BuildKit || echo legacy)"
    for t in $targets; do
        case "$t" in gateway | postgres | dbinit | lb | prometheus) ;;
        emulator)
            if [ ! -f "$repo/tests/emulator/main.c" ]; then
                say "skipping $t: tests/emulator/main.c not in this tree"
                continue
            fi
            ;;
        *)
            if [ ! -f "$repo/services/$t/main.c" ]; then
                say "skipping $t: services/$t/main.c not in this tree"
                continue
            fi
            ;;
        esac
        say "building $prefix/$t:$version from $base_image"
        "$docker" build "${net[@]}" \
            --build-arg BASE_IMAGE="$base_image" \
            --target "$t" \
            -t "$prefix/$t:$version" -t "$prefix/$t:latest" \
            -f "$here/Dockerfile" "$repo"
    done
    "$docker" image ls "$prefix/*"
}

[ "$do_base" = 1 ] && build_base
[ "$do_images" = 1 ] && build_images
exit 0
