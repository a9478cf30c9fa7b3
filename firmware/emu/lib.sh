# shellcheck shell=bash
# Shared by firmware/emu/*.sh (sourced, not run): paths, logging, host packages, binfmt_misc,
# the private mount namespace and the chroot mounts.

EMU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
REPO_DIR="$(cd "$EMU_DIR/../.." && pwd)"
PIMODULE_CACHE="${PIMODULE_CACHE:-$HOME/.cache/pimodule}"
# The arm64 root (Debian 12 = Raspberry Pi OS Bookworm base); PI_ROOT overrides the location.
PI_ROOT="${PI_ROOT:-$PIMODULE_CACHE/pi-root}"
# Written last by pi-root.sh; a root without it is incomplete.
PI_ROOT_STAMP=".pi-root-complete"
EMU_PROG="$(basename "$0")"
# shellcheck disable=SC2034
EMU_CPUS=(cortex-a72 cortex-a53)  # Pi 4 / Pi 400 / CM4, and Pi 3 / Pi Zero 2 W

emu_log() { printf '>> %s\n' "$*" >&2; }
emu_die() { printf '%s: %s\n' "$EMU_PROG" "$*" >&2; exit 1; }

emu_need_root() {
    [[ "$(id -u)" -eq 0 ]] || emu_die "run as root (debootstrap, chroot, mounts and binfmt_misc need it)"
}

emu_check_cpu() {
    case "$1" in
        cortex-a72|cortex-a53|cortex-a76|max) ;;
        *) emu_die "unknown CPU model '$1' (cortex-a72 = Pi 4, cortex-a53 = Pi 3 / Zero 2 W, cortex-a76 = Pi 5)" ;;
    esac
}

# Install the host packages that are missing (Debian 12 host, as root).
emu_host_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    emu_log "host packages: apt-get install ${missing[*]}"
    command -v apt-get >/dev/null || emu_die "missing host packages ${missing[*]} and no apt-get (Debian 12 host expected)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Make the kernel run aarch64 ELF files through qemu-aarch64-static (idempotent).
# Sets EMU_BINFMT_INTERP to the interpreter path and EMU_BINFMT_FIX=1 when the entry has the F
# flag (the interpreter is opened at registration, so it need not exist inside the chroot).
emu_binfmt() {
    local bm=/proc/sys/fs/binfmt_misc entry conf line
    if [[ ! -e "$bm/register" ]]; then
        mount -t binfmt_misc binfmt_misc "$bm" 2>/dev/null ||
            emu_die "cannot mount binfmt_misc on $bm (a container needs --privileged, or register qemu-aarch64 on its host: apt-get install qemu-user-static binfmt-support)"
    fi
    entry="$bm/qemu-aarch64"
    if [[ ! -e "$entry" ]]; then
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    fi
    if [[ ! -e "$entry" ]]; then
        # register by hand from the package's binfmt.d line, with F (fix binary) so the chroot
        # needs no copy of the interpreter
        conf=/usr/lib/binfmt.d/qemu-aarch64.conf
        [[ -r "$conf" ]] || emu_die "no $conf: is qemu-user-static installed?"
        line="$(head -n1 "$conf")"
        [[ "$line" == *F ]] || line="${line}F"
        printf '%s' "$line" >"$bm/register" 2>/dev/null ||
            emu_die "cannot register qemu-aarch64 in $bm/register"
    fi
    grep -q '^enabled' "$entry" || echo 1 >"$entry" ||
        emu_die "cannot enable $entry"
    EMU_BINFMT_INTERP="$(sed -n 's/^interpreter //p' "$entry")"
    EMU_BINFMT_FIX=0
    grep -q '^flags: .*F' "$entry" && EMU_BINFMT_FIX=1
    return 0
}

# Without the F flag the interpreter must exist inside the root at its own path.
emu_binfmt_into_root() {
    local root="$1"
    [[ "$EMU_BINFMT_FIX" -eq 1 ]] && return 0
    mkdir -p "$root$(dirname "$EMU_BINFMT_INTERP")"
    cp -L /usr/bin/qemu-aarch64-static "$root$EMU_BINFMT_INTERP"
}

