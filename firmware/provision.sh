#!/usr/bin/env bash
# Provision a Raspberry Pi (Raspberry Pi OS / Debian 12) with a Terminal Tedium as a pimodule:
# boot overlays, ALSA default card, WM8731 mixer, CPU governor, the pimodule user, a venv with
# pimodule[device,pi], the hardware file and the systemd unit. Idempotent: run it again after
# an update. See firmware/README.md.
#
#   sudo firmware/provision.sh [--src DIR] [--prefix DIR] [--root DIR] [--dry-run]
#
#   --src DIR     pimodule checkout to install from (default: the one holding this script)
#   --prefix DIR  install prefix (default /opt/pimodule; the unit expects /opt/pimodule/venv)
#   --root DIR    write config files under DIR instead of / (for tests; implies --dry-run)
#   --dry-run     print the commands that change the system instead of running them, and
#                 write the files under a temporary directory
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
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "provision.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

log() { printf '>> %s\n' "$*"; }

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

if [[ -z "$ROOT" && "$DRY_RUN" -eq 0 && "$(id -u)" -ne 0 ]]; then
    echo "provision.sh: run as root (sudo), or use --dry-run" >&2
    exit 1
fi
if [[ -z "$ROOT" && "$DRY_RUN" -eq 1 ]]; then
    ROOT="$(mktemp -d)"  # a dry run never writes under /
    log "dry run: files go under $ROOT"
fi

# --- 1. boot: I2S codec (WM8731 via rpi-proto), SPI for the MCP3208, no on-board audio --------
BOOT_CONFIG="$ROOT/boot/firmware/config.txt"
if [[ ! -e "$BOOT_CONFIG" && -e "$ROOT/boot/config.txt" ]]; then
    BOOT_CONFIG="$ROOT/boot/config.txt"  # older Raspberry Pi OS
fi
log "boot config: $BOOT_CONFIG"
ensure_line "# pimodule: Terminal Tedium (WM8731 codec on I2S, MCP3208 on SPI0 CS1)" "$BOOT_CONFIG"
ensure_line "dtparam=i2s=on" "$BOOT_CONFIG"
ensure_line "dtparam=i2c_arm=on" "$BOOT_CONFIG"
ensure_line "dtparam=spi=on" "$BOOT_CONFIG"
ensure_line "dtparam=audio=off" "$BOOT_CONFIG"
ensure_line "dtoverlay=rpi-proto" "$BOOT_CONFIG"

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

# --- 3. WM8731 mixer: line in to the ADC, DAC to the output, no analogue bypass ---------------
# Control names are the kernel wm8731 driver's; a missing one is reported, not fatal.
mixer() {
    run amixer -q -c "$CARD" cset "name=$1" "$2" || log "mixer control '$1' not set (card not up yet?)"
}
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

# --- 4. CPU governor: performance, now and at boot ---------------------------------------------
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

# --- 5. the pimodule user, its groups, real-time limits --------------------------------------
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

# --- 6. venv with pimodule[device,pi] ---------------------------------------------------------
log "venv $PREFIX/venv from $SRC"
run apt-get install -y --no-install-recommends python3-venv python3-dev libportaudio2 alsa-utils
run python3 -m venv "$PREFIX/venv"
run "$PREFIX/venv/bin/pip" install --upgrade pip
run "$PREFIX/venv/bin/pip" install "${SRC}[device,pi]"
# the models dir of configs/pi.toml, owned by the daemon's user: `pimodule flash` installs there
MODELS="$ROOT/var/lib/pimodule/models"
run mkdir -p "$MODELS"
if compgen -G "$SRC/export/*.onnx" >/dev/null; then
    run cp "$SRC"/export/*.onnx "$MODELS/"
fi
run chown -R "$USER_NAME:$USER_NAME" "$MODELS"

# --- 7. configuration: hardware file and daemon config ---------------------------------------
ETC="$ROOT/etc/pimodule"
mkdir -p "$ETC"
cp "$SRC/hardware/terminal_tedium.toml" "$ETC/terminal_tedium.toml"
if [[ ! -e "$ETC/config.toml" ]]; then
    if [[ -e "$SRC/configs/pimodule.toml" ]]; then
        cp "$SRC/configs/pimodule.toml" "$ETC/config.toml"
    else
        printf '# pimodule daemon configuration (see docs/osc.md for [osc])\n[osc]\nhost = "127.0.0.1"\nport = 9000\n' \
            >"$ETC/config.toml"
    fi
fi

# --- 8. systemd unit ----------------------------------------------------------------------------
UNIT_DIR="$ROOT/etc/systemd/system"
mkdir -p "$UNIT_DIR"
cp "$SRC/systemd/pimodule.service" "$UNIT_DIR/pimodule.service"
run systemctl daemon-reload
run systemctl enable pimodule-governor.service pimodule.service

log "done. Reboot once for the overlays (dtoverlay=rpi-proto, spi); then: journalctl -u pimodule -f"
