"""OSC changes what the daemon plays: a real UDP client against the daemon's OSC server while
the daemon plays on its simulated clock (paced like a device)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pimodule.core.features import yin_f0
from pimodule.device import daemon as daemon_mod
from pimodule.device.config import parse_config
from pimodule.device.control import Note

pytestmark = pytest.mark.timeout(120)
RATE_HZ = 48000


def test_osc_pitch_shift_and_mute_are_heard(model_dir):
    from pimodule.device.io.osc import OscClient

    cfg = parse_config(
        {
            "osc": {"port": 0},
            "models": {"dir": str(model_dir), "default": "voice_a"},
            "engine": {"loudness_source": "cv2"},
            "cv": {"backend": "simulated"},
        },
        "test",
    )
    d = daemon_mod.build(cfg, record_s=30.0, melody=[Note(0.0, 10.0, True, 4.0)])
    d.engine.set_control("noise_gain_db", -40.0)
    thread = threading.Thread(target=daemon_mod.run, kwargs=dict(d=d, offline=True, duration_s=None))
    thread.start()
    marks = {}
    try:
        with OscClient("127.0.0.1", d.osc.port) as c:
            c.request("/pimodule/ping", expect="/pimodule/pong", timeout_s=20)
            deadline = time.monotonic() + 60
            while d.engine.n_samples == 0 and time.monotonic() < deadline:  # the audio process is up
                time.sleep(0.01)
            time.sleep(0.6)
            marks["shift"] = d.engine.n_samples
            c.request(
                "/pimodule/control/pitch_shift_semitones",
                40.0,  # clamped to 24: replied
                expect="/pimodule/control/pitch_shift_semitones",
                timeout_s=10,
            )
            time.sleep(0.6)
            marks["mute"] = d.engine.n_samples
            c.request("/pimodule/mute", 1, expect="/pimodule/mute", timeout_s=10)
            time.sleep(0.4)
            marks["end"] = d.engine.n_samples
    finally:
        d.stop_event.set()
        thread.join(20)
        d.close()
    y = d.runner.recorder.audio.astype(np.float64)
    assert d.runner.stats.n_exceptions == 0 and np.all(np.isfinite(y))

    def f0_of(a, b):
        f0, per = yin_f0(y[a:b], RATE_HZ, hop_size=480)
        return float(np.median(f0[per > 0.5]))

    before = f0_of(int(0.1 * RATE_HZ), marks["shift"])
    after = f0_of(marks["shift"] + int(0.15 * RATE_HZ), marks["mute"])
    assert 1200 * abs(np.log2(before / 261.6256)) < 30
    assert 1200 * abs(np.log2(after / (261.6256 * 4))) < 30  # +24 semitones (clamped from 40)
    tail = y[marks["mute"] + int(0.2 * RATE_HZ) : marks["end"]]
    assert len(tail) > 0 and np.max(np.abs(tail)) < 1e-3  # muted (after the smoothing ramp)


def test_unopenable_device_falls_back_to_the_simulated_clock(model_dir, caplog):
    cfg = parse_config(
        {
            "audio": {"device": "no-such-audio-device-anywhere"},
            "osc": {"enabled": False},
            "models": {"dir": str(model_dir), "default": "voice_a"},
            "cv": {"backend": "simulated"},
        },
        "test",
    )
    d = daemon_mod.build(cfg, record_s=0.3)
    try:
        backend = daemon_mod.run(d, offline=False, duration_s=0.3)
    finally:
        d.close()
    assert backend == "offline (simulated clock)"
    assert "running OFFLINE on a simulated clock" in caplog.text
    assert d.runner.recorder.n == int(0.3 * RATE_HZ) and d.runner.stats.n_exceptions == 0
