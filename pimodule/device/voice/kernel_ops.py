"""Building blocks of the compiled voice (:mod:`pimodule.device.voice.kernel`): compile options,
unsigned index constants, the 4-row matrix-vector product and LayerNorm + LeakyReLU.

Indices are uint64 throughout the kernel: numba wraps negative signed indices around (a compare
and select per access), which stops LLVM from vectorising the loops (measured: a 512 x 256 product
10x slower with signed indices). Mixing signed and unsigned integers types as float64 in numba, and
an int literal with a uint64 as int64, hence the U* constants.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from pimodule.device.voice import layout as L

FAST = {"reassoc", "contract", "nsz"}
OPTS = dict(nogil=True, cache=True, error_model="numpy", _nrt=False)
U0, U1, U2, U3, U4, U8, U12, U16 = (np.uint64(i) for i in (0, 1, 2, 3, 4, 8, 12, 16))
F32_0 = np.float32(0.0)


@numba.njit(**OPTS)
def off(lay, seg):
    """Offset of a segment in its array (elements)."""
    return np.uint64(lay[L.OFFSETS + 2 * seg])


@numba.njit(**OPTS)
def size(lay, seg):
    """Size of a segment in its array (elements)."""
    return np.uint64(lay[L.OFFSETS + 2 * seg + 1])


@numba.njit(**OPTS)
def dim(lay, d):
    return np.uint64(lay[d])


@numba.njit(fastmath=FAST, **OPTS)
def matvec(w, wo, rows, cols, x, xo, b, bo, has_bias, y, yo):
    """y[yo + r] = sum_c W[r, c] x[xo + c] (+ b[bo + r]), r < rows, W stored from ``wo`` as
    panels of 4 rows: W[4 i + k, c] at wo + 4 i cols + 4 c + k (:func:`layout.panels`).

    16 rows per pass over the columns (4 panels read as 4 streams, 16 float32 accumulators),
    then 4 at a time: LLVM vectorises each panel's stream with AArch64's de-interleaving ``ld4``
    (16 weights in one instruction) and ``fmla``, sharing each load of x between 16 rows.
    Each panel and x are read through a view of its own, so each stream is one pointer that LLVM
    post-increments: 23 instructions per 4 columns x 16 rows in the inner loop (indexing all four
    panels from ``w`` cost an add per panel and a move per iteration, 29). Counted on an emulated
    Cortex-A72: a 512 x 256 product 0.43 -> 0.40 instructions per multiply-add; the violin's
    decoder 140 k -> 122 k per frame (its products 0.41 per multiply-add: the horizontal sums
    after each pass weigh with 128 columns). 20 rows per pass counted no better; 24 spill. ``rows`` is a
    multiple of 4 and ``cols`` of 8 (zero padding)."""
    r = U0
    while r + U16 <= rows:
        _rows16(w, wo + r * cols, cols, x, xo, b, bo + r, has_bias, y, yo + r)
        r += U16
    while r < rows:
        _rows4(w, wo + r * cols, cols, x, xo, b, bo + r, has_bias, y, yo + r)
        r += U4


@numba.njit(fastmath=FAST, **OPTS)
def matvec_any(w, wo, size, rows, cols, x, xo, b, bo, has_bias, y, yo):
    """:func:`matvec` for a float32 matrix (``size == rows * cols``) or :func:`matvec_q8` for an
    int8 one (``size == rows * cols / 4 + rows``): the segment's size says which it is."""
    if size == rows * cols:
        matvec(w, wo, rows, cols, x, xo, b, bo, has_bias, y, yo)
    else:
        matvec_q8(w, wo, rows, cols, x, xo, b, bo, has_bias, y, yo)


@numba.njit(fastmath=FAST, **OPTS)
def matvec_q8(w, wo, rows, cols, x, xo, b, bo, has_bias, y, yo):
    """:func:`matvec` with int8 weights: row-major bytes stored in the float32 array from ``wo``
    (``rows * cols / 4`` elements), followed by one float32 scale per row;
    y[r] = scale[r] * sum_c q[r, c] x[c] (+ b[r]). A weight is a quarter of the bytes (the
    violin's decoder, 1.1 MB in float32, fits a Cortex-A53's 512 KB L2) but each one must be
    widened and converted before its multiply-add: counted on an emulated Cortex-A72, a 512 x 256
    product takes 1.42 instructions per multiply-add this way (two rows per pass, each a
    contiguous stream, widened through int32), against 0.40 for float32 panels; int8 panels read
    like the float32 ones took 2.72, four rows per pass 1.77, one 1.80."""
    q = w.view(np.int8)
    qo = U4 * wo
    so = wo + rows * cols // U4
    xs = x[xo : xo + cols]
    r = U0
    while r < rows:
        p0 = qo + r * cols
        w0, w1 = q[p0 : p0 + cols], q[p0 + cols : p0 + U2 * cols]
        a0, a1 = F32_0, F32_0
        for j in range(cols):
            xj = xs[j]
            a0 += np.float32(np.int32(w0[j])) * xj
            a1 += np.float32(np.int32(w1[j])) * xj
        a0 *= w[so + r]
        a1 *= w[so + r + U1]
        if has_bias:
            a0 += b[bo + r]
            a1 += b[bo + r + U1]
        y[yo + r] = a0
        y[yo + r + U1] = a1
        r += U2


