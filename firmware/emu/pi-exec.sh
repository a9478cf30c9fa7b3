#!/usr/bin/env bash
# Run a command inside the emulated Raspberry Pi (the arm64 root of pi-root.sh) as on a Pi:
# chroot with /proc, /sys, /dev, a fresh /run, a Pi's /proc/cpuinfo, the repository read-only at
# /src, and QEMU_CPU selecting the emulated core (binfmt_misc's qemu-aarch64-static reads it,
# and every arm64 process the command starts inherits it). Run as root.
#
#   firmware/emu/pi-exec.sh [--cpu cortex-a72|cortex-a53] [options] [-- CMD ARGS...]
#
#   --cpu MODEL     cortex-a72 (Pi 4, default, or $PI_CPU), cortex-a53 (Pi 3 / Zero 2 W),
#                   cortex-a76 (Pi 5), max (QEMU's everything)
#   --root DIR      the arm64 root (default ${PIMODULE_CACHE:-$HOME/.cache/pimodule}/pi-root)
#   --src DIR       bind DIR read-only at /src (default: this repository); --no-src: don't
#   --env NAME=VAL  set an environment variable inside (repeatable); the environment is otherwise
#                   clean: HOME, PATH, LANG=C.UTF-8, TERM, QEMU_CPU, and proxy/PIP_INDEX_URL vars
#   --workdir DIR   working directory inside (default /)
#   --host-cpuinfo  leave the host's /proc/cpuinfo visible instead of a Pi's
#
# Without CMD: an interactive bash. The exit status is the command's (128+N when it dies of
# signal N: 132 = SIGILL). All mounts live in a private mount namespace and vanish when the
# command ends, however it ends.
set -euo pipefail
# shellcheck source=firmware/emu/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
emu_private_namespace "$@"

CPU="${PI_CPU:-cortex-a72}"
SRC_DIR="$REPO_DIR"
WORKDIR=/
FAKE_CPUINFO=1
ENVS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cpu) CPU="$2"; shift 2 ;;
        --root) PI_ROOT="$2"; shift 2 ;;
        --src) SRC_DIR="$2"; shift 2 ;;
        --no-src) SRC_DIR=""; shift ;;
        --env) ENVS+=("$2"); shift 2 ;;
        --workdir) WORKDIR="$2"; shift 2 ;;
        --host-cpuinfo) FAKE_CPUINFO=0; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        -*) emu_die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
[[ $# -gt 0 ]] || set -- /bin/bash -l

emu_need_root
emu_check_cpu "$CPU"
PI_ROOT="$(realpath -m "$PI_ROOT")"
emu_require_root_built
emu_binfmt
# a rebuild (pi-root.sh --force) waits for running commands, and they for it
exec 9>"$PI_ROOT.lock"
flock -s 9

trap emu_unmount_all EXIT
emu_mount_system "$PI_ROOT"
if [[ "$FAKE_CPUINFO" -eq 1 ]]; then
    mkdir -p "$PI_ROOT/run/pi-emu"
    emu_pi_cpuinfo "$CPU" >"$PI_ROOT/run/pi-emu/cpuinfo"
    emu_mount "$PI_ROOT/proc/cpuinfo" --bind "$PI_ROOT/run/pi-emu/cpuinfo"
fi
if [[ -n "$SRC_DIR" ]]; then
    [[ -d "$SRC_DIR" ]] || emu_die "--src $SRC_DIR: no such directory"
    mkdir -p "$PI_ROOT/src"
    emu_mount "$PI_ROOT/src" --bind "$SRC_DIR"
    mount -o remount,bind,ro "$PI_ROOT/src"
fi

env_in=(HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 "TERM=${TERM:-dumb}"
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        "QEMU_CPU=$CPU" PIMODULE_EMU=1 "${EMU_CA_ENV[@]}")
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_INDEX_URL \
         PIP_EXTRA_INDEX_URL PIP_DEFAULT_TIMEOUT; do
    [[ -n "${!v:-}" ]] && env_in+=("$v=${!v}")
done
env_in+=("${ENVS[@]}")

ulimit -c 0  # qemu would write qemu_*.core files into the working directory on a crash
set +e
chroot "$PI_ROOT" /usr/bin/env -i -C "$WORKDIR" "${env_in[@]}" "$@"
rc=$?
set -e
exit "$rc"
