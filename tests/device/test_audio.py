"""AudioRunner on the simulated clock: the same callback as on a device; stats, recorder,
exceptions counted (never raised), channels, oversize blocks."""

from __future__ import annotations

import numpy as np
import pytest

from pimodule.device.audio import AudioRunner, CallbackStats, Recorder, try_realtime_priority
from pimodule.device.ort_engine import VoiceEngine


class Exploding:
    """An engine whose process raises every third call (the callback must survive it)."""

    max_block = 64

    def __init__(self):
        self.calls = 0

    def process(self, x, out, x_aux=None):
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("boom")
        out.fill(0.25)


def test_callback_survives_exceptions_and_fills_every_channel():
    engine = Exploding()
    rec = Recorder(48000, 1.0)
    runner = AudioRunner(engine, sample_rate_hz=48000, n_output_channels=3, recorder=rec, realtime_priority=False)
    out = np.full((200, 3), 9.0, np.float32)  # 200 > max_block: processed in chunks
    runner.callback(None, out, 200, None, None)
    assert engine.calls == 4 and runner.stats.n_exceptions == 1
    assert np.all(out[:, 0] == out[:, 2])
    assert set(np.unique(out)) == {0.0, 0.25}  # the failed chunk is silence
    np.testing.assert_array_equal(rec.audio, out[:, 0])


def test_offline_clock_with_input_and_recorder(tmp_path):
    engine = VoiceEngine(device_rate_hz=48000, max_block=128)
    engine.set_mode("fx")
    engine._mode = engine._requested_mode  # start in fx (pass-through) directly
    x = (0.2 * np.sin(np.arange(4800) * 0.1)).astype(np.float32)
    rec = Recorder(48000, 0.2)
    runner = AudioRunner(engine, sample_rate_hz=48000, recorder=rec)
    runner.run_offline(0.1, block_size=100, realtime=False, input_signal=x)
    np.testing.assert_array_equal(rec.audio, x)
    assert runner.backend.startswith("offline") and runner.stats.n_callbacks == 48
    s = runner.stats.summary(48000)
    assert s["callbacks"] == 48 and 0 < s["p50_us"] <= s["p99_us"] <= s["max_us"]
    rec.save(tmp_path / "r.wav")
    import soundfile

    y, rate = soundfile.read(tmp_path / "r.wav", dtype="float32")
    assert rate == 48000 and np.array_equal(y, x)


def test_stats_ring_wraps_and_summarises():
    stats = CallbackStats(n_timings=8)
    assert stats.summary(48000)["p99_us"] == 0.0
    for i in range(20):
        stats.record(1000 * (i + 1), 48)  # 1..20 µs per 1 ms block
    s = stats.summary(48000)
    assert s["callbacks"] == 20 and s["max_us"] == 20.0 and s["p50_us"] > 12.0  # only the last 8
    assert s["cpu_percent"] == pytest.approx(100 * np.mean(np.arange(13, 21)) / 1000, rel=1e-6)


def test_realtime_priority_reports_instead_of_raising():
    import threading

    result = []
    t = threading.Thread(target=lambda: result.append(try_realtime_priority()))
    t.start()
    t.join()
    assert result[0] == "fifo" or result[0].startswith(("denied", "unsupported"))


@pytest.mark.parametrize("mode", ("synth", "transfer", "fx"))
def test_steady_state_callbacks_do_not_accumulate_memory(model_dir, mode):
    import tracemalloc

    from pimodule.device.models import load_session

    engine = VoiceEngine(device_rate_hz=48000, max_block=128)
    engine.install(load_session(model_dir / "voice_a.onnx", engine))
    engine.set_mode(mode)
    runner = AudioRunner(engine, sample_rate_hz=48000, realtime_priority=False)
    indata = (0.3 * np.sin(np.arange(256) * 0.05)).reshape(128, 2).astype(np.float32)
    out = np.zeros((128, 2), np.float32)
    tracemalloc.start()
    try:
        # warm up under tracing: numpy's and the analysis' caches fill up (~4000 blocks; transfer
        # mode's knots batch 1-5 frames, whose shapes take ~11000 blocks to have all been seen)
        for _ in range(12000):
            runner.callback(indata, out, 128, None, None)
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(2000):
            runner.callback(indata, out, 128, None, None)
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert runner.stats.n_exceptions == 0
    assert end - start < 16 * 1024  # nothing grows with the number of callbacks
