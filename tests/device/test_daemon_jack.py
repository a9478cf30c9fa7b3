"""The daemon on a REAL JACK server (dummy backend): CV melody, OSC storm, 20 model swaps and
refused bad models during playback; the output stays finite and bounded and follows the CV."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from pimodule.core.features import yin_f0
from pimodule.device import cpus
from pimodule.device import daemon as daemon_mod
from pimodule.device.config import parse_config
from pimodule.device.control import Note

pytestmark = [pytest.mark.jack, pytest.mark.timeout(180)]
HZ_AT_0V = 261.6256


def make_daemon(jack_server, model_dir, *, seconds, melody=None):
    cfg = parse_config(
        {
            "audio": {
                "device": jack_server.device_index(),
                "sample_rate_hz": jack_server.rate_hz,
                "block_size": jack_server.period,
            },
            "osc": {"port": 0},
            "models": {"dir": str(model_dir), "default": "voice_a"},
            "engine": {"loudness_source": "cv2", "hz_at_0v": HZ_AT_0V},
            "cv": {"backend": "simulated"},
        },
        "test",
    )
    return daemon_mod.build(cfg, record_s=seconds, melody=melody)


def start(d):
    """Run the daemon's own `run` in a thread; returns it once callbacks flow."""
    thread = threading.Thread(target=daemon_mod.run, kwargs=dict(d=d, offline=False, duration_s=None))
    thread.start()
    deadline = time.monotonic() + 20
    while d.runner.stats.n_callbacks < 10:
        assert time.monotonic() < deadline and thread.is_alive(), "the JACK stream did not start"
        time.sleep(0.02)
    assert d.runner.backend.endswith("(JACK Audio Connection Kit)")
    return thread


def osc_storm(port, stop, counter):
    from pimodule.device.io.osc import OscClient

    rng = np.random.default_rng(0)
    names = ["noise_gain_db", "harmonic_gain_db", "pitch_shift_semitones", "loudness_offset_db", "nope"]
    with OscClient("127.0.0.1", port) as c:
        while not stop.is_set() and counter[0] < 3000:
            k = counter[0] % 6
            if k == 0:
                c.send_raw(rng.bytes(int(rng.integers(1, 200))))  # garbage
            elif k == 1:
                c.send(f"/pimodule/control/{names[counter[0] % 5]}", float("nan"))
            elif k == 2:
                c.send(f"/pimodule/control/{names[counter[0] % 5]}", float(rng.uniform(-1e6, 1e6)))
            elif k == 3:
                c.send("/pimodule/gain", float(rng.uniform(-100, 30)))
            elif k == 4:
                c.send("/pimodule/control/noise_gain_db", "a string")
            else:
                c.send("/pimodule/unknown/address", 1)
            counter[0] += 1
            if counter[0] % 200 == 0:
                time.sleep(0.005)


