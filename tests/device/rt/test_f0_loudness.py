"""Transfer mode's compiled analysis against the tracker it mirrors (the device's
StreamingFeatures with knots, after the same 48 -> 16 kHz resampler), frame by frame, at any
block size; the knots equal to the every-frame analysis."""

from __future__ import annotations

import numpy as np
import pytest

from pimodule.core.streaming_features import StreamingFeatures
from pimodule.device.analysis import DEVICE_EVERY, device_features
from pimodule.device.config import EngineConfig
from pimodule.device.resample import StreamingResampler
from pimodule.device.rt import f0_loudness, setup
from pimodule.device.rt import shared as L

RATE = 48000


def _signal(seconds: float = 1.2) -> np.ndarray:
    """A sliding tone with vibrato, a gap, then a noisy low note: voiced, unvoiced and back."""
    t = np.arange(int(seconds * RATE)) / RATE
    f = np.where(t < 0.5, 220.0 * 2 ** (2 * t), 98.0) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / RATE) * ((t < 0.55) | (t > 0.7))
    return (x + 0.01 * np.random.default_rng(3).standard_normal(len(t)) * (t > 0.9)).astype(np.float32)


def _compiled(x: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Every frame the compiled analysis queues for ``x`` (device rate), fed ``block_size`` at a
    time through a ring as the callback feeds it (in chunks of at most I_MAX_CHUNK, as the
    callback cuts long blocks); and its look-ahead."""
    block = setup.create_block(L.Sizes(device_rate_hz=RATE))
    try:
        setup.write_params(block, EngineConfig(mode="transfer"))
        lookahead = f0_loudness.configure(block)
        ring = np.zeros(4096, np.float32)
        f0, ld = [], []
        written = 0
        while written < len(x):
            n = min(block_size, len(x) - written, int(block.ih[L.I_MAX_CHUNK]))
            for i in range(n):
                ring[(written + i) % ring.shape[0]] = x[written + i]
            f0_loudness.feed(block.ih, block.dh, block.fh, ring, written, n)
            written += n
            a = block.buf("I_ANA")
            while a[f0_loudness.A_QR] < a[f0_loudness.A_QW]:
                u, v = f0_loudness.pop(block.ih, block.dh, block.fh)
                f0.append(u)
                ld.append(v)
        return np.array(f0[lookahead:]), np.array(ld[lookahead:]), lookahead
    finally:
        block.close()


def _python(x: np.ndarray, features: StreamingFeatures) -> tuple[np.ndarray, np.ndarray]:
    down = StreamingResampler(RATE, 16000, max_block_in=len(x))
    y = np.zeros(down.max_out(len(x)), np.float32)
    f0, _per, ld = features.push(y[: down.process(x, y)])
    return f0.astype(np.float64), ld.astype(np.float64)


@pytest.mark.parametrize("block_size", [1, 64, 65, 128, 8193])
def test_compiled_analysis_equals_the_tracker(block_size):
    x = _signal(0.4 if block_size == 1 else 1.2)
    f0, ld, lookahead = _compiled(x, block_size)
    ref_f0, ref_ld = _python(x, device_features(16000, 64))
    n = min(len(f0), len(ref_f0))
    assert n > 0.3 * 16000 / 64 - 20 and abs(len(f0) - len(ref_f0)) <= DEVICE_EVERY[0]
    np.testing.assert_allclose(f0[:n], ref_f0[:n], rtol=1e-6)
    np.testing.assert_allclose(ld[:n], ref_ld[:n], atol=1e-4)
    assert lookahead * 64 >= device_features(16000, 64).latency_samples


def test_knots_are_the_every_frame_analysis_and_lines_between():
    x = _signal()
    every_f0, every_ld = DEVICE_EVERY
    f0, ld = _python(x, device_features(16000, 64))
    all_f0, all_ld = _python(x, StreamingFeatures(16000, 64))
    n = min(len(f0), len(all_f0)) // every_f0 * every_f0
    np.testing.assert_array_equal(ld[:n:every_ld], all_ld[:n:every_ld])
    voiced = np.abs(all_f0[:n:every_f0] - f0[:n:every_f0]) == 0
    assert voiced.mean() > 0.8  # the knots on held unvoiced frames may hold another f0
    # between knots: on the line (log f0), so within the knots' range
    for k in range(0, n - every_f0, every_f0):
        lo, hi = sorted((f0[k], f0[k + every_f0]))
        assert np.all((f0[k : k + every_f0] >= lo * (1 - 1e-6)) & (f0[k : k + every_f0] <= hi * (1 + 1e-6)))
        mid = np.log2(f0[k + every_f0 // 2])
        assert mid == pytest.approx((np.log2(f0[k]) + np.log2(f0[k + every_f0])) / 2, abs=1e-6)
