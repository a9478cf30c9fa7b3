#!/usr/bin/env bash
# Provision a Raspberry Pi (64-bit Raspberry Pi OS Bookworm / Debian 12) with a Terminal Tedium as
# a pimodule: boot overlays, ALSA default card, WM8731 mixer, CPU governor, the pimodule user, a
# venv with pimodule[device,pi], the hardware file, the daemon config and the systemd unit.
# Idempotent: run it again after an update. See firmware/README.md.
#
#   sudo firmware/provision.sh [--src DIR] [--prefix DIR] [--root DIR] [--dry-run]
#
#   --src DIR     pimodule checkout to install from (default: the one holding this script); it
#                 may be read-only: it is copied to PREFIX/src and installed from there
#   --prefix DIR  install prefix (default /opt/pimodule; the unit expects /opt/pimodule/venv)
#   --root DIR    write config files under DIR instead of / (for tests; implies --dry-run)
#   --dry-run     print the commands that change the system instead of running them, and
#                 write the files under a temporary directory
#
# A step that cannot apply here (no boot partition, codec card absent, systemd not running, as in
# a chroot or an emulated Pi) is reported as "skipped: ... because ..." and the rest goes on.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/opt/pimodule
ROOT=""
DRY_RUN=0
CARD=sndrpiproto
USER_NAME=pimodule
GROUPS_NEEDED=(audio spi gpio dialout)  # dialout: serial flashing (/dev/ttyGS0, /dev/serial0)

while [[ $# -gt 0 ]]; do
    case "$1" in
        --src) SRC="$2"; shift 2 ;;
        --prefix) PREFIX="$2"; shift 2 ;;
        --root) ROOT="$2"; DRY_RUN=1; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "provision.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
SRC="$(cd "$SRC" && pwd)"

log() { printf '>> %s\n' "$*"; }
SKIPPED=()
skip() {  # skip WHAT REASON: report a step that cannot apply here
    printf 'skipped: %s because %s\n' "$1" "$2"
    SKIPPED+=("$1 because $2")
}

# Run a command that changes the system (printed instead under --dry-run).
run() {
    if [[ "$DRY_RUN" -eq 1 ]]; then
        printf '+ %s\n' "$*"
    else
        "$@"
    fi
}

# Append a line to a file unless it is already there (exact match).
ensure_line() {
    local line="$1" file="$2"
    mkdir -p "$(dirname "$file")"
    touch "$file"
    grep -qxF -- "$line" "$file" || printf '%s\n' "$line" >>"$file"
}

