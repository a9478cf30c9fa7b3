"""Elementary functions for the compiled voice, branch-free so that LLVM vectorises the loops that
call them (glibc's ``exp``, ``tanh``, ``pow``, ``sin``, ``cos`` and ``fmod`` cost 50 to 110
instructions per call on aarch64 and were a quarter of a frame).

- ``exp32``/``sigmoid32``/``tanh32``/``log32``: float32, a few ulp (onnxruntime's MLAS uses
  approximations of the same order for Sigmoid and Tanh), for the GRU gates and the scaled
  sigmoid;
- ``sincos64`` for |x| up to a few 2 pi (the wrapped phase), ~2e-14;
- ``fmod_2pi``: the graph's float64 ``fmod(x, two_pi)`` exactly, not approximately: the phase is
  state, compared bit for bit with onnxruntime.

NaN propagates through all of them (clamps are written ``x = hi if x > hi else x``, which keeps
NaN; integer conversions only ever see clamped finite values, never NaN).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from pimodule.device.voice.kernel_ops import FAST, OPTS

F32 = np.float32
LOG2E_32, LN2_HI_32, LN2_LO_32 = F32(1.4426950408889634), F32(0.693359375), F32(-2.12194440e-4)
# float32 Taylor coefficients of exp on [-ln2/2, ln2/2], degree 7 (remainder < 6e-9)
E2, E3, E4, E5, E6, E7 = (F32(1 / math.factorial(i)) for i in range(2, 8))
ONE32, HALF32, TWO32 = F32(1.0), F32(0.5), F32(2.0)
PIO2_HI = 1.57079632673412561417e00  # pi/2 split: the high part has 33 bits, k * PIO2_HI exact
PIO2_LO = 6.07710050650619224932e-11


@numba.njit(fastmath=FAST, **OPTS)
def exp32(x):
    """exp of a float32 (|relative error| ~2e-7), overflowing only past 88."""
    if x > F32(88.0):
        x = F32(88.0)
    if x < F32(-87.0):
        x = F32(-87.0)
    k = np.floor(x * LOG2E_32 + HALF32)
    r = (x - k * LN2_HI_32) - k * LN2_LO_32
    p = ONE32 + r * (ONE32 + r * (HALF32 + r * (E3 + r * (E4 + r * (E5 + r * (E6 + r * E7))))))
    kc = k if k > F32(-126.0) else F32(-126.0)  # NaN -> finite (x carries the NaN)
    scale = np.int32((np.int32(kc) + np.int32(127)) << np.int32(23)).view(np.float32)
    return p * scale


@numba.njit(fastmath=FAST, **OPTS)
def sigmoid32(x):
    return ONE32 / (ONE32 + exp32(-x))


@numba.njit(fastmath=FAST, **OPTS)
def tanh32(x):
    """2 sigmoid(2x) - 1: absolute error ~1e-7 (relative error grows towards 0)."""
    return TWO32 / (ONE32 + exp32(-TWO32 * x)) - ONE32


@numba.njit(fastmath=FAST, **OPTS)
def log32(x):
    """Natural log of a positive normal float32 (~2e-7 absolute for x near 1)."""
    bits = np.float32(x).view(np.int32)
    e = np.float32((bits >> np.int32(23)) - np.int32(127))
    m = np.int32((bits & np.int32(0x007FFFFF)) | np.int32(0x3F800000)).view(np.float32)
    big = m > F32(1.4142135)
    m = m * HALF32 if big else m
    e = e + ONE32 if big else e
    f = (m - ONE32) / (m + ONE32)
    f2 = f * f
    s = f * (TWO32 + f2 * (F32(2 / 3) + f2 * (F32(2 / 5) + f2 * (F32(2 / 7) + f2 * F32(2 / 9)))))
    return e * F32(0.6931471805599453) + s


@numba.njit(fastmath=FAST, **OPTS)
def _quadrant(x):
    """(r, q): x = r + q pi/2 with |r| <= pi/4 (q in 0..3 as float), for |x| < 1e9."""
    k = np.floor(x * 0.6366197723675814 + 0.5)
    k = k if (k < 1e9 and k > -1e9) else 0.0  # NaN and absurd values: r carries them
    r = (x - k * PIO2_HI) - k * PIO2_LO
    q = k - 4.0 * np.floor(k * 0.25)
    return r, q


@numba.njit(fastmath=FAST, **OPTS)
def _sin_poly(r):
    r2 = r * r
    return r + r * r2 * (
        -1 / 6 + r2 * (1 / 120 + r2 * (-1 / 5040 + r2 * (1 / 362880 + r2 * (-1 / 39916800 + r2 * (1 / 6227020800)))))
    )


@numba.njit(fastmath=FAST, **OPTS)
def _cos_poly(r):
    r2 = r * r
    return 1.0 + r2 * (
        -0.5
        + r2
        * (1 / 24 + r2 * (-1 / 720 + r2 * (1 / 40320 + r2 * (-1 / 3628800 + r2 * (1 / 479001600 - r2 / 87178291200)))))
    )


@numba.njit(fastmath=FAST, **OPTS)
def sincos64(x):
    """(sin x, cos x), one range reduction for both."""
    r, q = _quadrant(x)
    s, c = _sin_poly(r), _cos_poly(r)
    odd = q == 1.0 or q == 3.0
    sv = c if odd else s
    cv = s if odd else c
    return (-sv if q >= 2.0 else sv), (-cv if (q == 1.0 or q == 2.0) else cv)


@numba.njit(**OPTS)
def fmod_2pi(x, y_hi, y_lo, y):
    """fmod(x, y) exactly for 0 <= x < 2^20 y, with y = y_hi + y_lo (y_hi: 32 significant bits):
    x - n y_hi is exact (Sterbenz: n y_hi is within a factor 2 of x), n y_lo is exact, and the
    difference of the two is the representable fmod, so it is returned exactly; n is the
    quotient, corrected by one when x / y rounded across an integer."""
    n = np.floor(x / y)
    r = (x - n * y_hi) - n * y_lo
    n = n - 1.0 if r < 0.0 else (n + 1.0 if r >= y else n)
    return (x - n * y_hi) - n * y_lo
