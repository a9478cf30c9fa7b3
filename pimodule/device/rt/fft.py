"""Real FFTs for the callback's analysis, compiled and allocation-free (numba has no np.fft).

Radix-2, in place on separate real and imaginary float64 arrays, with precomputed bit-reversal
and twiddle tables (:func:`tables`). A real transform of ``n`` points is a complex one of
``n / 2`` points and a split step (the standard packing of even and odd samples), so the analysis
pays for half-size transforms. Results equal numpy's ``rfft``/``irfft`` (same scaling) to
rounding (tests/device/rt/test_fft.py).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from pimodule.device.rt.dsp import OPTS


def tables(max_n: int) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """cos and sin of 2πk/max_n for k = 0..max_n/2, and bit-reversal permutations of every
    power of two up to max_n/2 (the complex sizes the real transforms use)."""
    k = np.arange(max_n // 2 + 1)
    cos = np.cos(2 * np.pi * k / max_n)
    sin = np.sin(2 * np.pi * k / max_n)
    perms = {}
    m = 2
    while m <= max_n // 2:
        bits = int(math.log2(m))
        idx = np.arange(m)
        rev = np.zeros(m, np.int64)
        for b in range(bits):
            rev |= ((idx >> b) & 1) << (bits - 1 - b)
        perms[m] = rev
        m *= 2
    return cos, sin, perms


@numba.njit(**OPTS)
def cfft(re, im, m, rev, cos, sin, max_n, inverse):
    """In-place complex FFT of ``m`` points (``inverse``: e^{+i}, unscaled). Indices are unsigned
    (no sign test per access) and each stage walks its butterflies in memory order; the
    arithmetic of every butterfly is the textbook one, so results do not depend on the order."""
    mu = np.uint64(m)
    for i in range(mu):
        j = np.uint64(rev[i])
        if j > i:
            re[i], re[j] = re[j], re[i]
            im[i], im[j] = im[j], im[i]
    sign = 1.0 if inverse else -1.0
    one = np.uint64(1)
    for a in range(0, mu, np.uint64(2)):  # size 2: the twiddle is 1
        b = a + one
        tr, ti = re[b], im[b]
        re[b] = re[a] - tr
        im[b] = im[a] - ti
        re[a] += tr
        im[a] += ti
    size = np.uint64(4)
    mx = np.uint64(max_n)
    while size <= mu:
        half = size // np.uint64(2)
        stride = mx // size  # twiddle e^{-2πi j/size} = table[j * max_n / size]
        for start in range(0, mu, size):
            t = np.uint64(0)
            for j in range(half):
                wr = cos[t]
                wi = sign * sin[t]
                t += stride
                a = start + j
                b = a + half
                tr = wr * re[b] - wi * im[b]
                ti = wr * im[b] + wi * re[b]
                re[b] = re[a] - tr
                im[b] = im[a] - ti
                re[a] += tr
                im[a] += ti
        size *= np.uint64(2)


@numba.njit(**OPTS)
def rfft(x, n, out_re, out_im, w_re, w_im, rev, cos, sin, max_n):
    """``np.fft.rfft(x[:n])`` into ``out_re/out_im[: n/2 + 1]`` (``w_re``/``w_im``: n/2 scratch)."""
    h = n // 2
    for k in range(h):
        w_re[k] = x[2 * k]
        w_im[k] = x[2 * k + 1]
    cfft(w_re, w_im, h, rev, cos, sin, max_n, False)
    stride = max_n // n
    for k in range(h + 1):
        a = k % h
        b = (h - k) % h
        zr, zi = w_re[a], w_im[a]
        cr, ci = w_re[b], -w_im[b]  # conj(Z[h - k])
        er, ei = 0.5 * (zr + cr), 0.5 * (zi + ci)
        # O = (Z - conj) / (2i) = (zi - ci)/2 - i (zr - cr)/2
        orr, oi = 0.5 * (zi - ci), -0.5 * (zr - cr)
        c, s = cos[k * stride], -sin[k * stride]  # e^{-2πik/n}
        out_re[k] = er + c * orr - s * oi
        out_im[k] = ei + c * oi + s * orr


@numba.njit(**OPTS)
def irfft(in_re, in_im, n, out, w_re, w_im, rev, cos, sin, max_n):
    """``np.fft.irfft(spec, n)`` of ``in_re/in_im[: n/2 + 1]`` into ``out[:n]``."""
    h = n // 2
    stride = max_n // n
    for k in range(h):
        xr, xi = in_re[k], (in_im[k] if k > 0 else 0.0)  # DC and Nyquist taken as real (as numpy)
        cr, ci = in_re[h - k], (-in_im[h - k] if k > 0 else 0.0)  # conj(X[h - k])
        er, ei = 0.5 * (xr + cr), 0.5 * (xi + ci)
        dr, di = 0.5 * (xr - cr), 0.5 * (xi - ci)
        c, s = cos[k * stride], sin[k * stride]  # e^{+2πik/n}
        orr, oi = dr * c - di * s, dr * s + di * c
        w_re[k] = er - oi  # Z = E + iO
        w_im[k] = ei + orr
    cfft(w_re, w_im, h, rev, cos, sin, max_n, True)
    scale = 1.0 / h
    for k in range(h):
        out[2 * k] = w_re[k] * scale
        out[2 * k + 1] = w_im[k] * scale
