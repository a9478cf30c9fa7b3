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
OPTS = dict(nogil=True, cache=True, error_model="numpy")
U0, U1, U2, U3, U4, U8 = (np.uint64(i) for i in (0, 1, 2, 3, 4, 8))
F32_0 = np.float32(0.0)


@numba.njit(**OPTS)
def off(lay, seg):
    """Offset of a segment in its array (elements)."""
    return np.uint64(lay[L.OFFSETS + 2 * seg])


@numba.njit(**OPTS)
def dim(lay, d):
    return np.uint64(lay[d])


@numba.njit(fastmath=FAST, **OPTS)
def matvec(w, wo, rows, cols, x, xo, b, bo, has_bias, y, yo):
    """y[yo + r] = sum_c W[r, c] x[xo + c] (+ b[bo + r]), r < rows, W stored from ``wo`` as
    panels of 4 rows: W[4 i + k, c] at wo + 4 i cols + 4 c + k (:func:`layout.panels`).

    Per panel one pass over the columns with 4 float32 accumulators: LLVM vectorises it with
    AArch64's de-interleaving ``ld4`` (16 weights, 4 rows x 4 columns, in one instruction) and
    ``fmla``, about 0.5 instructions per multiply-add (0.66 with row-major rows: one pointer per
    row). ``rows`` is a multiple of 4 and ``cols`` of 8 (zero padding)."""
    for r in range(U0, rows, U4):
        base = wo + r * cols
        a0 = F32_0
        a1 = F32_0
        a2 = F32_0
        a3 = F32_0
        for j in range(cols):
            xj = x[xo + j]
            q = base + U4 * j
            a0 += w[q] * xj
            a1 += w[q + U1] * xj
            a2 += w[q + U2] * xj
            a3 += w[q + U3] * xj
        if has_bias:
            a0 += b[bo + r]
            a1 += b[bo + r + U1]
            a2 += b[bo + r + U2]
            a3 += b[bo + r + U3]
        y[yo + r] = a0
        y[yo + r + U1] = a1
        y[yo + r + U2] = a2
        y[yo + r + U3] = a3


@numba.njit(fastmath=FAST, **OPTS)
def layer_norm_leaky(x, xo, n, eps, w, go, bo, slope, y, yo):
    """y = leaky(LayerNorm(x[:n]) * g + b), statistics in float64 (the input MLPs' unit-scale
    LayerNorm followed by their Mul/Add, or the out MLP's LayerNorm with weight and bias)."""
    s = 0.0
    for i in range(n):
        s += x[xo + i]
    mean = s / n
    v = 0.0
    for i in range(n):
        d = x[xo + i] - mean
        v += d * d
    inv = 1.0 / math.sqrt(v / n + eps)
    for i in range(n):
        z = np.float32((x[xo + i] - mean) * inv) * w[go + i] + w[bo + i]
        y[yo + i] = z if z >= 0 else z * slope
