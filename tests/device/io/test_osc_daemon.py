"""The OSC additions against the real daemon (built in-process, playing on its simulated clock):
``/pimodule/cv/<name>`` replaces the daemon's own CV reading and is heard (1 V/oct), and status
carries what the Pd panel follows (control values, gain, mode, model, the model list)."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from pimodule.core.features import yin_f0
from pimodule.device import daemon as daemon_mod
from pimodule.device.config import parse_config
from pimodule.device.control import Note
from pimodule.device.io.osc_client import OscClient, decode

pytestmark = pytest.mark.timeout(120)
RATE_HZ = 48000
C4_HZ = 261.6256


def _cents(hz: float, ref: float) -> float:
    return 1200 * abs(np.log2(hz / ref))


def test_external_cv_is_heard_and_status_follows(model_dir):
    cfg = parse_config(
        {
            "osc": {"port": 0},
            "models": {"dir": str(model_dir), "default": "voice_a"},
            "engine": {"loudness_source": "cv2"},
            "cv": {"backend": "simulated"},
        },
        "test",
    )
    d = daemon_mod.build(cfg, record_s=30.0, melody=[Note(0.0, 30.0, True, 4.0)])
    d.engine.set_control("noise_gain_db", -40.0)
    thread = threading.Thread(target=daemon_mod.run, kwargs=dict(d=d, offline=True, duration_s=None))
    thread.start()
    marks = {}
    seen: dict[str, list] = {}
    try:
        with OscClient("127.0.0.1", d.osc.port) as c, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
            c.request("/pimodule/ping", expect="/pimodule/pong", timeout_s=20)
            deadline = time.monotonic() + 30
            while d.engine.n_samples < 0.6 * RATE_HZ and time.monotonic() < deadline:  # audio has started
                time.sleep(0.05)
            marks["cv"] = d.engine.n_samples
            c.send("/pimodule/cv/cv1", 1.0)  # Pd reads the Tedium: one volt up, an octave
            assert c.request("/pimodule/cv/cv3", 25.0, expect="/pimodule/cv/cv3")[1] == [10.0]  # clamped
            err = c.request("/pimodule/cv/cv9", 1.0, expect="/pimodule/error")[1]
            assert "no CV input 'cv9'" in err[1]
            c.send("/pimodule/gain", -3.0)
            c.request("/pimodule/ping", expect="/pimodule/pong")
            start = d.engine.n_samples
            while d.engine.n_samples < start + 0.8 * RATE_HZ and time.monotonic() < deadline:
                time.sleep(0.05)  # the CV reader polls on: the value from outside stays
            marks["end"] = d.engine.n_samples
            assert d.reader.snapshot()["cv1"] == 1.0
            listener.bind(("127.0.0.1", 0))
            listener.settimeout(0.2)
            port = listener.getsockname()[1]
            wanted = {"cv/cv1", "cv/cv3", "control/pitch_shift_semitones", "gain_db", "model", "models", "mode"}
            end = time.monotonic() + 10
            while time.monotonic() < end and not wanted <= set(seen):
                if not seen:
                    c.send("/pimodule/status/subscribe", port, 10.0)
                try:
                    address, args = decode(listener.recvfrom(4096)[0])[0]
                except TimeoutError:
                    continue
                seen[address.removeprefix("/pimodule/status/")] = args
    finally:
        d.stop_event.set()
        thread.join(20)
        d.close()
    assert seen["cv/cv1"] == [1.0] and seen["cv/cv3"] == [10.0]
    assert seen["control/pitch_shift_semitones"] == [0.0] and seen["gain_db"] == [-3.0]
    assert seen["model"] == ["voice_a"] and seen["mode"] == ["synth"]
    assert {"voice_a", "voice_b"} <= set(seen["models"]) and "bad_kind" not in seen["models"]  # voices only
    y = d.runner.recorder.audio.astype(np.float64)
    assert np.all(np.isfinite(y))

    def f0_of(a, b):
        f0, per = yin_f0(y[a:b], RATE_HZ, hop_size=480)
        return float(np.median(f0[per > 0.5]))

    assert _cents(f0_of(int(0.1 * RATE_HZ), marks["cv"]), C4_HZ) < 30
    assert _cents(f0_of(marks["cv"] + int(0.2 * RATE_HZ), marks["end"]), 2 * C4_HZ) < 30
