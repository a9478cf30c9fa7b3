"""The DDSP voice's frame as compiled, allocation-free code (numba): ``FrameVoice.forward``.

``voice_frame(weights, layout, controls, f0_hz, loudness_db, state, scratch, out)`` computes one
hop of audio into ``out`` and updates ``state`` in place; ``voice_frames`` runs many frames (offline
rendering, benchmarks). The arrays come from :func:`pimodule.device.voice.weights.read_voice`; the
kernel trusts their layout and never allocates, raises or touches a Python object, so it can run
in the audio callback without the GIL. NaN in any input propagates to ``out`` (the engine's guard
replaces a non-finite block); no input value makes it read or write outside its arrays.

Numerics follow the ONNX graph: float32 where the graph computes float32 (the f0 ramp and the
Nyquist masks bit for bit, since a harmonic switching on or off is not a rounding difference),
float64 where it is float64 (phase), and float64 where that costs nothing and is closer to the
intended function (LayerNorm statistics, transcendental functions, the sines). The sines are not
4096 calls of ``sin``: per sample, ``sin(k p)`` for k = 1, 2, ... follows the Chebyshev recurrence
``s[k] = 2 cos(p) s[k-1] - s[k-2]`` in float64, 8 harmonics per pass over the samples; each
harmonic runs only over the samples where it is below Nyquist (f0 ramps monotonically over the
frame, so that is a prefix or a suffix of the frame). The noise FIR runs only over its non-zero
support; matrices are (out, in) rows, 4 rows per pass (see ``_matvec``).

Indices are uint64 throughout: numba wraps negative signed indices around (a compare and select
per access), which stops LLVM from vectorising the loops (measured: a 512 x 256 product 10x
slower). Mixing signed and unsigned integers types as float64 (an int literal with a uint64 as
int64), hence the U* constants.

fastmath: reassociation and contraction only where it makes SIMD reductions and fused
multiply-adds (dot products, LayerNorm sums, the sine recurrence, the FIR); never 'nnan'/'ninf',
which would let LLVM drop NaN handling. The f0 ramp and Nyquist masks are computed without it.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from pimodule.device.voice import layout as L

FAST = {"reassoc", "contract", "nsz"}
_OPTS = dict(nogil=True, cache=True, error_model="numpy")
_A = "float32[::1]"
FRAME_SIGNATURE = f"void({_A}, int64[::1], {_A}, float64, float64, float64[::1], {_A}, {_A})"
FRAMES_SIGNATURE = (f"void({_A}, int64[::1], float32[:, ::1], {_A}, {_A}, float64[::1], {_A}, "
                    "float32[:, ::1])")
U0, U1, U2, U3, U4, U8 = (np.uint64(i) for i in (0, 1, 2, 3, 4, 8))
F32_0 = np.float32(0.0)


@numba.njit(**_OPTS)
def _off(lay, seg):
    """Offset of a segment (float32 elements; halve it for a float64 view)."""
    return np.uint64(lay[L.OFFSETS + 2 * seg])


@numba.njit(**_OPTS)
def _dim(lay, d):
    return np.uint64(lay[d])


@numba.njit(fastmath=FAST, **_OPTS)
def _matvec(w, wo, rows, cols, x, xo, b, bo, has_bias, y, yo):
    """y[yo + r] = sum_c w[wo + r cols + c] x[xo + c] (+ b[bo + r]), r < rows.

    ``rows`` is a multiple of 4 and ``cols`` of 8 (zero padding): 4 rows per pass share each
    input load, and each row is a contiguous float32 dot product LLVM turns into SIMD
    multiply-adds with one vector accumulator per row."""
    for r in range(U0, rows, U4):
        o0 = wo + r * cols
        o1 = o0 + cols
        o2 = o1 + cols
        o3 = o2 + cols
        a0 = F32_0
        a1 = F32_0
        a2 = F32_0
        a3 = F32_0
        for j in range(cols):
            xj = x[xo + j]
            a0 += w[o0 + j] * xj
            a1 += w[o1 + j] * xj
            a2 += w[o2 + j] * xj
            a3 += w[o3 + j] * xj
        if has_bias:
            a0 += b[bo + r]
            a1 += b[bo + r + U1]
            a2 += b[bo + r + U2]
            a3 += b[bo + r + U3]
        y[yo + r] = a0
        y[yo + r + U1] = a1
        y[yo + r + U2] = a2
        y[yo + r + U3] = a3


@numba.njit(fastmath=FAST, **_OPTS)
def _layer_norm_leaky(x, xo, n, eps, w, go, bo, slope, y, yo):
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


@numba.njit(**_OPTS)
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@numba.njit(**_OPTS)
def _decode(w, lay, f0, ld, state, sx):
    """The decoder: input MLPs, GRU step (state updated), out MLP, projection and scaled
    sigmoid into scratch P."""
    h, hp = _dim(lay, L.D_H), _dim(lay, L.D_HP)
    c = _off(lay, L.W_CONST)
    y1, y2, gi, gh = _off(lay, L.X_Y1), _off(lay, L.X_Y2), _off(lay, L.X_GI), _off(lay, L.X_GH)
    xh, o1, o2, p = _off(lay, L.X_H), _off(lay, L.X_O1), _off(lay, L.X_O2), _off(lay, L.X_P)
    xin0 = np.float32(math.log(np.float64(f0))) * w[c + L.C_IN_SCALE] + w[c + L.C_IN_SHIFT]
    xin1 = ld * w[c + L.C_IN_SCALE + 1] + w[c + L.C_IN_SHIFT + 1]
    w1, b1, g1, be1 = _off(lay, L.W_W1), _off(lay, L.W_B1), _off(lay, L.W_G1), _off(lay, L.W_BE1)
    w2, b2, g2, be2 = _off(lay, L.W_W2), _off(lay, L.W_B2), _off(lay, L.W_G2), _off(lay, L.W_BE2)
    for m in range(U2):
        xin = xin0 if m == U0 else xin1
        mo = m * hp
        for j in range(h):
            sx[y2 + mo + j] = xin * w[w1 + mo + j] + w[b1 + mo + j]
        _layer_norm_leaky(sx, y2 + mo, h, w[c + L.C_EPS], w, g1 + mo, be1 + mo, w[c + L.C_SLOPE], sx, y1 + mo)
        _matvec(w, w2 + mo * hp, hp, hp, sx, y1 + mo, w, b2 + mo, True, sx, y2 + mo)
        _layer_norm_leaky(sx, y2 + mo, h, w[c + L.C_EPS + 1], w, g2 + mo, be2 + mo, w[c + L.C_SLOPE + 1],
                          sx, y1 + mo)
    # GRU: gates from [a, b] (y1) and from h_prev
    sg = _off(lay, L.S_GRU)
    for j in range(h):
        sx[xh + j] = np.float32(state[sg + j])
    _matvec(w, _off(lay, L.W_AB), U4 * hp, U2 * hp, sx, y1, w, _off(lay, L.W_BAB), True, sx, gi)
    _matvec(w, _off(lay, L.W_HH), U3 * hp, hp, sx, xh, w, U0, False, sx, gh)
    bhn = _off(lay, L.W_BHN)
    for j in range(h):
        r = np.float32(_sigmoid(np.float64(sx[gi + j] + sx[gh + j])))
        z = np.float32(_sigmoid(np.float64(sx[gi + hp + j] + sx[gh + hp + j])))
        a = sx[gi + U2 * hp + j] + r * (sx[gh + U2 * hp + j] + w[bhn + j])
        n = np.float32(math.tanh(np.float64(a)))
        hn = n + z * (sx[xh + j] - n)
        sx[xh + j] = hn
        state[sg + j] = hn
    # out MLP on [h, a, b] (its [a, b] part is gi's last block) and the projection
    _matvec(w, _off(lay, L.W_X), hp, hp, sx, xh, sx, gi + U3 * hp, True, sx, o1)
    _layer_norm_leaky(sx, o1, h, w[c + L.C_EPS + 2], w, _off(lay, L.W_LN1W), _off(lay, L.W_LN1B),
                      w[c + L.C_SLOPE + 2], sx, o1)
    _matvec(w, _off(lay, L.W_LIN2), hp, hp, sx, o1, w, _off(lay, L.W_LIN2B), True, sx, o2)
    _layer_norm_leaky(sx, o2, h, w[c + L.C_EPS + 3], w, _off(lay, L.W_LN2W), _off(lay, L.W_LN2B),
                      w[c + L.C_SLOPE + 3], sx, o2)
    _matvec(w, _off(lay, L.W_PROJ), _dim(lay, L.D_NOUTP), hp, sx, o2, w, _off(lay, L.W_PROJB), True, sx, p)
    pw, scale, offset = np.float64(w[c + L.C_POW]), w[c + L.C_SIG_SCALE], w[c + L.C_SIG_OFFSET]
    for i in range(_dim(lay, L.D_NOUT)):
        s = _sigmoid(np.float64(sx[p + i]))
        sx[p + i] = np.float32(math.pow(s, pw)) * scale + offset


@numba.njit(**_OPTS)
def _amplitudes(w, lay, f0, harm_gain, state, sx):
    """Harmonic amplitudes (none at or above Nyquist, renormalised, harmonic gain) into the
    state; the previous ones and the difference (the ramp) into scratch PK, DK (float64)."""
    k_n = _dim(lay, L.D_K)
    c = _off(lay, L.W_CONST)
    p, pk, dk = _off(lay, L.X_P) + U1, _off(lay, L.X_PK) // U2, _off(lay, L.X_DK) // U2
    s64 = sx.view(np.float64)
    nyq = w[c + L.C_NYQUIST]
    total = 0.0
    for k in range(k_n):
        if np.float32(f0 * np.float32(k + U1)) < nyq:
            total += sx[p + k]
    scale = (sx[p - U1] * harm_gain) / (np.float32(total) + w[c + L.C_DIST_EPS])
    sa = _off(lay, L.S_PREV_AMP)
    for k in range(k_n):
        d = sx[p + k] if np.float32(f0 * np.float32(k + U1)) < nyq else F32_0
        amp = d * scale
        prev = np.float32(state[sa + k])
        s64[pk + k] = prev
        s64[dk + k] = amp - prev
        state[sa + k] = amp


@numba.njit(**_OPTS)
def _audible(x, nyq, k_n):
    """How many harmonics k = 1, 2, ... have float32(k * x) < nyq (the graph's mask, exactly)."""
    if not x == x:
        return U0
    if not x > 0:
        return k_n
    q = nyq / np.float64(x)
    kk = k_n if q >= k_n else np.uint64(q)
    while kk < k_n and np.float32(np.float32(kk + U1) * x) < nyq:
        kk += U1
    while kk > U0 and not np.float32(np.float32(kk) * x) < nyq:
        kk -= U1
    return kk


@numba.njit(**_OPTS)
def _phases(w, lay, f0, state, sx):
    """f0 ramp (float32), phase (float64 cumulative sum, fmod-wrapped) and per sample: the float32
    phase's 2 cos and -sin (the recurrence's start) and the number of audible harmonics."""
    hop, k_n = _dim(lay, L.D_HOP), _dim(lay, L.D_K)
    s64 = sx.view(np.float64)
    ramp, nyq = _off(lay, L.W_RAMP), w[_off(lay, L.W_CONST) + L.C_NYQUIST]
    c2, s0, s1 = _off(lay, L.X_C2) // U2, _off(lay, L.X_S0) // U2, _off(lay, L.X_S1) // U2
    acc_a, acc_b, kn = _off(lay, L.X_ACC_A) // U2, _off(lay, L.X_ACC_B) // U2, _off(lay, L.X_KN)
    step = np.int64(lay[L.F64_PHASE_STEP]).view(np.float64)
    two_pi = np.int64(lay[L.F64_TWO_PI]).view(np.float64)
    sp, sf = _off(lay, L.S_PHASE), _off(lay, L.S_PREV_F0)
    prev = np.float32(state[sf])
    d = f0 - prev
    phase = state[sp]
    cum = 0.0
    wrapped = phase
    for n in range(hop):
        f0s = prev + d * w[ramp + n]
        cum += np.float64(f0s) * step
        wrapped = np.fmod(phase + cum, two_pi)
        p32 = np.float64(np.float32(wrapped))
        s64[c2 + n] = 2.0 * math.cos(p32)
        s64[s0 + n] = -math.sin(p32)
        s64[s1 + n] = 0.0
        s64[acc_a + n] = 0.0
        s64[acc_b + n] = 0.0
        sx[kn + n] = _audible(f0s, nyq, k_n)
    state[sp] = wrapped
    state[sf] = f0


@numba.njit(fastmath=FAST, **_OPTS)
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


@numba.njit(fastmath=FAST, **_OPTS)
def _sines1(s, c2, s0, s1, acc_a, acc_b, pk, dk, k, lo, hi):
    """One harmonic k on samples [lo, hi) (vectorised across samples)."""
    pa, da = s[pk + k], s[dk + k]
    for n in range(lo, hi):
        x = s[c2 + n] * s[s1 + n] - s[s0 + n]
        s[s0 + n] = s[s1 + n]
        s[s1 + n] = x
        s[acc_a + n] += pa * x
        s[acc_b + n] += da * x


@numba.njit(fastmath=FAST, **_OPTS)
def _edge(s, sx, kn, c2, s0, s1, acc_a, acc_b, pk, dk, k0, width, lo, hi):
    """Samples [lo, hi): harmonics k0 .. k0 + width - 1 while audible, one at a time."""
    for n in range(lo, hi):
        for k in range(k0, min(k0 + width, np.uint64(sx[kn + n]))):
            x = s[c2 + n] * s[s1 + n] - s[s0 + n]
            s[s0 + n] = s[s1 + n]
            s[s1 + n] = x
            s[acc_a + n] += s[pk + k] * x
            s[acc_b + n] += s[dk + k] * x


@numba.njit(**_OPTS)
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


@numba.njit(**_OPTS)
def _harmonic(w, lay, sx, audio):
    """Sum of the audible harmonics with ramped amplitudes into ``audio[0:hop]``."""
    hop = _dim(lay, L.D_HOP)
    s = sx.view(np.float64)
    c2, s0, s1 = _off(lay, L.X_C2) // U2, _off(lay, L.X_S0) // U2, _off(lay, L.X_S1) // U2
    acc_a, acc_b = _off(lay, L.X_ACC_A) // U2, _off(lay, L.X_ACC_B) // U2
    pk, dk, kn = _off(lay, L.X_PK) // U2, _off(lay, L.X_DK) // U2, _off(lay, L.X_KN)
    falling = sx[kn] < sx[kn + hop - U1]
    k_max = np.uint64(max(sx[kn], sx[kn + hop - U1]))
    k0 = U0  # 0-based index of the next harmonic
    while k0 < k_max:
        width = U8 if k0 + U8 <= k_max else U1
        lo, hi = _audible_range(sx, kn, hop, k0 + width, falling)  # all of the block audible
        if width == U8:
            _sines8(s, c2, s0, s1, acc_a, acc_b, pk, dk, k0, lo, hi)
            elo, ehi = _audible_range(sx, kn, hop, k0 + U1, falling)
            # edges, where only the first few of the 8 are audible: [elo, lo) and [hi, ehi)
            _edge(s, sx, kn, c2, s0, s1, acc_a, acc_b, pk, dk, k0, width, elo, lo)
            _edge(s, sx, kn, c2, s0, s1, acc_a, acc_b, pk, dk, k0, width, hi, ehi)
        else:
            _sines1(s, c2, s0, s1, acc_a, acc_b, pk, dk, k0, lo, hi)
        k0 += width
    ramp = _off(lay, L.W_RAMP)
    for n in range(hop):
        audio[n] = np.float32(s[acc_a + n]) + np.float32(s[acc_b + n]) * w[ramp + n]


@numba.njit(**_OPTS)
def _noise(w, lay, noise_gain, state, sx, audio):
    """Table noise filtered by the frame's FIR (band magnitudes x noise gain), overlap-added
    with the tail of earlier frames, added to ``audio``; the tail and position updated."""
    hop, nb, nbp = _dim(lay, L.D_HOP), _dim(lay, L.D_NB), _dim(lay, L.D_NBP)
    taps, n_seg = _dim(lay, L.D_TAPS), _dim(lay, L.D_NSEG)
    la, lb, period = lay[L.D_NOISE_A], lay[L.D_NOISE_B], lay[L.D_PERIOD]
    p, mags, g = _off(lay, L.X_P) + U1 + _dim(lay, L.D_K), _off(lay, L.X_MAGS), _off(lay, L.X_G)
    y, white = _off(lay, L.X_Y), _off(lay, L.X_WHITE)
    for b in range(nb):
        sx[mags + b] = sx[p + b] * noise_gain
    _matvec(w, _off(lay, L.W_FIR), taps, nbp, sx, mags, w, U0, False, sx, g)
    sp = _off(lay, L.S_POS)
    pos = state[sp]
    if not (pos >= 0 and pos < period):  # only a corrupt state; keeps the indices in range
        pos = 0.0
    ipos = np.int64(pos)
    ia, ib = ipos % la, ipos % lb
    na, nbo = _off(lay, L.W_NOISE_A), _off(lay, L.W_NOISE_B)
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
    tail = _off(lay, L.S_TAIL)
    for n in range(hop):
        audio[n] += sx[y + n] + np.float32(state[tail + n])
    for sgm in range(n_seg - U1):
        last = sgm + U2 == n_seg
        for n in range(hop):
            v = sx[y + (sgm + U1) * hop + n]
            if not last:
                v += np.float32(state[tail + (sgm + U1) * hop + n])
            state[tail + sgm * hop + n] = v


@numba.njit(fastmath=FAST, **_OPTS)
def _convolve(sx, x, n_x, g, taps, y):
    """y[n + j] += x[n] g[j]: the full convolution, only where x is non-zero."""
    for n in range(n_x):
        xn = sx[x + n]
        for j in range(taps):
            sx[y + n + j] += xn * sx[g + j]


@numba.njit(fastmath=FAST, **_OPTS)
def _reverb(w, lay, state, sx, audio, out):
    """out = audio + the learned impulse response over [history, audio]; history updated."""
    hop, n_rev = _dim(lay, L.D_HOP), _dim(lay, L.D_NREV)
    x, kr, sh = _off(lay, L.X_REVX), _off(lay, L.W_REV), _off(lay, L.S_REV)
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


@numba.njit(FRAME_SIGNATURE, **_OPTS)
def voice_frame(weights, layout, controls, f0_hz, loudness_db, state, scratch, out):
    """One frame: ``out[:hop]`` (float32) from f0 (Hz), loudness (dB) and ``controls`` (float32:
    pitch_shift_semitones, loudness_offset_db, harmonic_gain_db, noise_gain_db); ``state``
    updated in place. ``weights``, ``layout``, ``state`` and ``scratch`` from read_voice."""
    w, lay = weights, layout
    c = _off(lay, L.W_CONST)
    g_shift = np.float32(math.exp(np.float64(controls[0] * w[c + L.C_CTRL_SCALE])))
    g_harm = np.float32(math.exp(np.float64(controls[2] * w[c + L.C_CTRL_SCALE + 2])))
    g_noise = np.float32(math.exp(np.float64(controls[3] * w[c + L.C_CTRL_SCALE + 3])))
    f0 = np.float32(f0_hz) * g_shift
    if f0 < w[c + L.C_F0_MIN]:
        f0 = w[c + L.C_F0_MIN]
    elif f0 > w[c + L.C_F0_MAX]:
        f0 = w[c + L.C_F0_MAX]
    ld = np.float32(loudness_db) + controls[1]
    if ld < w[c + L.C_LD_MIN]:
        ld = w[c + L.C_LD_MIN]
    elif ld > w[c + L.C_LD_MAX]:
        ld = w[c + L.C_LD_MAX]
    _decode(w, lay, f0, ld, state, scratch)
    _amplitudes(w, lay, f0, g_harm, state, scratch)
    _phases(w, lay, f0, state, scratch)
    hop = _dim(lay, L.D_HOP)
    a = _off(lay, L.X_AUDIO)
    dry = scratch[a: a + hop]
    _harmonic(w, lay, scratch, dry)
    _noise(w, lay, g_noise, state, scratch, dry)
    if lay[L.D_NREV] > 0:
        _reverb(w, lay, state, scratch, dry, out)
    else:
        for n in range(hop):
            out[n] = dry[n]


@numba.njit(FRAMES_SIGNATURE, **_OPTS)
def voice_frames(weights, layout, controls, f0_hz, loudness_db, state, scratch, out):
    """Frames one after another: ``controls`` (n, 4) or (1, 4) for all frames, ``f0_hz`` and
    ``loudness_db`` (n,) float32, ``out`` (n, hop)."""
    n_ctrl = controls.shape[0]
    for i in range(f0_hz.shape[0]):
        voice_frame(weights, layout, controls[min(i, n_ctrl - 1)], np.float64(f0_hz[i]),
                    np.float64(loudness_db[i]), state, scratch, out[i])
