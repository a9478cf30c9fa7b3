"""OutputGuard and Crossfade: bounded, finite, click-free, block-size independent."""

import numpy as np
import pytest

from pimodule.device.guard import GAIN_RANGE_DB, Crossfade, OutputGuard

BLOCK_SIZES = (1, 64, 65, 128, 8193)
RATE_HZ = 48000


def _run(guard, x, block):
    y = x.astype(np.float32).copy()
    for i in range(0, len(y), block):
        guard.process(y[i : i + block])
    return y


@pytest.mark.parametrize("block", BLOCK_SIZES)
def test_garbage_becomes_finite_and_bounded(block):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20000) * 50
    x[rng.integers(0, len(x), 300)] = np.nan
    x[rng.integers(0, len(x), 30)] = np.inf
    x[rng.integers(0, len(x), 30)] = -np.inf
    x[:10] = 3e38
    g = OutputGuard(RATE_HZ, max(block, 64))
    y = _run(g, x, block)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= g.ceiling
    assert g.n_nonfinite_blocks > 0


def test_quiet_signal_passes_unchanged():
    x = (0.3 * np.sin(np.arange(5000) * 0.05)).astype(np.float32)
    y = _run(OutputGuard(RATE_HZ, 128), x, 128)
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("block", (1, 64, 65, 128))
def test_mute_and_gain_ramp_without_clicks(block):
    g = OutputGuard(RATE_HZ, 128)
    dc = np.full(RATE_HZ // 4, 0.5, np.float32)
    y1 = _run(g, dc, block)
    g.set_mute(True)
    y2 = _run(g, dc, block)
    g.set_mute(False)
    g.set_gain_db(-6.0)
    y3 = _run(g, dc, block)
    y = np.concatenate([y1, y2, y3])
    assert np.max(np.abs(np.diff(y))) < 0.01  # no step: every change is a ramp
    assert abs(y2[-1]) < 1e-3  # muted after the ramp
    assert y3[-1] == pytest.approx(0.5 * 10 ** (-6 / 20), rel=1e-3)


def test_limiter_reduces_loud_signal_smoothly():
    t = np.arange(RATE_HZ // 2)
    x = (4.0 * np.sin(2 * np.pi * 220 * t / RATE_HZ)).astype(np.float32)
    g = OutputGuard(RATE_HZ, 128)
    y = _run(g, x, 128)
    assert np.max(np.abs(y)) <= g.ceiling
    # after the first blocks it limits by gain, not by clipping: the wave stays a sine
    tail = y[4800:]
    ref = x[4800:] / np.max(np.abs(x)) * np.max(np.abs(tail))
    assert np.max(np.abs(tail - ref)) < 0.05


def test_gain_errors_and_clamping():
    g = OutputGuard(RATE_HZ, 64)
    assert g.set_gain_db(100.0) == GAIN_RANGE_DB[1]
    assert g.set_gain_db(-1000.0) == GAIN_RANGE_DB[0]
    with pytest.raises(ValueError):
        g.set_gain_db(float("nan"))
    with pytest.raises(ValueError):
        OutputGuard(RATE_HZ, 64, ceiling=1.5)


@pytest.mark.parametrize("block", BLOCK_SIZES)
def test_crossfade_is_block_size_independent(block):
    n = 480
    cf = Crossfade(n)
    old = np.ones(10000, np.float32)
    new = np.zeros(10000, np.float32)
    cf.start()
    for i in range(0, len(new), block):
        cf.mix(old[i : i + block], new[i : i + block])
    assert not cf.active
    assert np.all(np.diff(new[:n]) <= 0)  # monotone from old to new
    assert new[0] > 0.99 and new[n - 1] == 0.0 and np.all(new[n:] == 0.0)
    ref = np.zeros(10000, np.float32)
    cf.start()
    cf.mix(old, ref)
    np.testing.assert_array_equal(new, ref)


@pytest.mark.parametrize("gain_db", (12.0, -6.0))
def test_values_the_gain_overflows_become_finite(gain_db):
    g = OutputGuard(RATE_HZ, 128)
    g.set_gain_db(gain_db)
    x = np.full(1280, 3e38, np.float32)
    x[::7] = -3e38
    y = _run(g, x, 128)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= g.ceiling
