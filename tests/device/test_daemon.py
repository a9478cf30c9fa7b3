"""`pimodule run` end to end on the simulated clock, in a subprocess: torch never imported,
the recording plays the CV melody, refusals and config errors are clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pimodule.core.features import yin_f0
from pimodule.device.control import DEMO_MELODY

pytestmark = pytest.mark.timeout(120)


def run_py(code: str, timeout_s: float = 90) -> subprocess.CompletedProcess:
    """Run Python code in a new process group; on timeout the whole group (jackd too) is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out; stderr: {err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_daemon_runs_offline_without_torch_and_plays_the_melody(model_dir, tmp_path):
    out = tmp_path / "played.wav"
    proc = run_py(f"""
        import sys
        from pimodule.cli import main
        rc = main(["run", "--offline", "--duration", "1.5", "--models-dir", {str(model_dir)!r},
                   "--model", "voice_a", "--osc-port", "0", "--cv", "simulated", "--record", {str(out)!r}])
        assert "torch" not in sys.modules, "the daemon imported torch"
        sys.exit(rc)
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SIMULATED CV" in proc.stderr and "OFFLINE" in proc.stderr
    assert "played on offline (simulated clock)" in proc.stdout and "exceptions 0" in proc.stdout
    import soundfile

    y, rate = soundfile.read(out, dtype="float64")
    assert rate == 48000 and len(y) == int(1.5 * rate)
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    f0, periodicity = yin_f0(y, rate, hop_size=480)
    first, second = DEMO_MELODY[0], DEMO_MELODY[1]
    hop_s = 480 / rate
    for k, note in ((0, first), (1, second)):
        a = int((k * 0.3 + 0.12) / hop_s)
        b = int((k * 0.3 + 0.28) / hop_s)
        measured = np.median(f0[a:b][periodicity[a:b] > 0.5])
        assert 1200 * abs(np.log2(measured / (261.6256 * 2**note.volts))) < 30


def test_importing_the_runtime_pulls_no_torch():
    proc = run_py("""
        import sys
        import pimodule.device.daemon, pimodule.device.bench, pimodule.device.cv_calibrate
        import pimodule.device.ort_engine, pimodule.device.audio, pimodule.device.session
        print(sorted(m for m in sys.modules if m.split(".")[0] == "torch"))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_missing_model_starts_silent_and_bad_config_exits_2(tmp_path):
    proc = run_py(f"""
        import sys
        from pimodule.cli import main
        sys.exit(main(["run", "--offline", "--duration", "0.2", "--models-dir", {str(tmp_path)!r},
                       "--no-osc", "--cv", "simulated"]))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "starting without a voice" in proc.stderr and "model (none)" in proc.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine]\nmode = 'granular'\n")
    proc = run_py(f"""
        import sys
        from pimodule.cli import main
        sys.exit(main(["run", "--config", {str(bad)!r}, "--offline", "--duration", "0.1"]))
    """)
    assert proc.returncode == 2 and "engine.mode" in proc.stderr


@pytest.mark.jack
def test_jack_dummy_option_plays_through_a_private_jack_server(model_dir, tmp_path):
    out = tmp_path / "jack.wav"
    proc = run_py(f"""
        import sys
        from pimodule.cli import main
        sys.exit(main(["run", "--jack-dummy", "--duration", "1.0", "--models-dir", {str(model_dir)!r},
                       "--model", "voice_a", "--osc-port", "0", "--cv", "simulated", "--record", {str(out)!r}]))
    """)
    if "falling back to the simulated clock" in proc.stderr:
        pytest.skip("jackd could not start here")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "played on system (JACK Audio Connection Kit)" in proc.stdout
    import re

    pid = int(re.search(r"pid (\d+)", proc.stderr).group(1))
    assert not __import__("os").path.exists(f"/proc/{pid}") or "jackd" not in open(f"/proc/{pid}/cmdline").read()
    import soundfile

    y, _ = soundfile.read(out)
    assert len(y) > 0.5 * 48000 and np.max(np.abs(y)) > 1e-3 and np.max(np.abs(y)) <= 1.0


def test_front_panel_buttons(model_dir):
    from pimodule.device import daemon as daemon_mod
    from pimodule.device.config import parse_config

    cfg = parse_config(
        {
            "models": {"dir": str(model_dir), "default": "voice_a"},
            "osc": {"enabled": False},
            "cv": {"backend": "simulated"},
        },
        "test",
    )
    d = daemon_mod.build(cfg)
    pins = [b.pin for b in __import__("pimodule.device.io.hardware", fromlist=["x"]).load_hardware().gpio.buttons]
    clock = [0.0]  # the buttons' own clock, driven here: no dependence on thread scheduling
    d.buttons._clock = lambda: clock[0]
    try:

        def press(pin):
            d.gpio.drive(pin, False)  # active low
            for _ in range(10):  # 10 polls 10 ms apart: past the debounce, short of a long press
                d.buttons.poll()
                clock[0] += 0.01
            d.gpio.drive(pin, True)
            for _ in range(10):
                d.buttons.poll()
                clock[0] += 0.01

        press(pins[1])
        assert d.engine.mode == "transfer"
        press(pins[2])
        assert d.controller.mute and d.engine.guard.muted
        press(pins[0])
        assert d.loader._pending == "voice_b"  # the next model after the pending one (latest wins)
    finally:
        d.close()


def test_list_devices_exits_cleanly(capsys):
    import argparse

    from pimodule.device import daemon_cli as daemon_mod

    parser = argparse.ArgumentParser()
    daemon_mod.configure(parser)
    assert daemon_mod.main(parser.parse_args(["--list-devices"])) == 0
    capsys.readouterr()  # whatever PortAudio sees here (maybe nothing): no exception
    args = parser.parse_args(["--device", "3", "--block-size", "64", "--mode", "fx", "--no-osc"])
    cfg = daemon_mod.config_from_args(args)
    assert cfg.audio.device == 3 and cfg.audio.block_size == 64 and cfg.engine.mode == "fx"
    assert not cfg.osc.enabled
    assert daemon_mod.config_from_args(parser.parse_args(["--device", "sndrpiproto"])).audio.device == "sndrpiproto"


def test_a_voice_that_goes_bad_while_playing_is_replaced_by_the_last_good_one(model_dir, caplog):
    """The callback silences a voice whose frames turn non-finite (here: its weights corrupted in
    the shared block while it plays); the daemon goes back to the voice before it and says so."""
    import threading
    import time

    from pimodule.device import daemon as daemon_mod
    from pimodule.device.config import parse_config
    from pimodule.device.rt import shared as L

    cfg = parse_config(
        {
            "osc": {"enabled": False},
            "flash": {"enabled": False},
            "models": {"dir": str(model_dir), "default": "voice_a"},
            "engine": {"loudness_source": "cv2"},
            "cv": {"backend": "simulated"},
        },
        "test",
    )
    d = daemon_mod.build(cfg, record_s=30.0)
    thread = threading.Thread(target=daemon_mod.run, kwargs=dict(d=d, offline=True, duration_s=None))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while d.engine.n_samples < 48000 and time.monotonic() < deadline:
            time.sleep(0.02)
        d.loader.request("voice_b")
        assert d.loader.wait_idle(60)
        while d.engine.session.info.name != "test-1" and time.monotonic() < deadline:
            time.sleep(0.02)
        active = int(d.engines.block.ih[L.I_ACTIVE])
        d.engines.block.buf(f"F_W{active}")[:500] = np.nan  # voice_b blows up
        while d.engine.session.info.name != "test-0" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert d.engine.session.info.name == "test-0"  # voice_a again
        n = d.engine.n_samples
        while d.engine.n_samples < n + 24000 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        d.stop_event.set()
        thread.join(30)
        d.close()
    assert "went non-finite while playing; back to 'voice_a'" in caplog.text
    y = d.runner.recorder.audio
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0 and np.max(np.abs(y[-12000:])) > 1e-3
