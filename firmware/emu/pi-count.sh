#!/usr/bin/env bash
# Count the aarch64 instructions a command executes inside the emulated Raspberry Pi. The command
# runs in the arm64 root (chroot, mounts as pi-exec.sh) under Debian's dynamically linked
# qemu-aarch64 with the insn_count TCG plugin (firmware/emu/insn_count.c, built on first use and
# cached next to the root). Run as root.
#
#   firmware/emu/pi-count.sh [--cpu cortex-a72|cortex-a53] --out FILE [options] -- CMD ARGS...
#
#   --out FILE      write {"insns": N, "pid": P, "cpu": ..., "argv": [...], "exit_code": ...}
#   --cpu MODEL     as pi-exec.sh (default cortex-a72, or $PI_CPU)
#   --mode M        inline (default: fast; parallel guest threads may lose a few counts) or
#                   atomic (exact with threads, slower)
#   --seed N        QEMU's -seed N: the guest's getrandom() and AT_RANDOM become deterministic
#                   (so Python's hash secret is), and PYTHONHASHSEED=N; default 0, so two runs of
#                   the same command give the same count. --seed random: neither is set
#                   PYTHONDONTWRITEBYTECODE=1 is set too (--env PYTHONDONTWRITEBYTECODE= clears it)
#   --root, --src DIR, --no-src, --env NAME=VAL, --workdir DIR: as pi-exec.sh
#
# Counted: every instruction of CMD's process (all its threads) until it exits. Not counted:
# programs it starts with execve (they run under binfmt_misc's qemu-aarch64-static without the
# plugin); fork()ed children without exec write FILE.PID (their count includes the parent's up
# to the fork). CMD is an arm64 program in the root (looked up in PATH there) or a #! script,
# which is run through its interpreter (as a venv's bin/pimodule); a wrapper that execs something
# else is not counted past the exec. The exit status is CMD's.
set -euo pipefail
# shellcheck source=firmware/emu/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
emu_private_namespace "$@"

CPU="${PI_CPU:-cortex-a72}"
OUT=""
MODE=inline
SEED=0
SRC_DIR="$REPO_DIR"
WORKDIR=/
ENVS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cpu) CPU="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --mode) MODE="$2"; shift 2 ;;
        --seed) SEED="$2"; shift 2 ;;
        --root) PI_ROOT="$2"; shift 2 ;;
        --src) SRC_DIR="$2"; shift 2 ;;
        --no-src) SRC_DIR=""; shift ;;
        --env) ENVS+=("$2"); shift 2 ;;
        --workdir) WORKDIR="$2"; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        -*) emu_die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
