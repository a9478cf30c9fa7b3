#!/usr/bin/env bash
# Screenshots of the Pd panels for the docs (docs/pd/panel.png, fx.png, tedium.png): Pd's own GUI
# under a virtual display (Xvfb), the panels connected to an in-memory daemon holding known values.
# Needs (Debian 12): apt-get install puredata-core puredata-gui xvfb xdotool imagemagick
# Usage: firmware/pd_patches/screenshots.sh [DIR]   (default docs/pd; PYTHON=... picks the interpreter)
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
exec "$python" -m pimodule.device.io.pd_gen --screenshots "${1:-docs/pd}"
