"""The synth half of the compiled voice (:mod:`pimodule.device.voice.kernel`): harmonic amplitudes,
f0 ramp and phase, the sines by recurrence with per-harmonic Nyquist ranges, table noise through
the frame's FIR with overlap-add, and the optional learned reverb. All in place on the scratch and
state arrays (the float64 work of the sines in the state vector's workspace).
"""

from __future__ import annotations

import numba
import numpy as np

from pimodule.device.voice import layout as L
from pimodule.device.voice.kernel_math import fmod_2pi, sincos64
from pimodule.device.voice.kernel_ops import F32_0, FAST, OPTS, U0, U1, U2, U3, U4, U8, dim, matvec, off

FMOD_LIMIT = 2.0**20  # phases up to here are wrapped by fmod_2pi (exact for x < 2^20 * 2 pi)


@numba.njit(**OPTS)
def amplitudes(w, lay, f0, harm_gain, state, sx):
    """Harmonic amplitudes (none at or above Nyquist, renormalised, harmonic gain) into the
    state; the previous ones and the difference (the ramp) into scratch PK, DK (float64). The
    audible harmonics are a prefix (float32 products grow with k): counted once, then each part
    in a loop without branches, which LLVM vectorises (no fastmath: the same values bit for bit)."""
    k_n = dim(lay, L.D_K)
    c = off(lay, L.W_CONST)
    p, pk, dk = off(lay, L.X_P) + U1, off(lay, L.S_PK), off(lay, L.S_DK)
    s64 = state
    nyq = w[c + L.C_NYQUIST]
    guess = k_n
    if f0 > 0:
        q = np.float64(nyq) / np.float64(f0)
        guess = k_n if q >= k_n else np.uint64(q)
    k_a = _audible(f0, nyq, k_n, guess)
    total = 0.0
    for k in range(k_a):
        total += sx[p + k]
    scale = (sx[p - U1] * harm_gain) / (np.float32(total) + w[c + L.C_DIST_EPS])
    sa = off(lay, L.S_PREV_AMP)
    for k in range(k_a):
        amp = sx[p + k] * scale
        prev = np.float32(state[sa + k])
        s64[pk + k] = prev
        s64[dk + k] = amp - prev
        state[sa + k] = amp
    silent = F32_0 * scale  # 0, or NaN as the graph's 0 * scale when the scale is not finite
    for k in range(k_a, k_n):
        prev = np.float32(state[sa + k])
        s64[pk + k] = prev
        s64[dk + k] = silent - prev
        state[sa + k] = silent


@numba.njit(**OPTS)
def _audible(x, nyq, k_n, guess):
    """How many harmonics k = 1, 2, ... have float32(k * x) < nyq (the graph's mask, exactly):
    from ``guess`` (the previous sample's count: it moves by a step or two), counting up or down
    with the same float32 products as the graph."""
    if not x == x:
        return U0
    if not x > 0:
        return k_n
    kk = guess if guess <= k_n else k_n
    while kk < k_n and np.float32(np.float32(kk + U1) * x) < nyq:
        kk += U1
    while kk > U0 and not np.float32(np.float32(kk) * x) < nyq:
        kk -= U1
    return kk


@numba.njit(**OPTS)
def phases(w, lay, f0, state, sx):
    """f0 ramp (float32, no contraction: the Nyquist masks depend on its last bit), phase
    (float64 cumulative sum, exactly fmod-wrapped) and per sample the number of audible
    harmonics; then the wrapped phase and the recurrence's start (:func:`_start`)."""
    hop, k_n = dim(lay, L.D_HOP), dim(lay, L.D_K)
    s64 = state
    ramp, nyq = off(lay, L.W_RAMP), w[off(lay, L.W_CONST) + L.C_NYQUIST]
    u, kn = off(lay, L.S_S1), off(lay, L.X_KN)
    step = np.int64(lay[L.F64_PHASE_STEP]).view(np.float64)
    sp, sf = off(lay, L.S_PHASE), off(lay, L.S_PREV_F0)
    prev = np.float32(state[sf])
    d = f0 - prev
    phase = state[sp]
    cum = 0.0
    exact = phase >= 0.0
    count = k_n
    if prev > 0:  # a first guess; the count then follows the f0 ramp sample by sample
        q = np.float64(nyq) / np.float64(prev)
        count = k_n if q >= k_n else np.uint64(q)
    for n in range(hop):
        f0s = prev + d * w[ramp + n]
        cum += np.float64(f0s) * step
        x = phase + cum
        s64[u + n] = x
        exact = exact and x < FMOD_LIMIT
        count = _audible(f0s, nyq, k_n, count)
        sx[kn + n] = count
    if exact:
        _wrap_exact(lay, s64)
    else:
        _wrap_fmod(lay, s64)
    state[sp] = s64[off(lay, L.S_WRAP) + hop - U1]
    state[sf] = f0


