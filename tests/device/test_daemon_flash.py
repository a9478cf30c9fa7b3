"""`pimodule flash` against the running daemon (simulated clock): the flashed voice is swapped in
while audio plays and PureData's status subscription hears of it; a bad file is refused over
the link and over OSC while the current voice keeps playing."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pimodule.cli import main as cli
from pimodule.device import daemon as daemon_mod
from pimodule.device.config import parse_config

pytestmark = pytest.mark.timeout(400)
FX_EXPORT = Path(__file__).resolve().parents[2] / "export" / "fx.onnx"


def _messages(client, address: str, timeout_s: float) -> list:
    """Every message to ``address`` until one arrives or ``timeout_s`` passes."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        msg = client.receive(0.1)
        if msg is not None and msg[0] == address:
            return msg[1]
    return []


def _wait_for_model(d, name: str, timeout_s: float = 120.0) -> None:  # a cold numba cache compiles first
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


def test_hostile_uploads_to_a_playing_daemon_change_nothing(model_dir, tmp_path, synthetic_voice, caplog, capsys):
    """The uploads of issue 19 against the real daemon: a model reading a file outside itself, an
    estimator over the default voice's name, a voice too slow for this board, one whose state
    turns NaN after the warm-up, a name with a dot, a header of 5000 brackets and a sender that
    only NAKs; afterwards the default voice still plays, finite, nothing was installed and the
    secret file's content appears nowhere."""
    import hashlib
    import logging
    import secrets
    import socket

    import onnx
    from onnx import TensorProto, external_data_helper, helper, numpy_helper

    from pimodule.device.io import flash_links, flashlink

    caplog.set_level(logging.DEBUG)
    secret = f"CANARY-{secrets.token_hex(16)}".encode()
    (tmp_path / "secret.txt").write_bytes(secret * 16)
    leak = onnx.load(str(synthetic_voice(tmp_path / "leak.onnx")))
    tensor = numpy_helper.from_array(np.zeros(64, np.uint8), "leak")
    external_data_helper.set_external_data(tensor, location="../secret.txt", offset=0, length=64)
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    leak.graph.initializer.append(tensor)
    leak.graph.node.append(helper.make_node("Cast", ["leak"], ["leaked"], to=TensorProto.FLOAT))
    leak.graph.output.append(helper.make_tensor_value_info("leaked", TensorProto.FLOAT, [64]))
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "leak.onnx").write_bytes(leak.SerializeToString())
    attacks = [
        (uploads / "leak.onnx", "voice_a", "outside the file"),
        (FX_EXPORT, "voice_a", "default voice"),
        (synthetic_voice(uploads / "slow.onnx", "slow"), "slow", "too slow for this board"),
        (synthetic_voice(uploads / "later.onnx", "nan_later"), "later", "turns NaN or inf at frame 101"),
        (model_dir / "voice_b.onnx", "flute.v2", "bad model name"),
    ]
    store = tmp_path / "models"
    store.mkdir()
    shutil.copy(model_dir / "voice_a.onnx", store / "voice_a.onnx")
    before = hashlib.sha256((store / "voice_a.onnx").read_bytes()).hexdigest()
    cfg = parse_config(
        {
            "osc": {"enabled": False},
            "flash": {"port": 0},
            "fx": {"model": ""},
            "models": {"dir": str(store), "default": "voice_a"},
            "cv": {"backend": "simulated"},
        },
        "test",
    )
    d = daemon_mod.build(cfg, record_s=120.0)
    port = d.flash[0].port
    thread = threading.Thread(target=daemon_mod.run, kwargs=dict(d=d, offline=True, duration_s=None))
    thread.start()
    try:
        _wait_for_model(d, "voice_a")
        for path, name, reason in attacks:
            assert cli(["flash", str(path), "--to", f"127.0.0.1:{port}", "--name", name, "--quiet"]) == 1
            assert reason in capsys.readouterr().err, (name, reason)
        for line in ("PIMODULE-FLASH 1 " + "[" * 5000, 'PIMODULE-FLASH 1 {"name": "\u00e9vil"}'):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(line.encode() + b"\n")
                assert sock.recv(4096).startswith(b"ERROR ")
        link = flash_links.SocketLink.connect("127.0.0.1", port)  # a sender that never sends a chunk
        try:
            data = b"x" * 5000
            link.send_line(
                flashlink.header_line({"name": "stuck", "size": 5000, "sha256": hashlib.sha256(data).hexdigest()})
            )
            assert link.read_line(5).startswith("READY")
            t0 = time.monotonic()
            reply = None
            while reply is None or not reply.startswith("ERROR"):
                link.send_line("DATA 0 00000000 AAAA")
                reply = link.read_line(1.0)
                assert time.monotonic() - t0 < 30
        finally:
            link.close()
        assert "nothing for 10 s" in reply
        played_from = d.engine.n_samples
        time.sleep(0.5)
        assert d.controller.status()["model"] == "voice_a"
    finally:
        d.stop_event.set()
        thread.join(20)
        d.close()
    assert sorted(p.name for p in store.iterdir()) == ["voice_a.onnx"]
    assert hashlib.sha256((store / "voice_a.onnx").read_bytes()).hexdigest() == before
    y = d.runner.recorder.audio[played_from:]
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0 and np.sqrt(np.mean(y.astype(np.float64) ** 2)) > 1e-4
    out = capsys.readouterr()
    assert secret.decode() not in caplog.text + out.out + out.err
