"""StreamingResampler: block-by-block == whole-signal reference, passband accuracy, rejection."""

import numpy as np
import pytest
from scipy.signal import resample_poly, upfirdn

from pimodule.device.resample import StreamingResampler

BLOCK_SIZES = (1, 64, 65, 128, 8193)
RATIOS = ((16000, 48000), (48000, 16000), (44100, 48000), (24000, 16000))


def _stream(rs: StreamingResampler, x: np.ndarray, block: int) -> np.ndarray:
    out = np.zeros(rs.max_out(len(x)) + block, np.float32)
    n = 0
    for i in range(0, len(x), block):
        chunk = x[i : i + block]
        assert rs.n_out_for(len(chunk)) <= rs.max_out(len(chunk))
        n += rs.process(chunk, out[n:])
    return out[:n]


@pytest.mark.parametrize("rates", RATIOS)
@pytest.mark.parametrize("block", BLOCK_SIZES)
def test_blocks_equal_whole_signal_upfirdn(rates, block):
    x = np.random.default_rng(1).standard_normal(9000).astype(np.float32)
    rs = StreamingResampler(*rates, max_block_in=64)
    y = _stream(rs, x, block)
    assert len(y) == -(-len(x) * rs.up // rs.down)
    ref = upfirdn(rs.taps, x.astype(np.float64), rs.up, rs.down)[: len(y)]
    np.testing.assert_allclose(y, ref, atol=2e-6)


@pytest.mark.parametrize("rates", RATIOS)
def test_equals_resample_poly_shifted_by_stated_latency(rates):
    x = np.random.default_rng(2).standard_normal(4000).astype(np.float32)
    rs = StreamingResampler(*rates, max_block_in=128)
    y = _stream(rs, x, 128)
    ref = resample_poly(x.astype(np.float64), rs.up, rs.down, window=rs.taps / rs.up)  # it scales by up
    lat = rs.latency_out_samples
    n = min(len(ref), len(y) - lat)
    np.testing.assert_allclose(y[lat : lat + n], ref[:n], atol=2e-6)


def test_reset_restarts_the_stream():
    x = np.random.default_rng(3).standard_normal(500).astype(np.float32)
    rs = StreamingResampler(16000, 48000, max_block_in=64)
    first = _stream(rs, x, 64).copy()
    rs.reset()
    np.testing.assert_array_equal(_stream(rs, x, 64), first)


def _tone(freq_hz, rate_hz, n):
    t = np.arange(n) / rate_hz
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _level_db(y, freq_hz, rate_hz):
    """Amplitude of one frequency component (windowed DFT at that exact frequency), in dB."""
    w = np.hanning(len(y))
    t = np.arange(len(y)) / rate_hz
    c = np.abs(np.sum(y * w * np.exp(-2j * np.pi * freq_hz * t))) * 2 / np.sum(w)
    return 20 * np.log10(c + 1e-12)


@pytest.mark.parametrize("freq_hz", (100.0, 1000.0, 5000.0))
def test_passband_sine_up_16k_to_48k(freq_hz):
    rs = StreamingResampler(16000, 48000, max_block_in=64)
    y = _stream(rs, _tone(freq_hz, 16000, 16000), 64)[2000:]
    expected = _tone(freq_hz, 48000, len(y) + 2000 + rs.latency_out_samples)
    expected = expected[2000 - rs.latency_out_samples : 2000 - rs.latency_out_samples + len(y)]
    assert np.max(np.abs(y - expected)) < 0.5 * 10 ** (-40 / 20)  # error 40 dB below the tone
    # images of the tone around 16 kHz and 32 kHz are rejected
    for image_hz in (16000 - freq_hz, 16000 + freq_hz):
        assert _level_db(y, image_hz, 48000) < _level_db(y, freq_hz, 48000) - 40


def test_alias_rejection_down_48k_to_16k():
    rs = StreamingResampler(48000, 16000, max_block_in=128)
    y = _stream(rs, _tone(12000.0, 48000, 48000), 128)[200:]
    # 12 kHz would alias to 4 kHz: it must be far below the input level (0.5 -> -6 dB)
    assert _level_db(y, 4000.0, 16000) < -6 - 40
    y_pass = _stream(StreamingResampler(48000, 16000), _tone(1000.0, 48000, 48000), 128)[200:]
    assert abs(_level_db(y_pass, 1000.0, 16000) - 20 * np.log10(0.5)) < 0.1


def test_identity_ratio_is_a_copy_with_zero_latency():
    rs = StreamingResampler(48000, 48000)
    x = np.random.default_rng(4).standard_normal(300).astype(np.float32)
    assert rs.latency_out_samples == 0
    np.testing.assert_array_equal(_stream(rs, x, 65), x)


def test_errors():
    with pytest.raises(ValueError):
        StreamingResampler(0, 48000)
    rs = StreamingResampler(16000, 48000)
    with pytest.raises(ValueError, match="room"):
        rs.process(np.zeros(64, np.float32), np.zeros(10, np.float32))


def test_non_contiguous_output_buffer():
    x = np.random.default_rng(5).standard_normal(256).astype(np.float32)
    ref = _stream(StreamingResampler(16000, 48000, max_block_in=64), x, 64)
    rs = StreamingResampler(16000, 48000, max_block_in=64)
    wide = np.zeros((len(ref) + 8, 2), np.float32)
    n = 0
    for i in range(0, len(x), 64):
        n += rs.process(x[i : i + 64], wide[n:, 1])  # a strided column
    np.testing.assert_allclose(wide[:n, 1], ref, atol=1e-6)  # the general path: same values
