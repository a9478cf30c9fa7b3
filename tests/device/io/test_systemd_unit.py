"""systemd/pimodule.service passes `systemd-analyze verify` and carries the settings the daemon needs."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[3] / "systemd" / "pimodule.service"
EXEC_START = "/opt/pimodule/venv/bin/pimodule run --config /etc/pimodule/config.toml"


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # keys are case sensitive
    cp.read(UNIT)
    return cp


def test_unit_settings():
    svc = _unit()["Service"]
    assert svc["Type"] == "notify"
    assert svc["ExecStart"] == EXEC_START
    assert svc["Restart"] == "on-failure"
    assert svc["User"] == "pimodule"
    assert set(svc["SupplementaryGroups"].split()) == {"audio", "spi", "gpio", "dialout"}
    assert svc["WatchdogSec"].rstrip("s").isdigit()
    assert int(svc["LimitRTPRIO"]) > 0 and svc["LimitMEMLOCK"] == "infinity"
    assert svc["StandardOutput"] == "journal"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify(tmp_path):
    # The venv path does not exist here: point ExecStart at a real executable, keep the rest.
    text = UNIT.read_text().replace(EXEC_START, f"{shutil.which('true')} run --config /etc/pimodule/config.toml")
    unit = tmp_path / "pimodule.service"
    unit.write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    ours = [ln for ln in (out.stdout + out.stderr).splitlines() if "pimodule.service" in ln]
    assert out.returncode == 0, out.stderr
    assert ours == [], ours


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_verify_catches_a_broken_unit(tmp_path):
    unit = tmp_path / "pimodule.service"
    unit.write_text(UNIT.read_text().replace("Type=notify", "Type=notfiy"))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "notfiy" in out.stdout + out.stderr  # the same check that passes above does see errors