@numba.njit(fastmath=FAST, inline="always", **OPTS)
def _mac4(wk, q, xj, a0, a1, a2, a3):
    """One column of a 4-row panel into its 4 accumulators (inlined into the loops below)."""
    return a0 + wk[q] * xj, a1 + wk[q + U1] * xj, a2 + wk[q + U2] * xj, a3 + wk[q + U3] * xj


@numba.njit(fastmath=FAST, inline="always", **OPTS)
def _rows16(w, p0, cols, x, xo, b, bo, has_bias, y, yo):
    n4 = U4 * cols
    w0, w1 = w[p0 : p0 + n4], w[p0 + n4 : p0 + U2 * n4]
    w2, w3 = w[p0 + U2 * n4 : p0 + U3 * n4], w[p0 + U3 * n4 : p0 + U4 * n4]
    xs = x[xo : xo + cols]
    a0, a1, a2, a3, a4, a5, a6, a7 = F32_0, F32_0, F32_0, F32_0, F32_0, F32_0, F32_0, F32_0
    c0, c1, c2, c3, c4, c5, c6, c7 = F32_0, F32_0, F32_0, F32_0, F32_0, F32_0, F32_0, F32_0
    for j in range(cols):
        xj = xs[j]
        q = U4 * j
        a0, a1, a2, a3 = _mac4(w0, q, xj, a0, a1, a2, a3)
        a4, a5, a6, a7 = _mac4(w1, q, xj, a4, a5, a6, a7)
        c0, c1, c2, c3 = _mac4(w2, q, xj, c0, c1, c2, c3)
        c4, c5, c6, c7 = _mac4(w3, q, xj, c4, c5, c6, c7)
    _store4(y, yo, a0, a1, a2, a3, b, bo, has_bias)
    _store4(y, yo + U4, a4, a5, a6, a7, b, bo + U4, has_bias)
    _store4(y, yo + U8, c0, c1, c2, c3, b, bo + U8, has_bias)
    _store4(y, yo + U12, c4, c5, c6, c7, b, bo + U12, has_bias)


@numba.njit(fastmath=FAST, **OPTS)
def _rows4(w, p0, cols, x, xo, b, bo, has_bias, y, yo):
    w0 = w[p0 : p0 + U4 * cols]
    xs = x[xo : xo + cols]
    a0, a1, a2, a3 = F32_0, F32_0, F32_0, F32_0
    for j in range(cols):
        a0, a1, a2, a3 = _mac4(w0, U4 * j, xs[j], a0, a1, a2, a3)
    _store4(y, yo, a0, a1, a2, a3, b, bo, has_bias)


@numba.njit(**OPTS)
def _store4(y, yo, a0, a1, a2, a3, b, bo, has_bias):
    if has_bias:
        a0 += b[bo]
        a1 += b[bo + U1]
        a2 += b[bo + U2]
        a3 += b[bo + U3]
    y[yo] = a0
    y[yo + U1] = a1
    y[yo + U2] = a2
    y[yo + U3] = a3


@numba.njit(fastmath=FAST, **OPTS)
def layer_norm_leaky(x, xo, n, eps, w, go, bo, slope, y, yo):
    """y = leaky(LayerNorm(x[:n]) * g + b) (the input MLPs' unit-scale LayerNorm followed by
    their Mul/Add, or the out MLP's LayerNorm with weight and bias). Two-pass float32 statistics
    (mean, then the mean of squared deviations: no cancellation), vectorised 4-wide."""
    s = F32_0
    for i in range(n):
        s += x[xo + i]
    mean = s / np.float32(n)
    v = F32_0
    for i in range(n):
        d = x[xo + i] - mean
        v += d * d
    inv = np.float32(1.0 / math.sqrt(np.float64(v / np.float32(n)) + eps))
    for i in range(n):
        z = (x[xo + i] - mean) * inv * w[go + i] + w[bo + i]
        y[yo + i] = z if z >= F32_0 else z * slope