# --- 0. this machine: 64-bit, root ------------------------------------------------------------
MACHINE="$(uname -m)"
DPKG_ARCH="$(dpkg --print-architecture 2>/dev/null || echo unknown)"
case "$MACHINE/$DPKG_ARCH" in
    */armhf|*/armel|armv6l/*|armv7l/*|armv8l/*)
        # a 64-bit kernel with a 32-bit userland says aarch64 but armhf: the userland decides
        echo "provision.sh: pimodule needs 64-bit Raspberry Pi OS (Bookworm): onnxruntime ships no 32-bit ARM wheels (this system: uname -m $MACHINE, dpkg architecture $DPKG_ARCH)" >&2
        exit 1 ;;
    aarch64/arm64|aarch64/unknown|x86_64/amd64|x86_64/unknown) ;;
    *)
        echo "provision.sh: unsupported system (uname -m $MACHINE, dpkg architecture $DPKG_ARCH): pimodule runs on 64-bit Raspberry Pi OS (arm64), and x86_64 for development" >&2
        exit 1 ;;
esac

if [[ -z "$ROOT" && "$DRY_RUN" -eq 0 && "$(id -u)" -ne 0 ]]; then
    echo "provision.sh: run as root (sudo), or use --dry-run" >&2
    exit 1
fi
if [[ -z "$ROOT" && "$DRY_RUN" -eq 1 ]]; then
    ROOT="$(mktemp -d)"  # a dry run never writes under /
    log "dry run: files go under $ROOT"
fi
[[ -e "$SRC/pyproject.toml" ]] || { echo "provision.sh: $SRC is not a pimodule checkout" >&2; exit 1; }
[[ -e "$SRC/configs/pi.toml" ]] || { echo "provision.sh: $SRC/configs/pi.toml missing" >&2; exit 1; }
T_START=$SECONDS

# What the running system is (a dry run describes a Pi image under ROOT, so it writes and prints
# every step).
systemd_running() { [[ -d /run/systemd/system ]]; }   # sd_booted(): systemd is PID 1
card_present() { grep -qs "\[$CARD *\]" /proc/asound/cards; }

# --- 1. boot: I2S codec (WM8731 via rpi-proto), SPI for the MCP3208, no on-board audio --------
BOOT_CONFIG="$ROOT/boot/firmware/config.txt"
if [[ ! -e "$BOOT_CONFIG" && -e "$ROOT/boot/config.txt" ]]; then
    BOOT_CONFIG="$ROOT/boot/config.txt"  # older Raspberry Pi OS
fi
if [[ "$DRY_RUN" -eq 0 && ! -d /boot/firmware && ! -e /boot/config.txt ]]; then
    skip "boot config (dtoverlay=rpi-proto, dtparam=spi/i2s/i2c_arm=on, audio=off)" \
        "there is neither /boot/firmware/ nor /boot/config.txt (no Raspberry Pi boot partition: a chroot, container or emulated Pi?)"
else
    log "boot config: $BOOT_CONFIG"
    ensure_line "# pimodule: Terminal Tedium (WM8731 codec on I2S, MCP3208 on SPI0 CS1)" "$BOOT_CONFIG"
    ensure_line "dtparam=i2s=on" "$BOOT_CONFIG"
    ensure_line "dtparam=i2c_arm=on" "$BOOT_CONFIG"
    ensure_line "dtparam=spi=on" "$BOOT_CONFIG"
    ensure_line "dtparam=audio=off" "$BOOT_CONFIG"
    ensure_line "dtoverlay=rpi-proto" "$BOOT_CONFIG"
fi

# --- 2. ALSA: the codec is the default card --------------------------------------------------
ASOUND="$ROOT/etc/asound.conf"
log "ALSA default card $CARD: $ASOUND"
mkdir -p "$(dirname "$ASOUND")"
cat >"$ASOUND" <<ALSA
# written by pimodule firmware/provision.sh: the Terminal Tedium's WM8731 is the default card
pcm.!default {
    type hw
    card $CARD
}
ctl.!default {
    type hw
    card $CARD
}
ALSA

# --- 3. packages: Python, PortAudio, ALSA tools, a compiler for RPi.GPIO / spidev (sdists) -----
# alsa-utils before the mixer (amixer, alsactl); gcc + python3-dev build RPi.GPIO and spidev,
# which have no aarch64 wheels.
APT_PACKAGES=(python3 python3-venv python3-dev gcc libc6-dev libportaudio2 libsndfile1 alsa-utils
              ca-certificates)
log "packages: ${APT_PACKAGES[*]}"
run env DEBIAN_FRONTEND=noninteractive apt-get update -q
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"

# --- 4. WM8731 mixer: line in to the ADC, DAC to the output, no analogue bypass ---------------
# Control names are the kernel wm8731 driver's; a missing one is reported, not fatal.
mixer() {
    run amixer -q -c "$CARD" cset "name=$1" "$2" || log "mixer control '$1' not set (card not up yet?)"
}
if [[ "$DRY_RUN" -eq 0 ]] && ! card_present; then
    skip "WM8731 mixer (amixer -c $CARD, alsactl store)" \
        "ALSA card $CARD is absent from /proc/asound/cards (before the reboot that loads dtoverlay=rpi-proto, or no codec here: run provision.sh again after rebooting)"
else
    log "WM8731 mixer"
    mixer "Master Playback Volume" 121            # 0 dB (0..127, 1 dB steps, 121 = 0 dB)
    mixer "Master Playback ZC Switch" on
    mixer "Output Mixer HiFi Playback Switch" on   # DAC -> line out
    mixer "Output Mixer Line Bypass Switch" off    # no dry input mixed into the output
    mixer "Output Mixer Mic Sidetone Switch" off
    mixer "Input Mux" "Line In"
    mixer "Line Capture Switch" on
    mixer "Capture Volume" 23                      # 0 dB line-in gain (0..31, 1.5 dB steps)
    mixer "Mic Capture Switch" off
    mixer "ADC High Pass Filter Switch" on         # audio inputs: remove DC
    run alsactl store "$CARD" || log "alsactl store failed (card not up yet?)"
fi

# --- 5. CPU governor: performance, now and at boot ---------------------------------------------
GOVERNOR_UNIT="$ROOT/etc/systemd/system/pimodule-governor.service"
log "CPU governor performance: $GOVERNOR_UNIT"
mkdir -p "$(dirname "$GOVERNOR_UNIT")"
cat >"$GOVERNOR_UNIT" <<'UNIT'
[Unit]
Description=CPU governor performance for pimodule
Before=pimodule.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'for g in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do echo performance > "$g"; done'

[Install]
WantedBy=multi-user.target
UNIT

# The audio process holds the CPU's wake-up latency at 0 (PM QoS, /dev/cpu_dma_latency) while it
# plays: no deep idle state between callbacks. The device is root's alone unless this rule lets
# the audio group write it (the unit's DeviceAllow names it too).
QOS_RULE="$ROOT/etc/udev/rules.d/60-pimodule-cpu-latency.rules"
log "PM QoS for the audio group: $QOS_RULE"
mkdir -p "$(dirname "$QOS_RULE")"
echo 'KERNEL=="cpu_dma_latency", GROUP="audio", MODE="0660"' >"$QOS_RULE"

# --- 6. the pimodule user, its groups, real-time limits --------------------------------------
log "user $USER_NAME in ${GROUPS_NEEDED[*]}"
for group in "${GROUPS_NEEDED[@]}"; do
    getent group "$group" >/dev/null || run groupadd --system "$group"
done
if ! id -u "$USER_NAME" >/dev/null 2>&1; then
    run useradd --system --create-home --home-dir /var/lib/pimodule --shell /usr/sbin/nologin \
        --user-group "$USER_NAME"
fi
run usermod -a -G "$(IFS=,; echo "${GROUPS_NEEDED[*]}")" "$USER_NAME"
LIMITS="$ROOT/etc/security/limits.d/pimodule.conf"
mkdir -p "$(dirname "$LIMITS")"
cat >"$LIMITS" <<LIM
# pimodule: real-time audio thread when run by hand (the systemd unit sets its own limits)
$USER_NAME - rtprio 95
$USER_NAME - memlock unlimited
LIM

# --- 7. venv with pimodule[device,pi], installed from a copy of the source ---------------------
# The copy (PREFIX/src, which the unit's Documentation= points at) is what pip builds from, so
# --src may be read-only (pip/setuptools write build/ and *.egg-info next to the sources).
COPY="$PREFIX/src"
log "venv $PREFIX/venv from $SRC (copied to $COPY)"
copy_source() {
    rm -rf "$COPY"
    mkdir -p "$COPY"
    tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
        --exclude=./runs --exclude=./data --exclude=./out --exclude='*.egg-info' \
        --exclude=__pycache__ --exclude=.pytest_cache --exclude=.ruff_cache -cf - . |
        tar -C "$COPY" -xf -
}
if [[ "$DRY_RUN" -eq 1 ]]; then
    printf '+ copy %s -> %s (without .git, .venv, build outputs)
' "$SRC" "$COPY"
else
    copy_source
fi
run python3 -m venv "$PREFIX/venv"
run "$PREFIX/venv/bin/pip" install --upgrade pip
run "$PREFIX/venv/bin/pip" install "${COPY}[device,pi]"
# the models dir of configs/pi.toml, owned by the daemon's user: `pimodule flash` installs there
MODELS="$ROOT/var/lib/pimodule/models"
run mkdir -p "$MODELS"
if compgen -G "$SRC/export/*.onnx" >/dev/null; then
    run cp "$SRC"/export/*.onnx "$MODELS/"
fi
run chown -R "$USER_NAME:$USER_NAME" "$MODELS"
# the pimodule command for whoever logs in, and the real-time engine compiled into the service's
# cache now rather than at its first start (a few minutes on a Pi, once per install or upgrade)
run ln -sf "$PREFIX/venv/bin/pimodule" "$ROOT/usr/local/bin/pimodule"
CACHE="$ROOT/var/cache/pimodule"
run mkdir -p "$CACHE/numba"
run chown -R "$USER_NAME:$USER_NAME" "$CACHE"
log "compiling the real-time engine into $CACHE/numba (a few minutes on a Pi)"
run runuser -u "$USER_NAME" -- env NUMBA_CACHE_DIR=/var/cache/pimodule/numba HOME=/var/lib/pimodule \
    "$PREFIX/venv/bin/python" -m pimodule.device.rt.warm ||
    log "the engine was not compiled now: the service compiles it at its first start"

# --- 8. configuration: hardware file and daemon config (configs/pi.toml) ----------------------
ETC="$ROOT/etc/pimodule"
mkdir -p "$ETC"
cp "$SRC/hardware/terminal_tedium.toml" "$ETC/terminal_tedium.toml"
if [[ -e "$ETC/config.toml" ]]; then
    log "daemon config $ETC/config.toml exists: kept (configs/pi.toml is the shipped one)"
else
    log "daemon config: configs/pi.toml -> $ETC/config.toml"
    cp "$SRC/configs/pi.toml" "$ETC/config.toml"
fi

# --- 9. systemd unit ----------------------------------------------------------------------------
UNIT_DIR="$ROOT/etc/systemd/system"
mkdir -p "$UNIT_DIR"
cp "$SRC/systemd/pimodule.service" "$UNIT_DIR/pimodule.service"
if [[ "$DRY_RUN" -eq 1 ]]; then
    run systemctl daemon-reload
    run systemctl enable pimodule-governor.service pimodule.service
elif ! command -v systemctl >/dev/null; then
    skip "systemctl daemon-reload / enable pimodule-governor.service pimodule.service" \
        "systemctl is not installed (no systemd on this system; the unit files are in $UNIT_DIR)"
else
    if systemd_running; then
        run systemctl daemon-reload
    else
        skip "systemctl daemon-reload" "systemd is not running as PID 1 (chroot or container: no /run/systemd/system)"
    fi
    # enable only makes the [Install] symlinks: it works offline, as image builders use it
    run systemctl enable pimodule-governor.service pimodule.service
fi

log "done in $((SECONDS - T_START)) s. Reboot once for the overlays (dtoverlay=rpi-proto, spi); then: journalctl -u pimodule -f"
if [[ ${#SKIPPED[@]} -gt 0 ]]; then
    log "${#SKIPPED[@]} step(s) skipped:"
    printf '   skipped: %s\n' "${SKIPPED[@]}"
fi
