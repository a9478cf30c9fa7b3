#!/usr/bin/env bash
# make pi-check: the module on an emulated Raspberry Pi, from a blank root to sound. Run as root.
# Builds the arm64 root when it is missing (pi-root.sh), then firmware/emu/pi_check.py runs the
# steps inside it: provision.sh for real, torch absent, the daemon as pimodule.service starts it
# (synth, transfer, fx) compared with the same command on this machine, the compiled engine
# sample by sample against x86_64, the SIGILL matrix under cortex-a72 and cortex-a53, and the
# device tests under both. Report: docs/results/pi_check.json (stamped); logs and recordings:
# out/pi-check/. Exit status 1 when a check failed.
#
#   firmware/emu/pi-check.sh [--steps provision,torch,daemon,engine,sigill,tests] [--seconds S]
#                            [--json FILE] [--no-stamp] [--tests FILE...]
#
# PI_ROOT / PIMODULE_CACHE choose the root as for the other scripts; PI_CHECK_PYTHON the host
# interpreter (default: the repository's .venv, `make venv`).
set -euo pipefail
EMU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$EMU_DIR/../.." && pwd)"
PY="${PI_CHECK_PYTHON:-$REPO_DIR/.venv/bin/python}"
case "${1:-}" in -h|--help) sed -n '2,15p' "$0"; exit 0 ;; esac
[[ "$(id -u)" -eq 0 ]] || { echo "pi-check.sh: run as root (chroot, mounts, binfmt_misc)" >&2; exit 1; }
[[ -x "$PY" ]] || { echo "pi-check.sh: no $PY: run make venv first" >&2; exit 1; }
t0=$SECONDS
root_args=()
[[ -n "${PI_ROOT:-}" ]] && root_args=(--root "$PI_ROOT")
"$EMU_DIR/pi-root.sh" "${root_args[@]}"
echo ">> pi-root.sh took $((SECONDS - t0)) s"
exec "$PY" "$EMU_DIR/pi_check.py" --root-seconds "$((SECONDS - t0))" "${root_args[@]}" "$@"
