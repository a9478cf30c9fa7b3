"""One frame of transfer mode's analysis, compiled: YIN's f0 (band-limited 2x oversampling of
the window, the difference function through real FFTs, parabolic refinement) and the A-weighted
loudness, as :mod:`pimodule.core.features` computes them (equal up to FFT rounding); and the
layout of the analysis state in the shared block (``I_ANA`` slots, ``D_ANA`` regions), which
:mod:`pimodule.device.rt.f0_loudness` fills and streams through.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from pimodule.core.features import LOUDNESS_FLOOR_DB, SILENCE_RMS_DB
from pimodule.device.rt import dsp, fft
from pimodule.device.rt import shared as L

OPTS = dsp.OPTS
MAX_N = 2048  # the largest real transform (the oversampled YIN window)


# I_ANA slots: 0..3 the upsampler (block.py), 4..7 the downsampler, then the analysis
(
    A_OS,
    A_W,
    A_MINLAG,
    A_MAXLAG,
    A_NFFT,
    A_WIN,
    A_YINOFF,
    A_LOUDOFF,
    A_PAD,
    A_LOOKAHEAD,
    A_BUFLEN,
    A_FILL,
    A_NDONE,
    A_FRAME0,
    A_QW,
    A_QR,
    A_HAS_LAST,
    A_RATE,
    A_F0_EVERY,
    A_LD_EVERY,
    A_KNOT,
) = range(8, 29)
A_OFF = 32  # offsets into D_ANA at A_OFF + id
(
    O_BUF,
    O_FR,
    O_WRE,
    O_WIM,
    O_SRE,
    O_SIM,
    O_UP,
    O_HRE,
    O_HIM,
    O_CORR,
    O_SQ,
    O_DIFF,
    O_CMND,
    O_LWIN,
    O_LW,
    O_COS,
    O_SIN,
    O_QF,
    O_QL,
    O_KLD,
) = range(20)
A_REV = 64  # bit-reversal tables (1024 and 512 entries) in I_ANA from here
# D_ANA[0:8]: threshold, loudness reference dB, last voiced f0, last popped f0 and loudness, the
# last knot's f0 and loudness
D_THRESHOLD, D_REF_DB, D_LAST_F0, D_POP_F0, D_POP_LD, D_KNOT_F0, D_KNOT_LD = range(7)
D_HEAD = 8


@numba.njit(inline="always", **OPTS)
def _ana(ih):
    off = ih[L.I_BUF + 2 * L.I_ANA]
    return ih[off : off + ih[L.I_BUF + 2 * L.I_ANA + 1]]


@numba.njit(inline="always", **OPTS)
def _dana(ih, dh):
    off = ih[L.I_BUF + 2 * L.D_ANA]
    return dh[off : off + ih[L.I_BUF + 2 * L.D_ANA + 1]]


@numba.njit(inline="always", **OPTS)
def _seg(a, d, k, n):
    o = a[A_OFF + k]
    return d[o : o + n]


@numba.njit(**OPTS)
def ih_rate(a):
    return a[A_RATE]


@numba.njit(inline="always", **OPTS)
def _rev(a, half):
    """The bit-reversal table of a real transform of ``2 * half`` points (half: 1024 or 512)."""
    return a[A_REV : A_REV + 1024] if half == 1024 else a[A_REV + 1024 : A_REV + 1536]


@numba.njit(**OPTS)
def _yin(a, d, x0):
    """f0 (Hz) and voiced of the frame whose window starts at buf[x0]."""
    cos, sin = _seg(a, d, O_COS, MAX_N + 1), _seg(a, d, O_SIN, MAX_N + 1)
    wre, wim = _seg(a, d, O_WRE, MAX_N // 2), _seg(a, d, O_WIM, MAX_N // 2)
    buf = _seg(a, d, O_BUF, a[A_BUFLEN])
    w, os_, min_lag, max_lag = a[A_W], a[A_OS], a[A_MINLAG], a[A_MAXLAG]
    n = w * os_
    rev_n = _rev(a, n // 2)
    rev_w = _rev(a, w // 2)
    fr = _seg(a, d, O_FR, w)
    yo = x0 + a[A_YINOFF]
    for i in range(w):
        fr[i] = buf[yo + i]
    sre, sim = _seg(a, d, O_SRE, n // 2 + 1), _seg(a, d, O_SIM, n // 2 + 1)
    fft.rfft(fr, w, sre, sim, wre, wim, rev_w, cos, sin, MAX_N)
    up = _seg(a, d, O_UP, n)
    if os_ > 1:  # band-limited upsampling: the spectrum zero-padded, the old Nyquist split
        for k in range(w // 2 + 1):
            sre[k] *= os_
            sim[k] *= os_
        sre[w // 2] *= 0.5
        sim[w // 2] *= 0.5
        for k in range(w // 2 + 1, n // 2 + 1):
            sre[k] = 0.0
            sim[k] = 0.0
        sim[0] = 0.0
        fft.irfft(sre, sim, n, up, wre, wim, rev_n, cos, sin, MAX_N)
    else:
        for i in range(w):
            up[i] = fr[i]
    integ = n - max_lag
    corr = _seg(a, d, O_CORR, n)
    for i in range(integ):
        corr[i] = up[i]
    for i in range(integ, n):
        corr[i] = 0.0
    hre, him = _seg(a, d, O_HRE, n // 2 + 1), _seg(a, d, O_HIM, n // 2 + 1)
    fft.rfft(corr, n, hre, him, wre, wim, rev_n, cos, sin, MAX_N)
    for k in range(n // 2 + 1):  # spec_all * conj(spec_head)
        r = sre[k] * hre[k] + sim[k] * him[k]
        i_ = sim[k] * hre[k] - sre[k] * him[k]
        hre[k] = r
        him[k] = i_
    fft.irfft(hre, him, n, corr, wre, wim, rev_n, cos, sin, MAX_N)
    sq = _seg(a, d, O_SQ, n + 1)
    sq[0] = 0.0
    for i in range(n):
        sq[i + 1] = sq[i] + up[i] * up[i]
    diff, cmnd = _seg(a, d, O_DIFF, max_lag + 1), _seg(a, d, O_CMND, max_lag + 1)
    e0 = sq[integ] - sq[0]
    for t in range(max_lag + 1):
        e = sq[t + integ] - sq[t]
        diff[t] = max(e0 + e - 2.0 * corr[t], 0.0)
    cmnd[0] = 1.0
    csum = 0.0
    for t in range(1, max_lag + 1):
        csum += diff[t]
        cmnd[t] = diff[t] * t / csum if csum > 1e-12 * (e0 + 1e-30) else 1.0
    threshold = d[D_THRESHOLD]
    tau = -1
    best = min_lag
    for t in range(min_lag, max_lag + 1):
        left = cmnd[t - 1]
        right = cmnd[t + 1] if t < max_lag else np.inf
        if cmnd[t] < threshold and cmnd[t] <= left and cmnd[t] < right:
            tau = t
            break
        if cmnd[t] < cmnd[best]:
            best = t
    has = tau >= 0
    if not has:
        tau = best
    lo, hi = max(tau - 1, 0), min(tau + 1, max_lag)
    aa, bb, cc = diff[lo], diff[tau], diff[hi]
    denom = aa - 2.0 * bb + cc
    shift = 0.5 * (aa - cc) / denom if denom > 1e-20 else 0.0
    shift = min(max(shift, -1.0), 1.0)
    if not (0 < tau < max_lag):
        shift = 0.0
    f0 = ih_rate(a) * os_ / (tau + shift)
    rms_db = 10.0 * math.log10(sq[n] / n + 1e-30)
    return f0, has and rms_db > SILENCE_RMS_DB


@numba.njit(**OPTS)
def _loudness(a, d, x0):
    """Loudness (dB) of the frame whose window starts at buf[x0]: the Hann-windowed power
    spectrum's A-weighted mean."""
    cos, sin = _seg(a, d, O_COS, MAX_N + 1), _seg(a, d, O_SIN, MAX_N + 1)
    wre, wim = _seg(a, d, O_WRE, MAX_N // 2), _seg(a, d, O_WIM, MAX_N // 2)
    buf = _seg(a, d, O_BUF, a[A_BUFLEN])
    corr = _seg(a, d, O_CORR, MAX_N)
    sre, sim = _seg(a, d, O_SRE, MAX_N // 2 + 1), _seg(a, d, O_SIM, MAX_N // 2 + 1)
    nf = a[A_NFFT]
    lw, wt = _seg(a, d, O_LWIN, nf), _seg(a, d, O_LW, nf // 2 + 1)
    lo_ = x0 + a[A_LOUDOFF]
    for i in range(nf):
        fr_i = buf[lo_ + i] * lw[i]
        corr[i] = fr_i
    rev_l = _rev(a, nf // 2)
    fft.rfft(corr, nf, sre, sim, wre, wim, rev_l, cos, sin, MAX_N)
    total = 0.0
    for k in range(nf // 2 + 1):
        total += (sre[k] * sre[k] + sim[k] * sim[k]) * wt[k]
    db = 10.0 * math.log10(total / (nf // 2 + 1) + 1e-30) - d[D_REF_DB]
    return max(db, LOUDNESS_FLOOR_DB)