@numba.njit(fastmath=FAST, **OPTS)
def _start(s64, o, n, wrapped):
    """Sample n: the wrapped phase (WRAP) and the recurrence's start from its float32 rounding
    p: C2 = 2 cos p, S0 = -sin p, S1 = 0 (S1 held the unwrapped phase), both sums 0. ``o``: the
    offsets of WRAP, C2, S0, S1, ACC_A, ACC_B, read once by the caller (numba tells LLVM nothing
    about aliasing, so a ``layout`` read in the loop would be repeated after every store)."""
    s64[o[0] + n] = wrapped
    sin_p, cos_p = sincos64(np.float64(np.float32(wrapped)))
    s64[o[1] + n] = 2.0 * cos_p
    s64[o[2] + n] = -sin_p
    s64[o[3] + n] = 0.0
    s64[o[4] + n] = 0.0
    s64[o[5] + n] = 0.0


@numba.njit(**OPTS)
def _offsets(lay):
    return (
        off(lay, L.S_WRAP),
        off(lay, L.S_C2),
        off(lay, L.S_S0),
        off(lay, L.S_S1),
        off(lay, L.S_ACC_A),
        off(lay, L.S_ACC_B),
    )


@numba.njit(fastmath=FAST, **OPTS)
def _wrap_exact(lay, s64):
    """fmod(phase, two_pi) per sample by :func:`fmod_2pi` (vectorised), then :func:`_start`."""
    bits = np.int64(lay[L.F64_TWO_PI])
    two_pi = bits.view(np.float64)
    hi = np.int64(bits & np.int64(-(1 << 21))).view(np.float64)  # 32 significant bits
    lo = two_pi - hi
    o = _offsets(lay)
    for n in range(dim(lay, L.D_HOP)):
        _start(s64, o, n, fmod_2pi(s64[o[3] + n], hi, lo, two_pi))


@numba.njit(**OPTS)
def _wrap_fmod(lay, s64):
    """The same with glibc's fmod, for phases fmod_2pi does not cover (a corrupt state)."""
    two_pi = np.int64(lay[L.F64_TWO_PI]).view(np.float64)
    o = _offsets(lay)
    for n in range(dim(lay, L.D_HOP)):
        _start(s64, o, n, np.fmod(s64[o[3] + n], two_pi))


@numba.njit(fastmath=FAST, **OPTS)
def _sines8(s, c2, s0, s1, acc_a, acc_b, pk, dk, k0, lo, hi):
    """8 harmonics k0 .. k0 + 7 on samples [lo, hi), all audible there: per sample, 8 steps of
    the recurrence and of the two amplitude sums (start, slope); vectorised across samples."""
    p0, p1, p2, p3 = s[pk + k0], s[pk + k0 + U1], s[pk + k0 + U2], s[pk + k0 + U3]
    p4, p5, p6, p7 = s[pk + k0 + U4], s[pk + k0 + U4 + U1], s[pk + k0 + U4 + U2], s[pk + k0 + U4 + U3]
    d0, d1, d2, d3 = s[dk + k0], s[dk + k0 + U1], s[dk + k0 + U2], s[dk + k0 + U3]
    d4, d5, d6, d7 = s[dk + k0 + U4], s[dk + k0 + U4 + U1], s[dk + k0 + U4 + U2], s[dk + k0 + U4 + U3]
    for n in range(lo, hi):
        c = s[c2 + n]
        a = s[s0 + n]
        b = s[s1 + n]
        sa = s[acc_a + n]
        sb = s[acc_b + n]
        a = c * b - a
        sa += p0 * a
        sb += d0 * a
        b = c * a - b
        sa += p1 * b
        sb += d1 * b
        a = c * b - a
        sa += p2 * a
        sb += d2 * a
        b = c * a - b
        sa += p3 * b
        sb += d3 * b
        a = c * b - a
        sa += p4 * a
        sb += d4 * a
        b = c * a - b
        sa += p5 * b
        sb += d5 * b
        a = c * b - a
        sa += p6 * a
        sb += d6 * a
        b = c * a - b
        sa += p7 * b
        sb += d7 * b
        s[s0 + n] = a
        s[s1 + n] = b
        s[acc_a + n] = sa
        s[acc_b + n] = sb


