"""Real FFTs for the callback's analysis, compiled and allocation-free (numba has no np.fft).

Radix-2, in place on separate real and imaginary float64 arrays, with precomputed bit-reversal
and twiddle tables (:func:`tables`). A real transform of ``n`` points is a complex one of
``n / 2`` points and a split step (the standard packing of even and odd samples), so the analysis
pays for half-size transforms. Results equal numpy's ``rfft``/``irfft`` (same scaling) to
rounding (tests/device/rt/test_fft.py).

The twiddle tables hold ``cos``/``sin`` of 2πk/max_n (k = 0..max_n/2) followed by each
butterfly stage's twiddles one after another (the stage of half-size ``h`` at ``max_n/2 + h``,
``h`` entries, cos/sin of πj/h). A stage then reads its twiddles, its upper and its lower halves
with unit stride, which the compiler turns into vector code (two float64 lanes on NEON), and so
does the real transform's split step (the twiddles of an ``n``-point split are the stage table of
half-size ``n/2``). The real transforms' packing writes straight into bit-reversed order. An
``rfft`` and ``irfft`` of 2048 points: 349 k aarch64 instructions with the twiddles read with a
stride and a separate permutation pass, 172 k now (counted under emulation, cortex-a72).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from pimodule.device.rt.dsp import OPTS


def table_size(max_n: int) -> int:
    """Length of the ``cos`` and ``sin`` tables for transforms of up to ``max_n`` points."""
    return max_n + 1


def tables(max_n: int) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """cos and sin of 2πk/max_n for k = 0..max_n/2 then every stage's twiddles (the module's
    text), and bit-reversal permutations of every power of two up to max_n/2 (the complex sizes
    the real transforms use)."""
    k = np.arange(max_n // 2 + 1)
    cos = np.zeros(table_size(max_n))
    sin = np.zeros(table_size(max_n))
    cos[: k.shape[0]] = np.cos(2 * np.pi * k / max_n)
    sin[: k.shape[0]] = np.sin(2 * np.pi * k / max_n)
    h = 1
    while 2 * h <= max_n // 2:  # stages of the complex transforms, up to max_n/2 points
        j = np.arange(h)
        cos[max_n // 2 + h : max_n // 2 + 2 * h] = cos[j * (max_n // (2 * h))]
        sin[max_n // 2 + h : max_n // 2 + 2 * h] = sin[j * (max_n // (2 * h))]
        h *= 2
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
    _stages(re, im, mu, cos, sin, max_n, inverse)


@numba.njit(**OPTS)
def _stages(re, im, mu, cos, sin, max_n, inverse):
    """The butterflies of :func:`cfft` on input already in bit-reversed order."""
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
    tw0 = np.uint64(max_n // 2)
    while size <= mu:
        half = size // np.uint64(2)
        _stage(re, im, mu, half, cos, sin, tw0 + half, sign)
        size *= np.uint64(2)


@numba.njit(**OPTS)
def _stage(re, im, mu, half, cos, sin, tw, sign):
    """One radix-2 stage: butterflies of span ``half``, twiddles ``cos/sin[tw + j]``. Short spans
    loop over the twiddles outside (each read once); long ones inside, in vector code."""
    size = half + half
    if half < np.uint64(16):
        for j in range(half):
            wr = cos[tw + j]
            wi = sign * sin[tw + j]
            for a in range(j, mu, size):
                _butterfly(re, im, a, a + half, wr, wi)
        return
    for start in range(0, mu, size):
        for j in range(half):
            _butterfly(re, im, start + j, start + j + half, cos[tw + j], sign * sin[tw + j])


@numba.njit(inline="always", **OPTS)
def _butterfly(re, im, a, b, wr, wi):
    br, bi = re[b], im[b]
    tr = wr * br - wi * bi
    ti = wr * bi + wi * br
    ar, ai = re[a], im[a]
    re[b] = ar - tr
    im[b] = ai - ti
    re[a] = ar + tr
    im[a] = ai + ti


@numba.njit(**OPTS)
def rfft(x, n, out_re, out_im, w_re, w_im, rev, cos, sin, max_n):
    """``np.fft.rfft(x[:n])`` into ``out_re/out_im[: n/2 + 1]`` (``w_re``/``w_im``: n/2 scratch)."""
    h = n // 2
    for k in range(h):  # packed and put in bit-reversed order at once
        r = np.uint64(rev[k])
        w_re[r] = x[2 * k]
        w_im[r] = x[2 * k + 1]
    _stages(w_re, w_im, np.uint64(h), cos, sin, max_n, False)
    out_re[0] = w_re[0] + w_im[0]  # k = 0 and k = h: Z[0] alone, the twiddle is +-1
    out_im[0] = 0.0
    out_re[h] = w_re[0] - w_im[0]
    out_im[h] = 0.0
    # e^{-2πik/n} for k < h, read with unit stride: the first part of the table when n is
    # max_n, otherwise the stage table of half-size h (which holds cos/sin of 2πk/n)
    t0 = np.uint64(0 if n == max_n else max_n // 2 + h)
    for k in range(np.uint64(1), np.uint64(h)):
        b = np.uint64(h) - k
        zr, zi = w_re[k], w_im[k]
        cr, ci = w_re[b], -w_im[b]  # conj(Z[h - k])
        er, ei = 0.5 * (zr + cr), 0.5 * (zi + ci)
        # O = (Z - conj) / (2i) = (zi - ci)/2 - i (zr - cr)/2
        orr, oi = 0.5 * (zi - ci), -0.5 * (zr - cr)
        c, s = cos[t0 + k], -sin[t0 + k]
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
        r = np.uint64(rev[k])  # Z = E + iO, in bit-reversed order
        w_re[r] = er - oi
        w_im[r] = ei + orr
    _stages(w_re, w_im, np.uint64(h), cos, sin, max_n, True)
    scale = 1.0 / h
    for k in range(h):
        out[2 * k] = w_re[k] * scale
        out[2 * k + 1] = w_im[k] * scale
