#!/usr/bin/env bash
# make pi-bench: executed aarch64 instructions per second of audio (QEMU_CPU=cortex-a72), per
# model frame and to first sound, for every shipped voice and mode, with the earlier engine for
# comparison, and the share of one core they mean on a Pi 4 and a Pi 3 / Zero 2 W at an assumed
# IPC. Run as root. Builds the root when missing and provisions it when it has no venv, then
# firmware/emu/pi_bench.py counts (about 2 h on 2 shared cores; the empty-cache start alone is
# most of it: --no-cold skips it). Report: docs/results/pi_bench.json (stamped); every count's
# JSON: out/pi-bench/ (--resume reuses them).
#
#   firmware/emu/pi-bench.sh [--only voices,modes,earlier,frames,cold] [--no-cold] [--resume]
#                            [--json FILE] [--no-stamp]
set -euo pipefail
EMU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$EMU_DIR/../.." && pwd)"
PY="${PI_CHECK_PYTHON:-$REPO_DIR/.venv/bin/python}"
case "${1:-}" in -h|--help) sed -n '2,12p' "$0"; exit 0 ;; esac
[[ "$(id -u)" -eq 0 ]] || { echo "pi-bench.sh: run as root (chroot, mounts, binfmt_misc)" >&2; exit 1; }
[[ -x "$PY" ]] || { echo "pi-bench.sh: no $PY: run make venv first" >&2; exit 1; }
root_args=()
[[ -n "${PI_ROOT:-}" ]] && root_args=(--root "$PI_ROOT")
"$EMU_DIR/pi-root.sh" "${root_args[@]}"
# shellcheck source=firmware/emu/lib.sh
source "$EMU_DIR/lib.sh"
if [[ ! -x "$PI_ROOT/opt/pimodule/venv/bin/python" ]]; then
    echo ">> no venv in $PI_ROOT: provisioning it (firmware/provision.sh)"
    "$EMU_DIR/pi-exec.sh" "${root_args[@]}" -- bash /src/firmware/provision.sh --src /src
fi
exec "$PY" "$EMU_DIR/pi_bench.py" "${root_args[@]}" "$@"