@numba.njit(fastmath=FAST, **OPTS)
def _sines4(s, c2, s0, s1, acc_a, acc_b, pk, dk, k0, lo, hi):
    """4 harmonics k0 .. k0 + 3 on samples [lo, hi) (as _sines8)."""
    p0, p1, p2, p3 = s[pk + k0], s[pk + k0 + U1], s[pk + k0 + U2], s[pk + k0 + U3]
    d0, d1, d2, d3 = s[dk + k0], s[dk + k0 + U1], s[dk + k0 + U2], s[dk + k0 + U3]
    for n in range(lo, hi):
        c = s[c2 + n]
        a = s[s0 + n]
        b = s[s1 + n]
        sa = s[acc_a + n]
        sb = s[acc_b + n]
        a = c * b - a
        sa += p0 * a
        sb += d0 * a
        b = c * a - b
        sa += p1 * b
        sb += d1 * b
        a = c * b - a
        sa += p2 * a
        sb += d2 * a
        b = c * a - b
        sa += p3 * b
        sb += d3 * b
        s[s0 + n] = a
        s[s1 + n] = b
        s[acc_a + n] = sa
        s[acc_b + n] = sb


@numba.njit(fastmath=FAST, **OPTS)
def _sines1(s, c2, s0, s1, acc_a, acc_b, pk, dk, k, lo, hi):
    """One harmonic k on samples [lo, hi) (vectorised across samples)."""
    pa, da = s[pk + k], s[dk + k]
    for n in range(lo, hi):
        x = s[c2 + n] * s[s1 + n] - s[s0 + n]
        s[s0 + n] = s[s1 + n]
        s[s1 + n] = x
        s[acc_a + n] += pa * x
        s[acc_b + n] += da * x


@numba.njit(fastmath=FAST, **OPTS)
def _edge(s, sx, kn, c2, s0, s1, acc_a, acc_b, pk, dk, k0, width, lo, hi):
    """Samples [lo, hi): harmonics k0 .. k0 + width - 1 while audible, one at a time."""
    for n in range(lo, hi):
        for k in range(k0, min(k0 + width, np.uint64(sx[kn + n]))):
            x = s[c2 + n] * s[s1 + n] - s[s0 + n]
            s[s0 + n] = s[s1 + n]
            s[s1 + n] = x
            s[acc_a + n] += s[pk + k] * x
            s[acc_b + n] += s[dk + k] * x


@numba.njit(**OPTS)
def _audible_range(sx, kn, hop, k, falling):
    """[lo, hi): the samples where harmonic k (1-based) is audible: a suffix of the frame if f0
    falls (more harmonics fit under Nyquist as it goes), else a prefix."""
    if falling:
        lo = U0
        while lo < hop and sx[kn + lo] < k:
            lo += U1
        return lo, hop
    hi = hop
    while hi > U0 and sx[kn + hi - U1] < k:
        hi -= U1
    return U0, hi


@numba.njit(**OPTS)
def harmonic(w, lay, state, sx, audio):
    """Sum of the audible harmonics with ramped amplitudes into ``audio[0:hop]``."""
    hop = dim(lay, L.D_HOP)
    s = state
    c2, s0, s1 = off(lay, L.S_C2), off(lay, L.S_S0), off(lay, L.S_S1)
    acc_a, acc_b = off(lay, L.S_ACC_A), off(lay, L.S_ACC_B)
    pk, dk, kn = off(lay, L.S_PK), off(lay, L.S_DK), off(lay, L.X_KN)
    falling = sx[kn] < sx[kn + hop - U1]
    k_max = np.uint64(max(sx[kn], sx[kn + hop - U1]))
    k0 = U0  # 0-based index of the next harmonic
    while k0 < k_max:
        width = U8 if k0 + U8 <= k_max else (U4 if k0 + U4 <= k_max else U1)
        lo, hi = _audible_range(sx, kn, hop, k0 + width, falling)  # all of the block audible
        if width > U1:
            if width == U8:
                _sines8(s, c2, s0, s1, acc_a, acc_b, pk, dk, k0, lo, hi)
            else:
                _sines4(s, c2, s0, s1, acc_a, acc_b, pk, dk, k0, lo, hi)
            elo, ehi = _audible_range(sx, kn, hop, k0 + U1, falling)
            # edges, where only the first few of the block are audible: [elo, lo) and [hi, ehi)
            _edge(s, sx, kn, c2, s0, s1, acc_a, acc_b, pk, dk, k0, width, elo, lo)
            _edge(s, sx, kn, c2, s0, s1, acc_a, acc_b, pk, dk, k0, width, hi, ehi)
        else:
            _sines1(s, c2, s0, s1, acc_a, acc_b, pk, dk, k0, lo, hi)
        k0 += width
    ramp = off(lay, L.W_RAMP)
    for n in range(hop):
        audio[n] = np.float32(s[acc_a + n]) + np.float32(s[acc_b + n]) * w[ramp + n]


