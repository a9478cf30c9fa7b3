"""`pimodule flash` against the running daemon (simulated clock): the flashed voice is swapped in
while audio plays and PureData's status subscription hears of it; a bad file is refused over
the link and over OSC while the current voice keeps playing."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

from pimodule.cli import main as cli
from pimodule.device import daemon as daemon_mod
from pimodule.device.config import parse_config

pytestmark = pytest.mark.timeout(120)


def _messages(client, address: str, timeout_s: float) -> list:
    """Every message to ``address`` until one arrives or ``timeout_s`` passes."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        msg = client.receive(0.1)
        if msg is not None and msg[0] == address:
            return msg[1]
    return []


def _wait_for_model(d, name: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while d.controller.status()["model"] != name:
        assert time.monotonic() < deadline, f"model {name} is not playing"
        time.sleep(0.02)


def test_a_flashed_voice_is_swapped_in_and_a_bad_one_refused(model_dir, tmp_path, capsys):
    from pimodule.device.io.osc import OscClient

    store = tmp_path / "models"
    store.mkdir()
    shutil.copy(model_dir / "voice_a.onnx", store / "voice_a.onnx")
    cfg = parse_config(
        {
            "osc": {"port": 0},
            "flash": {"port": 0},
            "fx": {"model": ""},
            "models": {"dir": str(store), "default": "voice_a"},
            "cv": {"backend": "simulated"},
        },
        "test",
    )
    d = daemon_mod.build(cfg, record_s=30.0)
    port = d.flash[0].port
    thread = threading.Thread(target=daemon_mod.run, kwargs=dict(d=d, offline=True, duration_s=None))
    thread.start()
    try:
        with OscClient("127.0.0.1", d.osc.port) as pd:
            pd.request("/pimodule/status/subscribe", pd.port, 0.5, expect="/pimodule/status/subscribed", timeout_s=20)
            _wait_for_model(d, "voice_a")
            rc = cli(
                ["flash", str(model_dir / "voice_b.onnx"), "--to", f"127.0.0.1:{port}", "--name", "flashed", "--quiet"]
            )
            assert rc == 0
            assert _messages(pd, "/pimodule/model/installed", 10) == ["flashed", "ddsp"]
            _wait_for_model(d, "flashed")  # the flashed voice (voice_b) was swapped in
            swapped_at = d.engine.n_samples
            time.sleep(0.3)
            rc = cli(
                ["flash", str(model_dir / "bad_nan.onnx"), "--to", f"127.0.0.1:{port}", "--name", "flashed", "--quiet"]
            )
            assert rc == 1
            error = _messages(pd, "/pimodule/error", 10)
            assert error and error[0] == "/pimodule/flash" and "NaN" in error[1]
            time.sleep(0.3)
            assert d.controller.status()["model"] == "flashed"  # still playing the flashed voice
    finally:
        d.stop_event.set()
        thread.join(20)
        d.close()
    err = capsys.readouterr().err
    assert "NaN" in err and "nothing installed" in err
    assert sorted(p.name for p in store.iterdir()) == ["flashed.onnx", "voice_a.onnx"]  # new name: no previous
    y = d.runner.recorder.audio
    assert d.runner.stats.n_exceptions == 0 and np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    assert np.sqrt(np.mean(y[swapped_at:].astype(np.float64) ** 2)) > 1e-4  # still playing


def test_flash_cli_without_torch_and_with_an_unreachable_module(model_dir, tmp_path):
    import subprocess
    import sys

    code = (
        f"import sys; from pimodule.cli import main; rc = main(['flash', {str(model_dir / 'voice_a.onnx')!r}, "
        "'--to', '127.0.0.1:1']); assert 'torch' not in sys.modules; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "nothing listens on 127.0.0.1:1" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "pimodule.cli", "flash", str(tmp_path / "none.onnx"), "--to", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "no such file" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "pimodule.cli", "flash", str(model_dir / "bad_corrupt.onnx"), "--to", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "not an ONNX model" in proc.stderr


def test_the_daemon_receives_over_its_configured_serial_port(model_dir, tmp_path, pty_pair, capsys):
    store = tmp_path / "models"
    store.mkdir()
    shutil.copy(model_dir / "voice_a.onnx", store / "voice_a.onnx")
    (store / ".stale.onnx.partial").write_bytes(b"left by a power cut")
    cfg = parse_config(
        {
            "osc": {"enabled": False},
            "fx": {"model": ""},
            "flash": {"port": 0, "serial_port": pty_pair[0], "activate": False},
            "models": {"dir": str(store), "default": "voice_a"},
            "cv": {"backend": "simulated"},
        },
        "test",
    )
    d = daemon_mod.build(cfg)
    try:
        assert len(d.flash) == 2 and not (store / ".stale.onnx.partial").exists()
        for part in d.flash:
            part.start()
        rc = cli(["flash", str(model_dir / "voice_b.onnx"), "--serial", pty_pair[1], "--name", "over_serial"])
    finally:
        d.close()
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert '"activated": false' in out.out and "100 %" in out.err
    assert sorted(p.name for p in store.iterdir()) == ["over_serial.onnx", "voice_a.onnx"]