# Re-run the calling script in a private mount namespace: every mount it makes disappears with
# its last process, whatever way it ends (error, ctrl-C, kill -9), and the host never sees them.
# Call as: emu_private_namespace "$@"   (no-op when already inside, or when unshare is refused;
# the callers also unmount in an EXIT trap).
emu_private_namespace() {
    [[ -n "${PI_EMU_NS:-}" || "$(id -u)" -ne 0 ]] && return 0  # (non-root: emu_need_root says so)
    if unshare --mount --propagation private true 2>/dev/null; then
        PI_EMU_NS=1 exec unshare --mount --propagation private -- bash "$0" "$@"
    fi
    emu_log "unshare --mount refused: mounts live in the host namespace, unmounted on exit"
}

EMU_MOUNTS=()  # unmounted in reverse order by emu_unmount_all

emu_mount() {  # emu_mount TARGET MOUNT-ARGS... (records TARGET for emu_unmount_all)
    local target="$1"
    shift
    mount "$@" "$target"
    EMU_MOUNTS+=("$target")
}

emu_unmount_all() {
    local i
    for ((i = ${#EMU_MOUNTS[@]} - 1; i >= 0; i--)); do
        umount -R "${EMU_MOUNTS[i]}" 2>/dev/null || umount -R -l "${EMU_MOUNTS[i]}" 2>/dev/null || true
    done
    EMU_MOUNTS=()
}

# /proc, /sys, /dev (with /dev/pts, /dev/shm) and a fresh /run in the root, as on a running Pi;
# the host's resolv.conf so apt and pip resolve names.
emu_mount_system() {
    local root="$1"
    emu_mount "$root/proc" -t proc proc
    emu_mount "$root/sys" --rbind /sys
    emu_mount "$root/dev" --rbind /dev
    emu_mount "$root/run" -t tmpfs -o mode=755,size=64m tmpfs
    if [[ -e /etc/resolv.conf ]]; then
        cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    fi
    emu_host_cas "$root"
}

# The host's own certificate authorities (/usr/local/share/ca-certificates, e.g. a TLS-inspecting
# egress proxy's) trusted inside for this run only: the root's bundle plus them, bound over
# /etc/ssl/certs/ca-certificates.crt, which pip is pointed at (EMU_CA_ENV). Nothing is written
# into the root.
# shellcheck disable=SC2034  # read by pi-exec.sh and pi-count.sh
EMU_CA_ENV=()
emu_host_cas() {
    local root="$1" bundle=/etc/ssl/certs/ca-certificates.crt cas=()
    shopt -s nullglob
    cas=(/usr/local/share/ca-certificates/*.crt /usr/local/share/ca-certificates/*/*.crt)
    shopt -u nullglob
    [[ ${#cas[@]} -gt 0 && -e "$root$bundle" ]] || return 0
    mkdir -p "$root/run/pi-emu"
    cat "$root$bundle" "${cas[@]}" >"$root/run/pi-emu/ca-certificates.crt"
    emu_mount "$root$bundle" --bind "$root/run/pi-emu/ca-certificates.crt"
    # shellcheck disable=SC2034
    EMU_CA_ENV=("PIP_CERT=$bundle")
}

# A Raspberry Pi's /proc/cpuinfo for the emulated CPU (libraries such as onnxruntime's cpuinfo
# read it; under qemu-user the host's x86 one would show through).
emu_pi_cpuinfo() {
    local cpu="$1" part variant revision board model i
    local features="fp asimd evtstrm crc32 cpuid"  # BCM2711 / BCM2837: no crypto extensions
    case "$cpu" in
        cortex-a53) part=0xd03; variant=0x0; revision=4; board=a02082; model="Raspberry Pi 3 Model B Rev 1.2" ;;
        cortex-a76) part=0xd0b; variant=0x4; revision=1; board=c04170; model="Raspberry Pi 5 Model B Rev 1.0"
            features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" ;;
        *) part=0xd08; variant=0x0; revision=3; board=c03115; model="Raspberry Pi 4 Model B Rev 1.5" ;;
    esac
    for ((i = 0; i < 4; i++)); do
        printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\n' "$i" "$features"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' \
            "$variant" "$part" "$revision"
    done
    printf 'Revision\t: %s\nSerial\t\t: 10000000deadbeef\nModel\t\t: %s\n' "$board" "$model"
}

emu_root_complete() { [[ -e "$PI_ROOT/$PI_ROOT_STAMP" ]]; }

emu_require_root_built() {
    emu_root_complete || emu_die "no complete arm64 root at $PI_ROOT: build it with firmware/emu/pi-root.sh"
}