@numba.njit(**OPTS)
def noise(w, lay, noise_gain, state, sx, audio):
    """Table noise filtered by the frame's FIR (band magnitudes x noise gain), overlap-added
    with the tail of earlier frames, added to ``audio``; the tail and position updated."""
    hop, nb, nbp = dim(lay, L.D_HOP), dim(lay, L.D_NB), dim(lay, L.D_NBP)
    taps, n_seg = dim(lay, L.D_TAPS), dim(lay, L.D_NSEG)
    la, lb, period = lay[L.D_NOISE_A], lay[L.D_NOISE_B], lay[L.D_PERIOD]
    p, mags, g = off(lay, L.X_P) + U1 + dim(lay, L.D_K), off(lay, L.X_MAGS), off(lay, L.X_G) + U8
    y, white = off(lay, L.X_Y), off(lay, L.X_WHITE)
    for b in range(nb):
        sx[mags + b] = sx[p + b] * noise_gain
    matvec(w, off(lay, L.W_FIR), taps, nbp, sx, mags, w, U0, False, sx, g)
    sp = off(lay, L.S_POS)
    pos = state[sp]
    if not (pos >= 0 and pos < period):  # only a corrupt state; keeps the indices in range
        pos = 0.0
    ipos = np.int64(pos)
    ia, ib = ipos % la, ipos % lb
    na, nbo = off(lay, L.W_NOISE_A), off(lay, L.W_NOISE_B)
    for n in range(hop):
        sx[white + n] = w[na + np.uint64(ia)] + w[nbo + np.uint64(ib)]
        ia += 1
        ib += 1
        if ia == la:
            ia = 0
        if ib == lb:
            ib = 0
    state[sp] = (ipos + lay[L.D_HOP]) % period
    for i in range(n_seg * hop):
        sx[y + i] = F32_0
    _convolve(sx, white, hop, g, taps, y)
    tail = off(lay, L.S_TAIL)
    for n in range(hop):
        audio[n] += sx[y + n] + np.float32(state[tail + n])
    for sgm in range(n_seg - U1):
        last = sgm + U2 == n_seg
        for n in range(hop):
            v = sx[y + (sgm + U1) * hop + n]
            if not last:
                v += np.float32(state[tail + (sgm + U1) * hop + n])
            state[tail + sgm * hop + n] = v


@numba.njit(fastmath=FAST, **OPTS)
def _convolve(sx, x, n_x, g, taps, y):
    """y[n + j] += x[n] g[j], the full convolution over the non-zero samples only; 8 samples of x
    per pass over y (8 shifted reads of g, which has 8 zeros on each side at g - 8 and
    g + taps), so each load and store of y serves 8 multiply-adds."""
    n = U0
    while n + U8 <= n_x:
        x0, x1, x2, x3 = sx[x + n], sx[x + n + U1], sx[x + n + U2], sx[x + n + U3]
        x4, x5, x6, x7 = sx[x + n + U4], sx[x + n + U4 + U1], sx[x + n + U4 + U2], sx[x + n + U4 + U3]
        gb = g - U8  # gb + 8 + j - k = g[j - k]
        for j in range(taps + U8 - U1):
            q = gb + U8 + j
            sx[y + n + j] += (
                x0 * sx[q]
                + x1 * sx[q - U1]
                + x2 * sx[q - U2]
                + x3 * sx[q - U3]
                + x4 * sx[q - U4]
                + x5 * sx[q - U4 - U1]
                + x6 * sx[q - U4 - U2]
                + x7 * sx[q - U8 + U1]
            )
        n += U8
    while n < n_x:
        xn = sx[x + n]
        for j in range(taps):
            sx[y + n + j] += xn * sx[g + j]
        n += U1


@numba.njit(fastmath=FAST, **OPTS)
def reverb(w, lay, state, sx, audio, out):
    """out = audio + the learned impulse response over [history, audio]; history updated."""
    hop, n_rev = dim(lay, L.D_HOP), dim(lay, L.D_NREV)
    x, kr, sh = off(lay, L.X_REVX), off(lay, L.W_REV), off(lay, L.S_REV)
    for i in range(n_rev - U1):
        sx[x + i] = np.float32(state[sh + i])
    for n in range(hop):
        sx[x + n_rev - U1 + n] = audio[n]
    for n in range(hop):
        acc = F32_0
        for t in range(n_rev):
            acc += sx[x + n + t] * w[kr + t]
        out[n] = audio[n] + acc
    for i in range(n_rev - U1):
        state[sh + i] = sx[x + hop + i]
