"""The callback's real FFTs (:mod:`pimodule.device.rt.fft`) against numpy's."""

import numpy as np
import pytest

from pimodule.device.rt import fft

MAX_N = 2048


@pytest.mark.parametrize("n", [4, 8, 64, 512, 2048])
def test_rfft_and_irfft_match_numpy(n):
    cos, sin, perms = fft.tables(MAX_N)
    x = np.random.default_rng(n).standard_normal(n)
    h = n // 2
    rev = perms.get(h, np.zeros(1, np.int64))
    re, im = np.zeros(h + 1), np.zeros(h + 1)
    wre, wim = np.zeros(h), np.zeros(h)
    fft.rfft(x, n, re, im, wre, wim, rev, cos, sin, MAX_N)
    ref = np.fft.rfft(x)
    np.testing.assert_allclose(re + 1j * im, ref, atol=1e-9 * n)
    back = np.zeros(n)
    fft.irfft(re, im, n, back, wre, wim, rev, cos, sin, MAX_N)
    np.testing.assert_allclose(back, x, atol=1e-12 * n)


def test_complex_fft_inverse_round_trip():
    cos, sin, perms = fft.tables(MAX_N)
    m = 256
    rng = np.random.default_rng(1)
    re, im = rng.standard_normal(m), rng.standard_normal(m)
    z = re + 1j * im
    fft.cfft(re, im, m, perms[m], cos, sin, MAX_N, False)
    np.testing.assert_allclose(re + 1j * im, np.fft.fft(z), atol=1e-10)
    fft.cfft(re, im, m, perms[m], cos, sin, MAX_N, True)
    np.testing.assert_allclose((re + 1j * im) / m, z, atol=1e-12)