[[ $# -gt 0 ]] || emu_die "no command (see --help)"
[[ -n "$OUT" ]] || emu_die "--out FILE is required"
[[ "$MODE" == inline || "$MODE" == atomic ]] || emu_die "--mode inline|atomic"
[[ "$SEED" == random || "$SEED" =~ ^[0-9]+$ ]] || emu_die "--seed N|random"
OUT="$(realpath -m "$OUT")"
mkdir -p "$(dirname "$OUT")"

emu_need_root
emu_check_cpu "$CPU"
PI_ROOT="$(realpath -m "$PI_ROOT")"
emu_require_root_built
emu_host_packages qemu-user gcc libc6-dev
emu_binfmt

# --- the plugin, cached by the hash of its source and the QEMU version --------------------------
PLUGIN_DIR="$(dirname "$PI_ROOT")/insn_count"
key="$( { cat "$EMU_DIR/insn_count.c"; qemu-aarch64 --version | head -n1; } | sha256sum | cut -c1-16)"
PLUGIN="$PLUGIN_DIR/libinsn_count-$key.so"
if [[ ! -e "$PLUGIN" ]]; then
    mkdir -p "$PLUGIN_DIR"
    emu_log "building the insn_count plugin: $PLUGIN"
    gcc -O2 -Wall -Wextra -fPIC -shared -fvisibility=hidden -o "$PLUGIN.tmp" "$EMU_DIR/insn_count.c"
    mv "$PLUGIN.tmp" "$PLUGIN"
fi

exec 9>"$PI_ROOT.lock"
flock -s 9

# --- mounts: the root as pi-exec.sh, plus the x86_64 QEMU, its libraries and the plugin ----------
trap emu_unmount_all EXIT
emu_mount_system "$PI_ROOT"
mkdir -p "$PI_ROOT/run/pi-emu"
emu_pi_cpuinfo "$CPU" >"$PI_ROOT/run/pi-emu/cpuinfo"
emu_mount "$PI_ROOT/proc/cpuinfo" --bind "$PI_ROOT/run/pi-emu/cpuinfo"
if [[ -n "$SRC_DIR" ]]; then
    mkdir -p "$PI_ROOT/src"
    emu_mount "$PI_ROOT/src" --bind "$SRC_DIR"
    mount -o remount,bind,ro "$PI_ROOT/src"
fi
# /run is a tmpfs of this namespace: nothing here stays in the root
C=/run/pi-count
mkdir -p "$PI_ROOT$C/lib" "$PI_ROOT$C/out"
cp /usr/bin/qemu-aarch64 "$PI_ROOT$C/qemu-aarch64"
cp "$PLUGIN" "$PI_ROOT$C/libinsn_count.so"
# the host's x86_64 libraries at a path of their own: the arm64 ones (/usr/lib/aarch64-linux-gnu)
# stay what the guest sees, and the x86_64 loader is told where to look with --library-path
emu_mount "$PI_ROOT$C/lib" --bind /usr/lib/x86_64-linux-gnu
mount -o remount,bind,ro "$PI_ROOT$C/lib"

env_in=(HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 "TERM=${TERM:-dumb}"
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        "QEMU_CPU=$CPU" PIMODULE_EMU=1 "${EMU_CA_ENV[@]}"
        PYTHONDONTWRITEBYTECODE=1)  # a count must not depend on .pyc files an earlier run left
seed_args=()
if [[ "$SEED" != random ]]; then
    env_in+=("PYTHONHASHSEED=$SEED")
    seed_args=(-seed "$SEED")
fi
env_in+=("${ENVS[@]}")

# qemu-user does not search PATH: resolve the program inside the root
# shellcheck disable=SC2016  # $1 expands in the inner shell
prog="$(chroot "$PI_ROOT" /usr/bin/env -i "${env_in[@]}" /bin/sh -c 'command -v "$1"' sh "$1")" ||
    emu_die "$1: not found in the root"
[[ "$prog" == /* ]] || emu_die "$1 is a shell builtin or function; give an arm64 program"
argv0="$1"
args=("${@:2}")
# qemu-user loads ELF files only: a #! script (a venv's console script, e.g. bin/pimodule) is run
# as the kernel would, through its interpreter (one level)
shebang="$(chroot "$PI_ROOT" /usr/bin/head -c 256 "$prog" | head -n1 | tr -d '\0')" || true
if [[ "$shebang" == '#!'* ]]; then
    read -r interp interp_arg <<<"${shebang#\#!}"
    [[ -n "$interp" ]] || emu_die "$prog: empty #! line"
    args=(${interp_arg:+"$interp_arg"} "$prog" "${args[@]}")
    prog="$interp"
    argv0="$interp"
fi

plugin_arg="$C/libinsn_count.so,outfile=$C/out/insns.json,mode=$MODE"
t0=$(date +%s.%N)
set +e
chroot "$PI_ROOT" /usr/bin/env -i -C "$WORKDIR" "${env_in[@]}" \
    "$C/lib/ld-linux-x86-64.so.2" --library-path "$C/lib" "$C/qemu-aarch64" \
    -L / -cpu "$CPU" "${seed_args[@]}" -plugin "$plugin_arg" -0 "$argv0" "$prog" "${args[@]}"
rc=$?
set -e
t1=$(date +%s.%N)

json_str() {  # a JSON string for $1
    local s="$1"
    s="${s//\\/\\\\}"; s="${s//\"/\\\"}"; s="${s//$'\n'/\\n}"; s="${s//$'\t'/\\t}"; s="${s//$'\r'/\\r}"
    printf '"%s"' "$s"
}
argv_json=""
for a in "$@"; do argv_json+="${argv_json:+, }$(json_str "$a")"; done
counted="$PI_ROOT$C/out/insns.json"
if [[ ! -s "$counted" ]]; then
    emu_log "no count: $1 exited with $rc before the plugin's exit hook (killed, or exec'd another program)"
    printf '{"insns": null, "cpu": %s, "argv": [%s], "exit_code": %d}\n' \
        "$(json_str "$CPU")" "$argv_json" "$rc" >"$OUT"
    exit $(( rc == 0 ? 1 : rc ))
fi
line="$(head -n1 "$counted")"
forked=""
for f in "$counted".*; do
    [[ -e "$f" ]] || continue
    forked+="${forked:+, }$(head -n1 "$f")"
    cp "$f" "$OUT.${f##*.}"
done
seconds="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
printf '%s, "cpu": %s, "argv": [%s], "seed": %s, "exit_code": %d, "seconds": %s, "forked": [%s]}\n' \
    "${line%\}}" "$(json_str "$CPU")" "$argv_json" "$(json_str "$SEED")" "$rc" "$seconds" "$forked" >"$OUT"
insns="${line#*\"insns\": }"
emu_log "${insns%%,*} instructions on $CPU in ${seconds} s (exit $rc): $OUT"
exit "$rc"
