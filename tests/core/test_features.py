"""Tests of pimodule.core.features: YIN f0, A-weighted loudness, streaming == batch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pimodule.core.features import (
    DEFAULT_F0_HZ,
    LOUDNESS_FLOOR_DB,
    a_weighted_loudness_db,
    a_weighting_db,
    cents,
    median_abs_cents,
    yin_f0,
)
from pimodule.core.streaming_features import StreamingFeatures

SR = 16000
HOP = 64


def _t(seconds: float, sample_rate: int = SR) -> np.ndarray:
    return np.arange(int(seconds * sample_rate)) / sample_rate


def _cents(f_hz: np.ndarray, ref_hz: np.ndarray | float) -> np.ndarray:
    return 1200.0 * np.log2(np.asarray(f_hz, dtype=np.float64) / ref_hz)


def _harmonic(f0_hz: float, t: np.ndarray, sample_rate: int = SR) -> np.ndarray:
    ks = [k for k in range(1, 20) if k * f0_hz < sample_rate / 2]
    return 0.3 * sum(np.sin(2 * np.pi * k * f0_hz * t + k) / k for k in ks)


@pytest.mark.parametrize("f0_hz", [100.0, 147.3, 261.6, 440.0, 623.0, 1000.0])
def test_sine_and_harmonic_tone_f0_within_5_cents(f0_hz: float) -> None:
    t = _t(0.5)
    for x in (0.5 * np.sin(2 * np.pi * f0_hz * t), _harmonic(f0_hz, t)):
        f0, per = yin_f0(x, SR, hop_size=HOP)
        assert f0.shape == per.shape == (len(x) // HOP,)
        inner = slice(10, -10)  # away from the zero-padded edges
        assert np.abs(_cents(f0[inner], f0_hz)).max() < 5.0
        assert per[inner].min() > 0.8


def test_other_sample_rate_and_hop() -> None:
    sr, hop = 48000, 192
    x = _harmonic(220.0, _t(0.3, sr), sr)
    f0, _ = yin_f0(x, sr, hop_size=hop)
    assert len(f0) == len(x) // hop
    assert np.abs(_cents(f0[10:-10], 220.0)).max() < 5.0


def test_vibrato_is_tracked() -> None:
    t = _t(1.0)
    depth_hz, rate_hz, centre_hz = 15.0, 5.5, 330.0
    inst_hz = centre_hz + depth_hz * np.sin(2 * np.pi * rate_hz * t)
    x = 0.5 * np.sin(2 * np.pi * np.cumsum(inst_hz) / SR)
    f0, _ = yin_f0(x, SR, hop_size=HOP)
    centres = np.arange(len(f0)) * HOP + HOP // 2
    err = _cents(f0, inst_hz[centres])[10:-10]
    assert np.median(np.abs(err)) < 10.0  # ±78 cent vibrato, smoothed by a 64 ms window
    assert np.abs(err).max() < 20.0
    assert f0[10:-10].max() - f0[10:-10].min() > 1.6 * depth_hz  # the vibrato really is seen


def test_silence_is_unvoiced_default_f0_and_floor_loudness() -> None:
    x = np.zeros(SR // 4)
    f0, per = yin_f0(x, SR)
    assert np.all(per == 0.0)
    assert np.all(f0 == DEFAULT_F0_HZ)
    assert np.all(a_weighted_loudness_db(x, SR) == LOUDNESS_FLOOR_DB)


def test_noise_has_low_periodicity_and_unvoiced_f0_is_held() -> None:
    rng = np.random.default_rng(0)
    t = _t(0.6)
    x = 0.5 * np.sin(2 * np.pi * 220.0 * t)
    x[len(x) // 2 :] = 0.2 * rng.standard_normal(len(x) - len(x) // 2)
    f0, per = yin_f0(x, SR)
    tail = slice(len(f0) // 2 + 20, None)
    assert per[tail].mean() < 0.2
    assert np.abs(_cents(f0[tail], 220.0)).max() < 25.0  # held from the last voiced frame


def test_leading_unvoiced_frames_take_first_voiced_f0() -> None:
    t = _t(0.5)
    x = np.where(t > 0.25, 0.5 * np.sin(2 * np.pi * 500.0 * t), 0.0)
    f0, per = yin_f0(x, SR)
    assert per[:10].max() == 0.0
    assert np.abs(_cents(f0[:10], 500.0)).max() < 5.0


@pytest.mark.parametrize("f0_hz", [220.0, 1000.0])
def test_loudness_plus_6db_gain_reads_plus_6db(f0_hz: float) -> None:
    x = 0.1 * _harmonic(f0_hz, _t(0.4))
    lo = a_weighted_loudness_db(x, SR)[10:-10]
    hi = a_weighted_loudness_db(x * 10 ** (6 / 20), SR)[10:-10]
    assert np.abs((hi - lo) - 6.0).max() < 0.5


def test_loudness_monotonic_in_gain_and_full_scale_1khz_near_0db() -> None:
    x = np.sin(2 * np.pi * 1000.0 * _t(0.3))
    levels = [float(np.mean(a_weighted_loudness_db(g * x, SR)[10:-10])) for g in (0.01, 0.1, 0.5, 1.0)]
    assert levels == sorted(levels)
    assert abs(levels[-1]) < 0.5


def test_a_weighting_lower_at_50hz_than_1khz() -> None:
    w = a_weighting_db(np.array([50.0, 1000.0]))
    assert w[0] < w[1] - 20.0
    assert abs(w[1]) < 0.1
    t = _t(0.4)
    low = a_weighted_loudness_db(np.sin(2 * np.pi * 50.0 * t), SR)[10:-10].mean()
    mid = a_weighted_loudness_db(np.sin(2 * np.pi * 1000.0 * t), SR)[10:-10].mean()
    assert low < mid - 20.0


def test_outputs_finite_on_extreme_inputs() -> None:
    rng = np.random.default_rng(3)
    for x in (np.ones(4000), rng.standard_normal(4000) * 1e3, np.full(4000, 1e-20), np.zeros(63)):
        f0, per = yin_f0(x, SR)
        loud = a_weighted_loudness_db(x, SR)
        for arr in (f0, per, loud):
            assert np.all(np.isfinite(arr))
        assert len(f0) == len(per) == len(loud) == len(x) // HOP


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError):
        yin_f0(np.zeros((2, 100)), SR)
    with pytest.raises(ValueError):
        yin_f0(np.zeros(1000), SR, fmin_hz=500.0, fmax_hz=100.0)
    with pytest.raises(ValueError):
        a_weighted_loudness_db(np.zeros(1000), SR, hop_size=0)


def _test_signal() -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(int(0.7 * SR) + 17) / SR
    x = 0.4 * np.sin(2 * np.pi * (300 * t + 20 * np.sin(2 * np.pi * 5 * t))) * (t > 0.1)
    return x + 0.02 * rng.standard_normal(len(t)) * (t > 0.5)


def _stream_in_blocks(stream: StreamingFeatures, x: np.ndarray, block_size: int, early: int = 0):
    """Push ``x`` block by block, then flush: every frame whose look-ahead has arrived is out
    after each push, and at most ``early`` frames more; returns the concatenated outputs."""
    outs = []
    n_in = n_out = 0
    for i in range(0, len(x), block_size):
        block = x[i : i + block_size]
        outs.append(stream.push(block))
        n_in += len(block)
        n_out += len(outs[-1][0])
        due = max(0, (n_in - stream.latency_samples) // HOP)
        assert due <= n_out <= due + early
    outs.append(stream.flush())
    return tuple(np.concatenate([o[k] for o in outs]) for k in range(3))


@pytest.mark.parametrize("block_size", [1, 64, 65, 128, 8193])
def test_streaming_equals_batch(block_size: int) -> None:
    x = _test_signal()
    f0, per = yin_f0(x, SR, hop_size=HOP)
    loud = a_weighted_loudness_db(x, SR, hop_size=HOP)
    s_f0, s_per, s_loud = _stream_in_blocks(StreamingFeatures(SR, HOP), x, block_size)
    assert len(s_f0) == len(f0)
    first_voiced = int(np.argmax(per > 0))
    np.testing.assert_allclose(s_f0[first_voiced:], f0[first_voiced:], atol=1e-3)
    np.testing.assert_allclose(s_per, per, atol=1e-5)
    np.testing.assert_allclose(s_loud, loud, atol=1e-3)
    # before any voiced frame the stream (which cannot look ahead) uses the default
    assert np.all(s_f0[:first_voiced] == DEFAULT_F0_HZ)


def test_streaming_latency_is_bounded_and_reset_works() -> None:
    stream = StreamingFeatures(SR, HOP)
    assert 0 < stream.latency_samples < 1024
    x = _test_signal()[:4000]
    a = stream.push(x)
    stream.reset()
    b = stream.push(x)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_features_module_imports_no_torch() -> None:
    code = "import sys, pimodule.core.features; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("block_size", [65, 8193])
def test_streaming_equals_batch_other_rate_and_range(block_size: int) -> None:
    sr, hop = 48000, 192
    x = _harmonic(180.0, np.arange(int(0.4 * sr)) / sr, sr)
    f0, per = yin_f0(x, sr, hop_size=hop, fmin_hz=100.0, fmax_hz=1500.0)
    loud = a_weighted_loudness_db(x, sr, hop_size=hop)
    stream = StreamingFeatures(sr, hop, fmin_hz=100.0, fmax_hz=1500.0)
    outs = [stream.push(x[i : i + block_size]) for i in range(0, len(x), block_size)]
    outs.append(stream.flush())
    for k, ref in enumerate((f0, per, loud)):
        np.testing.assert_allclose(np.concatenate([o[k] for o in outs]), ref, atol=1e-3)


def test_cents_and_median_abs_cents() -> None:
    assert cents(880.0, 440.0) == pytest.approx(1200.0)
    assert np.isnan(cents(0.0, 440.0))
    ref = np.full(10, 440.0)
    est = ref * 2 ** (np.array([10, -10, 10, 1000, 10, -10, 10, 10, -10, 10]) / 1200)
    per = np.ones(10)
    per[3] = 0.0  # the octave-ish outlier is on an unvoiced frame: ignored
    assert median_abs_cents(est, ref, per) == pytest.approx(10.0)
    assert np.isnan(median_abs_cents(est, ref, np.zeros(10)))


@pytest.mark.parametrize("f0_hz", [1900.0, 2400.0, 2637.0])
def test_high_notes_no_octave_error(f0_hz: float) -> None:
    # violin's top notes at 16 kHz: periods of 6-8 samples, harmonics up to Nyquist
    x = _harmonic(f0_hz, _t(0.3))
    f0, per = yin_f0(x, SR, fmin_hz=150.0, fmax_hz=3200.0)
    assert np.abs(_cents(f0[10:-10], f0_hz)).max() < 10.0
    assert per[10:-10].min() > 0.8


def test_oversample_choice_and_agreement() -> None:
    from pimodule.core.features import default_oversample

    assert default_oversample(16000, 2000.0) == 2
    assert default_oversample(48000, 2000.0) == 1
    x = _harmonic(300.0, _t(0.3))
    f1, _ = yin_f0(x, SR, oversample=1)
    f2, _ = yin_f0(x, SR, oversample=2)
    assert np.abs(_cents(f1[10:-10], f2[10:-10])).max() < 2.0
    with pytest.raises(ValueError):
        yin_f0(x, SR, oversample=-1)


@pytest.mark.parametrize("block_size", [1, 64, 65, 128, 8193])
def test_streaming_with_knots(block_size: int) -> None:
    """f0 at every 4th frame, loudness at every 2nd: the batch values there (f0 where voiced),
    straight lines between, and no frame later than the stated latency."""
    x = _test_signal()
    f0, per = yin_f0(x, SR, hop_size=HOP)
    loud = a_weighted_loudness_db(x, SR, hop_size=HOP)
    stream = StreamingFeatures(SR, HOP, f0_every=4, loudness_every=2)
    assert stream.latency_samples == StreamingFeatures(SR, HOP).latency_samples + 3 * HOP
    s_f0, s_per, s_loud = _stream_in_blocks(stream, x, block_size, early=3)  # a knot brings 4 frames
    assert len(s_f0) == len(f0)
    voiced = per[::4] > 0
    np.testing.assert_allclose(s_f0[::4][voiced], f0[::4][voiced], atol=1e-3)
    np.testing.assert_allclose(s_per[::4], per[::4], atol=1e-5)
    np.testing.assert_allclose(s_loud[::2], loud[::2], atol=1e-3)
    np.testing.assert_allclose(s_loud[1:-1:2], (s_loud[:-2:2] + s_loud[2::2]) / 2, atol=1e-3)
    mid = np.log2(s_f0[2:-2:4])
    np.testing.assert_allclose(mid, (np.log2(s_f0[:-4:4]) + np.log2(s_f0[4::4])) / 2, atol=1e-5)


@pytest.mark.parametrize("every", [(0, 1), (4, 3), (2, 4)])
def test_knot_spacing_must_divide(every) -> None:
    with pytest.raises(ValueError, match="dividing"):
        StreamingFeatures(SR, HOP, f0_every=every[0], loudness_every=every[1])
