"""firmware/provision.sh: shellcheck-clean, and a dry run into a temporary root writes the right files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "firmware" / "provision.sh"


def _provision(root: Path) -> str:
    out = subprocess.run(["bash", str(SCRIPT), "--root", str(root)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck")
def test_shellcheck_clean():
    out = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout


def test_dry_run_into_a_root_is_idempotent(tmp_path):
    log = _provision(tmp_path)
    _provision(tmp_path)  # a second run must not duplicate anything
    boot = (tmp_path / "boot/firmware/config.txt").read_text().splitlines()
    for line in ("dtoverlay=rpi-proto", "dtparam=spi=on", "dtparam=i2s=on"):
        assert boot.count(line) == 1
    asound = (tmp_path / "etc/asound.conf").read_text()
    assert asound.count("card sndrpiproto") == 2
    assert (tmp_path / "etc/pimodule/terminal_tedium.toml").read_bytes() == (
        REPO / "hardware/terminal_tedium.toml"
    ).read_bytes()
    unit = (tmp_path / "etc/systemd/system/pimodule.service").read_text()
    assert "ExecStart=/opt/pimodule/venv/bin/pimodule run --config /etc/pimodule/config.toml" in unit
    # system-changing commands are only printed
    assert "+ amixer -q -c sndrpiproto cset name=Input Mux Line In" in log
    assert "[device,pi]" in log
    assert "+ systemctl enable pimodule-governor.service pimodule.service" in log
    # the audio group may hold the CPU's wake-up latency (PM QoS), and the unit lets the daemon
    qos = (tmp_path / "etc/udev/rules.d/60-pimodule-cpu-latency.rules").read_text().splitlines()
    assert qos == ['KERNEL=="cpu_dma_latency", GROUP="audio", MODE="0660"']
    assert "DeviceAllow=/dev/cpu_dma_latency w" in unit


def test_older_boot_config_location(tmp_path):
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot/config.txt").write_text("dtparam=spi=on\n")
    _provision(tmp_path)
    lines = (tmp_path / "boot/config.txt").read_text().splitlines()
    assert lines.count("dtparam=spi=on") == 1 and "dtoverlay=rpi-proto" in lines
    assert not (tmp_path / "boot/firmware/config.txt").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_governor_unit_verifies(tmp_path):
    _provision(tmp_path)
    unit = tmp_path / "etc/systemd/system/pimodule-governor.service"
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    ours = [ln for ln in (out.stdout + out.stderr).splitlines() if "pimodule-governor" in ln]
    assert out.returncode == 0 and ours == [], out.stdout + out.stderr