def test_playback_under_osc_storm_and_20_model_swaps(jack_server, model_dir):
    """Six loads far enough apart to be six swaps, then a burst of fourteen that coalesce (the
    latest request wins), then a bad model that is refused: the voice before it keeps playing."""
    from pimodule.device.io.osc import OscClient

    d = make_daemon(jack_server, model_dir, seconds=60)
    thread = start(d)
    stop = threading.Event()
    sent = [0]
    storm = threading.Thread(target=osc_storm, args=(d.osc.port, stop, sent))
    try:
        with OscClient("127.0.0.1", d.osc.port) as c:
            c.request("/pimodule/status/subscribe", expect="/pimodule/status/subscribed")
            storm.start()
            for i in range(6):
                swaps = d.engine.n_swaps
                c.send("/pimodule/model/load", "voice_b" if i % 2 == 0 else "voice_a")
                deadline = time.monotonic() + 30
                while d.engine.n_swaps == swaps and time.monotonic() < deadline:
                    time.sleep(0.01)
            for i in range(14):
                c.send("/pimodule/model/load", "voice_b" if i % 2 == 0 else "voice_a")
            assert d.loader.wait_idle(120)
            # read what queued while the swaps were waited for (status at 4 Hz): a full receive
            # buffer drops the refusal's datagram (a client that reads, as Pd does, gets it)
            while c.receive(0.01) is not None:
                pass
            # renewed as a client does (the swaps above can outlast the 60 s subscription on a busy
            # machine, and the refusal is broadcast to subscribers only)
            c.request("/pimodule/status/subscribe", expect="/pimodule/status/subscribed")
            c.send("/pimodule/model/load", "bad_nan")
            c.send("/pimodule/mode", "transfer")
            c.send("/pimodule/mode", "synth")
            # read as a client does (Pd reads all the time) until the refusal arrives: the check runs
            # in a child process that takes seconds on a loaded machine, and a receive buffer left
            # unread meanwhile fills with status and drops the refusal's datagram
            errors = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not any("bad_nan" in str(e) for e in errors):
                msg = c.receive(0.5)
                if msg is not None and msg[0] == "/pimodule/error":
                    errors.append(msg[1])
            assert d.loader.wait_idle(120)
            deadline = time.monotonic()
            while d.runner.recorder.n < 2 * jack_server.rate_hz and time.monotonic() < deadline + 20:
                time.sleep(0.05)  # keep playing (and storming) for at least two seconds
            status = d.controller.status()
    finally:
        stop.set()
        if storm.is_alive():
            storm.join(10)
        d.stop_event.set()
        thread.join(20)
        d.close()
    assert not thread.is_alive()
    assert any("bad_nan" in e[1] and "NaN" in e[1] for e in errors), errors
    assert d.engine.n_swaps >= 7  # the first model, six spaced swaps, at least one from the burst
    assert d.loader.n_refused == 1 and d.engine.session.info.name in ("test-0", "test-1")  # voice_a / voice_b
    assert d.runner.stats.n_exceptions == 0
    assert sent[0] > 500 and d.osc.counters.malformed > 0
    y = d.runner.recorder.audio
    assert len(y) >= 2 * jack_server.rate_hz
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    assert np.max(np.abs(y)) > 1e-3  # and something was audible
    assert status["model"] in ("voice_a", "voice_b") and status["exceptions"] == 0


def test_played_f0_follows_the_cv(jack_server, model_dir):
    """In real time, as on the module: the CV reader polls and smooths on the wall clock, so under
    JACK freewheel (audio many times faster than real time) a loaded CI machine let the CV lag the
    notes by a quarter of a note; the melody itself runs on the audio clock either way."""
    semitones = (0, 7, 12, -5)
    note_s = 0.5
    melody = [Note(s / 12.0, note_s, True, 4.0) for s in semitones]
    d = make_daemon(jack_server, model_dir, seconds=len(melody) * note_s + 1.0, melody=melody)
    d.engine.set_control("noise_gain_db", -40.0)
    thread = start(d)
    rate = jack_server.rate_hz
    try:
        if len(cpus.available()) >= 2:  # [audio] cpus = "auto": the audio process on the last CPU
            pid = d.runner.process.proc.pid
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    allowed = next(ln for ln in f if ln.startswith("Cpus_allowed_list:")).split(":")[1].strip()
                assert allowed == str(max(cpus.available())), (tid, allowed)
        deadline = time.monotonic() + 60
        while d.runner.recorder.n < d.runner.recorder.buffer.shape[0] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        d.stop_event.set()
        thread.join(20)
        d.close()
    assert d.runner.stats.n_exceptions == 0
    y = d.runner.recorder.audio.astype(np.float64)
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    f0, periodicity = yin_f0(y, rate, hop_size=480)
    hop_s = 480 / rate
    for i, s in enumerate(semitones):
        # the second half of each note (the CV path smooths and polls on the wall clock)
        a, b = int((i + 0.5) * note_s / hop_s), int((i + 0.95) * note_s / hop_s)
        voiced = periodicity[a:b] > 0.5
        assert voiced.mean() > 0.5
        measured = np.median(f0[a:b][voiced])
        expected = HZ_AT_0V * 2 ** (s / 12)
        assert 1200 * abs(np.log2(measured / expected)) < 30, (i, measured, expected)
