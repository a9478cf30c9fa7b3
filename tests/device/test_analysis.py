"""Transfer-mode analysis off the audio thread: same frames as inline, no FFT on the caller's thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pimodule.core.features import a_weighted_loudness_db, yin_f0
from pimodule.core.streaming_features import StreamingFeatures
from pimodule.device.analysis import ThreadedAnalysis
from pimodule.device.models import load_session
from pimodule.device.ort_engine import VoiceEngine

SR = 16000


def _tone(seconds: float, f0_hz: float = 220.0, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * f0_hz * t) + 0.1 * np.sin(4 * np.pi * f0_hz * t)).astype(np.float32)


@pytest.mark.parametrize("block", [1, 65, 128, 8193])
def test_threaded_frames_equal_the_batch_features(block):
    x = _tone(1.0)
    analysis = ThreadedAnalysis(StreamingFeatures(SR, 64), capacity_samples=SR, prime_frames=1)
    analysis.reset()
    popped = []
    for start in range(0, len(x), block):
        analysis.feed(x[start : start + block])
        analysis.step()  # what the thread does, here in step with the feeding
        while analysis._out_written - analysis._out_read > 0:
            popped.append(analysis.pop())
    f0, _ = yin_f0(x, SR, hop_size=64)
    loudness = a_weighted_loudness_db(x, SR, hop_size=64)
    n = len(popped)
    assert n >= len(f0) - 13  # all but the frames still waiting for look-ahead (681 samples)
    np.testing.assert_allclose([p[0] for p in popped], f0[:n], rtol=1e-5)
    np.testing.assert_allclose([p[1] for p in popped], loudness[:n], atol=1e-3)
    assert analysis.n_underruns == 0 and analysis.n_dropped_samples == 0


def test_a_stalled_analysis_never_blocks_the_callback():
    analysis = ThreadedAnalysis(StreamingFeatures(SR, 64), capacity_samples=1000)
    analysis.reset()
    analysis.step()
    for _ in range(20):  # nobody analyses: input is dropped, frames are held
        analysis.feed(np.ones(128, np.float32))
    assert analysis.n_dropped_samples > 0
    assert analysis.pop() == (0.0, -100.0)


def test_engine_in_transfer_mode_runs_no_analysis_on_the_audio_thread(tmp_path):
    from pimodule.laptop.ddsp.export import build_test_model

    engine = VoiceEngine(device_rate_hz=48000, max_block=128, analysis_thread=True)
    engine.install(load_session(build_test_model(tmp_path / "v.onnx"), engine))
    engine.set_mode("transfer")
    threads = set()
    push = engine._features.push

    def spy(block):
        threads.add(threading.get_ident())
        return push(block)

    engine._features.push = spy
    engine.analysis.start()
    try:
        x = _tone(2.0, 220.0, 48000)
        out = np.zeros(128, np.float32)
        played = []
        for start in range(0, len(x) - 128, 128):
            engine.process(x[start : start + 128], out)
            engine.analysis.wait_idle()
            played.append(out.copy())
    finally:
        engine.analysis.stop()
    assert threads and threading.get_ident() not in threads  # FFTs ran on the analysis thread only
    y = np.concatenate(played)
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    assert engine.last_f0_hz == pytest.approx(220.0, rel=0.02)
