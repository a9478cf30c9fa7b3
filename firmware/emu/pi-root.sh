#!/usr/bin/env bash
# Build the emulated Raspberry Pi: an arm64 Debian 12 root (the base of Raspberry Pi OS Bookworm,
# Python 3.11) run through qemu-aarch64-static and binfmt_misc. Cached outside the repository and
# rebuilt only when missing or incomplete (a stamp file is written last). Run as root.
#
#   firmware/emu/pi-root.sh [--root DIR] [--mirror URL] [--force]
#
#   --root DIR     where the root goes (default ${PIMODULE_CACHE:-$HOME/.cache/pimodule}/pi-root,
#                  or $PI_ROOT)
#   --mirror URL   Debian mirror (default http://deb.debian.org/debian)
#   --force        delete the root and build it again
#
# Installs the host packages it needs (qemu-user-static, qemu-user, binfmt-support, debootstrap),
# mounts binfmt_misc and registers qemu-aarch64 when needed. Inside the root: python3, venv, dev
# headers, libportaudio2, libsndfile1, ca-certificates: what firmware/provision.sh needs to run.
set -euo pipefail
# shellcheck source=firmware/emu/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
emu_private_namespace "$@"

MIRROR="${PIMODULE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
FORCE=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --root) PI_ROOT="$2"; shift 2 ;;
        --mirror) MIRROR="$2"; shift 2 ;;
        --force) FORCE=1; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) emu_die "unknown option $1 (see --help)" ;;
    esac
done

# What goes into the root beyond debootstrap's minbase. Changing this list (or STAMP_VERSION)
# makes the next run install the difference into an existing root instead of rebuilding it.
STAMP_VERSION=1
# systemd as on Raspberry Pi OS: it never runs as PID 1 here, but systemctl enable works offline
# and systemd-analyze verify --root finds its targets.
PACKAGES=(python3 python3-venv python3-dev libportaudio2 libsndfile1 ca-certificates
          procps file systemd)
STAMP_WANT="version=$STAMP_VERSION packages=${PACKAGES[*]}"

emu_need_root
PI_ROOT="$(realpath -m "$PI_ROOT")"
[[ "$PI_ROOT" != / ]] || emu_die "refusing to use / as the root"
mkdir -p "$(dirname "$PI_ROOT")"

emu_host_packages qemu-user-static qemu-user binfmt-support debootstrap debian-archive-keyring
emu_binfmt

stamp_has() { [[ -e "$PI_ROOT/$PI_ROOT_STAMP" ]] && grep -qxF -- "$STAMP_WANT" "$PI_ROOT/$PI_ROOT_STAMP"; }
up_to_date() {
    emu_log "arm64 root up to date: $PI_ROOT ($(du -sh --one-file-system "$PI_ROOT" | cut -f1))"
    exit 0
}
[[ "$FORCE" -eq 0 ]] && stamp_has && up_to_date

# one build at a time per root, and none while pi-exec.sh / pi-count.sh run in it (shared lock)
exec 9>"$PI_ROOT.lock"
flock -w 3600 9 || emu_die "$PI_ROOT.lock still held after an hour (a build, or a command in the root)"
[[ "$FORCE" -eq 0 ]] && stamp_has && up_to_date

trap emu_unmount_all EXIT
t_start=$SECONDS

if [[ "$FORCE" -eq 1 || ! -e "$PI_ROOT/$PI_ROOT_STAMP" ]]; then
    if [[ -e "$PI_ROOT" ]]; then
        emu_log "removing the incomplete (or --force) root $PI_ROOT"
        # leftovers of an older, interrupted build in the host namespace
        findmnt -rn -o TARGET | { grep -F "$PI_ROOT/" || true; } | sort -r | while read -r m; do
            umount -R -l "$m" || true
        done
        rm -rf --one-file-system "$PI_ROOT"
    fi
    emu_log "debootstrap stage 1 (arm64 bookworm minbase from $MIRROR)"
    t1=$SECONDS
    debootstrap --arch=arm64 --foreign --variant=minbase bookworm "$PI_ROOT" "$MIRROR" >/dev/null
    emu_log "stage 1 took $((SECONDS - t1)) s"
    emu_binfmt_into_root "$PI_ROOT"
    if ! chroot "$PI_ROOT" /bin/true; then
        emu_die "the kernel cannot run arm64 programs through binfmt_misc ($(head -n 2 /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null | tr '\n' ' '))"
    fi
    t1=$SECONDS
    emu_log "debootstrap stage 2 under emulation (about 10 min)"
    chroot "$PI_ROOT" /debootstrap/debootstrap --second-stage >/dev/null ||
        emu_die "debootstrap second stage failed: see $PI_ROOT/debootstrap/debootstrap.log"
    emu_log "stage 2 took $((SECONDS - t1)) s"

    # Debian 12 sources as on Raspberry Pi OS (whose archive.raspberrypi.com adds only Pi tools)
    cat >"$PI_ROOT/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
    # no daemons start inside the chroot
    printf '#!/bin/sh\nexit 101\n' >"$PI_ROOT/usr/sbin/policy-rc.d"
    chmod 755 "$PI_ROOT/usr/sbin/policy-rc.d"
    echo pimodule-emu >"$PI_ROOT/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tpimodule-emu\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        >"$PI_ROOT/etc/hosts"
fi

emu_log "apt-get install ${PACKAGES[*]}"
emu_mount_system "$PI_ROOT"
t1=$SECONDS
chroot "$PI_ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive QEMU_CPU=cortex-a72 \
    sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends ${PACKAGES[*]} >/dev/null && apt-get clean"
emu_log "apt-get took $((SECONDS - t1)) s"
emu_unmount_all

# first line: what is installed; then the full build and any later updates of the package list
what=built
[[ -e "$PI_ROOT/$PI_ROOT_STAMP" ]] && what=updated
{
    echo "$STAMP_WANT"
    [[ "$what" == updated ]] && grep -E '^(built|updated)=' "$PI_ROOT/$PI_ROOT_STAMP"
    echo "$what=$(date -u +%Y-%m-%dT%H:%M:%SZ) seconds=$((SECONDS - t_start)) mirror=$MIRROR"
} >"$PI_ROOT/$PI_ROOT_STAMP.new"
mv "$PI_ROOT/$PI_ROOT_STAMP.new" "$PI_ROOT/$PI_ROOT_STAMP"
emu_log "arm64 root ready in $((SECONDS - t_start)) s: $PI_ROOT ($(du -sh --one-file-system "$PI_ROOT" | cut -f1))"
