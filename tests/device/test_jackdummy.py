"""`pimodule run --jack-dummy`'s private JACK server dies with the daemon, however the daemon dies:
a real daemon process playing through a real jackd is killed with SIGKILL, and its jackd goes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("jackd") is None, reason="needs jackd (apt install jackd2)"),
]


def _children(pid: int, comm: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(pid) and fields.get("Name", "").strip() == comm:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_the_private_jackd_dies_with_a_daemon_killed_by_sigkill(tmp_path, model_dir):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(model_dir / "voice_a.onnx", models / "voice_a.onnx")
    argv = [sys.executable, "-m", "pimodule.cli", "run", "--jack-dummy", "--duration", "60", "--no-osc", "--no-flash"]
    argv += ["--cv", "simulated", "--models-dir", str(models), "--model", "voice_a"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    daemon = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    jackd: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not jackd:
            assert daemon.poll() is None, daemon.stderr.read()
            assert time.monotonic() < deadline, "the daemon started no jackd"
            jackd = _children(daemon.pid, "jackd")
            time.sleep(0.1)
        time.sleep(1.0)  # playing through it
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        deadline = time.monotonic() + 10
        while _alive(jackd[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(jackd[0]), "jackd outlived the daemon (orphaned)"
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
        for pid in jackd:  # only if the test failed: never leave it behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        daemon.stderr.close()
