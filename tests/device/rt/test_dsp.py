"""The callback's vectorised checks: the guard's peak over float32 bit patterns and the finite
test of a voice's state, against numpy on signals with every kind of non-finite value."""

import numpy as np
import pytest

from pimodule.device.rt import dsp

SPECIALS = {
    "nan": np.float32(np.nan),
    "-nan": np.uint32(0xFFC00000).view(np.float32),
    "inf": np.float32(np.inf),
    "-inf": np.float32(-np.inf),
    "payload-nan": np.uint32(0x7F800001).view(np.float32),
}


def _signal(n, seed, scale):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) * scale).astype(np.float32)


@pytest.mark.parametrize("n", [1, 3, 64, 65, 128, 8193])
@pytest.mark.parametrize("scale", [1e-40, 1e-3, 1.0, 1e30])
def test_the_peak_of_finite_samples_is_numpys(n, scale):
    x = _signal(n, n, scale)
    expected = float(np.max(np.abs(x)))
    peak, bad = dsp._peak(x, n)
    assert not bad and peak == expected


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_peak_sees_the_largest_magnitude_of_either_sign(sign):
    x = np.array([0.25, -0.5, 0.75, -0.0], np.float32) * np.float32(sign)
    x[1] *= 2.0  # |x[1]| = 1.0, the other sign
    assert dsp._peak(x, 4) == (1.0, False)


@pytest.mark.parametrize("kind", sorted(SPECIALS))
@pytest.mark.parametrize("where", [0, 31, 64])
def test_non_finite_samples_are_silenced_and_excluded_from_the_peak(kind, where):
    x = _signal(65, where, 0.5)
    finite_peak = float(np.max(np.abs(np.delete(x, where))))
    x[where] = SPECIALS[kind]
    peak, bad = dsp._peak(x, 65)
    assert bad and x[where] == 0.0 and peak == finite_peak and np.all(np.isfinite(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", sorted(SPECIALS))
@pytest.mark.parametrize("where", [0, 1, 100, 835])
def test_all_finite_finds_any_non_finite_value(dtype, kind, where):
    x = _signal(836, where, 1e3).astype(dtype)
    assert dsp.all_finite(x, 836)
    with np.errstate(invalid="ignore"):
        x[where] = SPECIALS[kind]
    assert not dsp.all_finite(x, 836)
    assert dsp.all_finite(x, where)  # only what comes before it is looked at
    assert dsp.all_finite(x, 0)


def test_the_guard_keeps_a_burst_of_garbage_finite_bounded_and_counted():
    x = _signal(128, 7, 4.0)
    x[5], x[70] = SPECIALS["-nan"], SPECIALS["inf"]
    gain_state = np.array([1.0, 1.0])
    counters = np.zeros(2, np.int64)
    dsp.guard(x, 128, gain_state, np.array([1.0, 100.0, 1000.0, 0.99]), counters)
    assert np.all(np.isfinite(x)) and np.max(np.abs(x)) <= np.float32(0.99)
    assert list(counters) == [1, 1] and gain_state[1] < 1.0


@pytest.mark.parametrize("hop", [1, 64, 65])
@pytest.mark.parametrize("n_taps", [21, 22, 23])  # three taps per pass, then the rest one by one
def test_the_phase_major_upsampler_matches_the_polyphase_one_across_the_rings_end(hop, n_taps):
    rng = np.random.default_rng(hop)
    taps = rng.standard_normal(3 * n_taps).astype(np.float32)
    rings, states, bufs = [], [], []
    for _ in range(2):
        rings.append(np.zeros(1024, np.float32))
        states.append(np.array([n_taps - 1, 0, 0, 1], np.int64))
        bufs.append(np.zeros(n_taps + 2 * max(hop, n_taps), np.float32))
    acc = np.zeros(3 * hop + 1, np.float32)
    w_poly = w_fast = 0
    for _frame in range(1500 // hop + 7):  # the ring wraps several times, at every offset
        x = rng.standard_normal(hop).astype(np.float32)
        k = dsp.polyphase(taps, 3, n_taps, bufs[0], 0, x, states[0], acc)
        w_poly = dsp.ring_write(rings[0], w_poly, acc, k)
        w_fast = dsp.upsample3(taps, n_taps, bufs[1], x, states[1], acc, rings[1], w_fast)
        assert w_fast == w_poly and list(states[1]) == list(states[0])
        np.testing.assert_allclose(rings[1], rings[0], rtol=1e-5, atol=1e-5)
