"""fx mode's matched chain in the callback: the twins of :class:`pimodule.device.fx.twin_chain.ChainTwin`
compiled, allocation-free, on the shared block.

The chain is eq → compressor → distortion → reverb → gain, as the twins (:mod:`pimodule.device.fx.twin_effects`)
compute it, in float64: each block, every parameter's [0, 1] position moves a one-pole step towards its
target (``a = 1 - exp(-n / (smoothing_ms · rate))``, snapped once within 1e-6), the derived coefficients
follow (RBJ biquads, attack/release coefficients, the gains' ramp targets), gains ramp linearly inside the
block, stages switched on or off crossfade with a per-block weight, the distortion's curve switches at a
block boundary. The reverb is the twin's uniformly partitioned overlap-save convolution (partition N ≤ the
predelay, so no added latency) with a frequency-domain delay line and the IR crossfaded over one partition
when it changes; its partition spectra are built by the control process (:mod:`.fxparams`) into one of
four slots.

Everything lives in ``D_FX`` (float64) and ``I_FX`` (int64); nothing else of the block is touched but
``I_MATCH`` and the sizes. Who writes what (``C`` the control process, ``A`` the audio process):

- ``I_FX``: ``X_GEN`` (C) the targets' sequence lock (odd while being written), ``X_IR_GEN``/``X_IR_SLOT``/
  ``X_IR_IMM`` (C) the newest IR's slot, ``X_N``/``X_P``/``X_READY`` (C, once) the reverb's geometry, the
  FFT's bit reversal at ``X_REV``; the rest (A).
- ``D_FX``: constants ``K_*`` (C, once), the targets' record ``R_*`` (C, under ``X_GEN``), the audio's
  state ``S_*`` (A), then the buffers (:func:`layout`), the IR slots last (C writes a slot only when the
  audio has acknowledged the previous IR and reads neither it nor the installed one).

The control side's targets are copied at a block boundary when the generation is even and unchanged
across the copy (a torn copy is retried); an IR is taken at a block boundary and installed at the next
partition boundary (crossfaded), or at once when published as immediate. Geometry, slot numbers and the
bit-reversal table are checked before use: whatever the block holds, nothing is read out of bounds.
A block whose output went non-finite resets the chain's signal state (EQ, detector, reverb).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from pimodule.device.rt import fft
from pimodule.device.rt import shared as L
from pimodule.device.rt.dsp import OPTS
from pimodule.device.rt.lowlevel import fence

# -- the chain's structure (fxparams checks it against pimodule.core.fx_specs) -----------------------------
EQ, COMP, DIST, REV, GAIN = range(5)
N_STAGES = 5
STAGE_NAMES = ("eq", "compressor", "distortion", "reverb", "gain")
PARAM_NAMES = (
    (
        "low_shelf_gain_db",
        "low_shelf_freq_hz",
        "peak1_gain_db",
        "peak1_freq_hz",
        "peak1_q",
        "peak2_gain_db",
        "peak2_freq_hz",
        "peak2_q",
        "peak3_gain_db",
        "peak3_freq_hz",
        "peak3_q",
        "high_shelf_gain_db",
        "high_shelf_freq_hz",
    ),
    ("threshold_db", "ratio", "attack_ms", "release_ms", "knee_db", "makeup_db"),
    ("drive_db", "output_gain_db"),
    ("decay_s", "damping_pct", "mix_pct"),
    ("gain_db",),
)
P_START = (0, 13, 19, 21, 24)
P_COUNT = (13, 6, 2, 3, 1)
N_P = 25
MODES = ("hard", "soft", "tanh")  # the distortion curves, by index
HARD, SOFT, TANH = 0, 1, 2
N_SLOTS = 4  # reverb IR slots: installed, incoming, and two for publications not yet taken
MAX_PARTITION = 256

# -- I_FX (int64) ---------------------------------------------------------------------------------------------
(
    X_GEN,
    X_SEEN,
    X_IR_GEN,
    X_IR_SLOT,
    X_IR_IMM,
    X_IR_SEEN,
    X_IR_CUR,
    X_IR_NEXT,
    X_N,
    X_P,
    X_READY,
    X_INIT,
    X_NEWEST,
    X_POS,
    X_MODE,
    X_FILLED,
    X_N_RESETS,
    X_MOVING,
) = range(18)  # X_MOVING: 5 flags
X_IR_BASE = 24  # (C) an immediate IR not yet taken when this one was published: installed first
X_REV = 32  # N entries: the bit reversal of the N-point complex FFT
X_LEN = X_REV + MAX_PARTITION

# -- D_FX (float64): constants (C) ------------------------------------------------------------------------------
K_RATE, K_RMS_C, K_MAX_FREQ = 0, 1, 2
K_MIN, K_MAX, K_LOG, K_LO, K_HI, K_JUMP = 8, 33, 58, 83, 108, 133  # N_P each
# the targets' record (C, under X_GEN)
R_TARGET, R_UNIT, R_PHYS = 160, 185, 210  # N_P each
R_WT, R_W, R_PRESENT = 235, 240, 245  # N_STAGES each
R_MODE, R_IMM, R_SMOOTH = 250, 251, 252
R_END = 253
# the audio's state (A)
S_TARGET, S_UNIT, S_PHYS = 256, 281, 306
S_WT, S_W, S_PRESENT = 331, 336, 341
S_SMOOTH, S_IMM_SEEN = 346, 347
S_SOS = 348  # 5 sections x (b0, b1, b2, a1, a2)
S_ZI = 373  # 5 sections x 2
S_AT, S_RT, S_LZI, S_G = 384, 385, 386, 387
S_RAMP = 388  # (value, target) of: makeup, drive, output gain, mix, gain
RP_MAKEUP, RP_DRIVE, RP_OUT, RP_MIX, RP_GAIN = range(5)
HEADER = 400


@numba.njit(**OPTS)
def layout(n_part, n_parts, chunk):
    """Offsets in ``D_FX`` of the buffers after the header, and the length they need:
    (work, dry, cos, sin, fade, window, wet, old, acc_re, acc_im, w_re, w_im, tmp, acc, fdl, slots, end).
    Spectra are interleaved (re, im) rows of ``n_part + 1`` bins: ``acc`` one row, ``fdl`` ``n_parts`` rows,
    slot ``s`` of the IR ``n_parts`` rows at ``slots + 2 s n_parts (n_part + 1)``."""
    m = n_part + 1
    o = HEADER
    work = o
    o += chunk
    dry = o
    o += chunk
    cos = o
    o += m + n_part  # the FFT's tables (fft.table_size(2 n_part))
    sin = o
    o += m + n_part
    fade = o
    o += n_part
    win = o
    o += 2 * n_part
    wet = o
    o += n_part
    old = o
    o += n_part
    acc_re = o
    o += m
    acc_im = o
    o += m
    w_re = o
    o += n_part
    w_im = o
    o += n_part
    tmp = o
    o += 2 * n_part
    acc = o
    o += 2 * m
    o += (-o) % 8
    fdl = o
    o += 2 * n_parts * m
    slots = o
    o += 2 * N_SLOTS * n_parts * m
    return work, dry, cos, sin, fade, win, wet, old, acc_re, acc_im, w_re, w_im, tmp, acc, fdl, slots, o


@numba.njit(**OPTS)
def _buffers(ih, dh):
    off = ih[L.I_BUF + 2 * L.D_FX]
    d = dh[off : off + ih[L.I_BUF + 2 * L.D_FX + 1]]
    off = ih[L.I_BUF + 2 * L.I_FX]
    x = ih[off : off + ih[L.I_BUF + 2 * L.I_FX + 1]]
    return d, x


@numba.njit(**OPTS)
def _geometry_ok(ih, d, x):
    """The reverb's geometry as written by the control side fits the buffers (and the tables are sane)."""
    if x.shape[0] < X_LEN or d.shape[0] < HEADER or x[X_READY] != 1:
        return False
    n, p, chunk = x[X_N], x[X_P], ih[L.I_MAX_CHUNK]
    if n < 2 or n > MAX_PARTITION or (n & (n - 1)) != 0 or p < 1 or p > (1 << 20) or chunk < 1 or chunk > (1 << 24):
        return False
    return layout(n, p, chunk)[16] <= d.shape[0]


@numba.njit(**OPTS)
def _rev_ok(x, n):
    rev = x[X_REV : X_REV + n]
    for i in range(n):
        if rev[i] < 0 or rev[i] >= n:
            return False
    return True


# -- derived coefficients ------------------------------------------------------------------------------------------
@numba.njit(**OPTS)
def _from_unit(d, j, u):
    """ParamSpec.from_unit then clamp (the twins' set_params)."""
    u = min(max(u, 0.0), 1.0)
    lo = d[K_MIN + j]
    hi = d[K_MAX + j]
    if d[K_LOG + j] != 0.0:
        a, b = d[K_LO + j], d[K_HI + j]
        v = math.exp(a + (b - a) * u)
    else:
        v = lo + (hi - lo) * u
    return min(max(v, lo), hi)


@numba.njit(**OPTS)
def _rbj(d, k, kind, freq_hz, gain_db, q, sr):
    """twin_core.rbj_biquad into section ``k`` of S_SOS (kind 0 peak, 1 low shelf, 2 high shelf)."""
    freq_hz = min(max(freq_hz, 1.0), d[K_MAX_FREQ] * sr)
    w0 = (2.0 * math.pi / sr) * freq_hz
    cos_w0, sin_w0 = math.cos(w0), math.sin(w0)
    big_a = 10.0 ** (gain_db / 40.0)
    if kind == 0:
        alpha = sin_w0 / (2.0 * q)
        b0, b1, b2 = 1.0 + alpha * big_a, -2.0 * cos_w0, 1.0 - alpha * big_a
        a0, a1, a2 = 1.0 + alpha / big_a, -2.0 * cos_w0, 1.0 - alpha / big_a
    else:
        alpha = sin_w0 / 2.0 * math.sqrt(2.0)
        tsa = 2.0 * math.sqrt(big_a) * alpha
        ap1, am1 = big_a + 1.0, big_a - 1.0
        if kind == 1:
            b0 = big_a * (ap1 - am1 * cos_w0 + tsa)
            b1 = 2.0 * big_a * (am1 - ap1 * cos_w0)
            b2 = big_a * (ap1 - am1 * cos_w0 - tsa)
            a0 = ap1 + am1 * cos_w0 + tsa
            a1 = -2.0 * (am1 + ap1 * cos_w0)
            a2 = ap1 + am1 * cos_w0 - tsa
        else:
            b0 = big_a * (ap1 + am1 * cos_w0 + tsa)
            b1 = -2.0 * big_a * (am1 + ap1 * cos_w0)
            b2 = big_a * (ap1 + am1 * cos_w0 - tsa)
            a0 = ap1 - am1 * cos_w0 + tsa
            a1 = 2.0 * (am1 - ap1 * cos_w0)
            a2 = ap1 - am1 * cos_w0 - tsa
    o = S_SOS + 5 * k
    d[o], d[o + 1], d[o + 2], d[o + 3], d[o + 4] = b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0


@numba.njit(**OPTS)
def _derive(d, s, jump):
    """A stage's coefficients and ramp targets from its physical parameters (TwinEffect._update);
    ``jump``: the ramps take their targets at once (set_params(ramp=False))."""
    sr = d[K_RATE]
    p = S_PHYS + P_START[s]
    if s == EQ:
        _rbj(d, 0, 1, d[p + 1], d[p], 0.707, sr)
        _rbj(d, 1, 0, d[p + 3], d[p + 2], d[p + 4], sr)
        _rbj(d, 2, 0, d[p + 6], d[p + 5], d[p + 7], sr)
        _rbj(d, 3, 0, d[p + 9], d[p + 8], d[p + 10], sr)
        _rbj(d, 4, 2, d[p + 12], d[p + 11], 0.707, sr)
        return
    if s == COMP:
        d[S_AT] = 1.0 - math.exp(-1000.0 / (d[p + 2] * sr))
        d[S_RT] = 1.0 - math.exp(-1000.0 / (d[p + 3] * sr))
        r0, r1 = RP_MAKEUP, RP_MAKEUP
        d[S_RAMP + 2 * RP_MAKEUP + 1] = 10.0 ** (d[p + 5] / 20.0)
    elif s == DIST:
        r0, r1 = RP_DRIVE, RP_OUT
        d[S_RAMP + 2 * RP_DRIVE + 1] = 10.0 ** (d[p] / 20.0)
        d[S_RAMP + 2 * RP_OUT + 1] = 10.0 ** (d[p + 1] / 20.0)
    elif s == REV:
        r0, r1 = RP_MIX, RP_MIX
        d[S_RAMP + 2 * RP_MIX + 1] = d[p + 2] / 100.0
    else:
        r0, r1 = RP_GAIN, RP_GAIN
        d[S_RAMP + 2 * RP_GAIN + 1] = 10.0 ** (d[p] / 20.0)
    if jump:
        for r in range(r0, r1 + 1):
            d[S_RAMP + 2 * r] = d[S_RAMP + 2 * r + 1]


# -- state -------------------------------------------------------------------------------------------------------------
@numba.njit(**OPTS)
def _clear_signal(d, x, ok, chunk):
    """The twins' reset(): filter states, the detector, the reverb's history (not parameters or IRs)."""
    for i in range(10):
        d[S_ZI + i] = 0.0
    d[S_LZI] = 0.0
    d[S_G] = 1.0
    x[X_NEWEST] = 0
    x[X_POS] = 0
    x[X_FILLED] = 0  # the delay line's rows older than this many partitions count as zero
    if ok:
        n = x[X_N]
        _, _, _, _, _, win, wet, _, _, _, _, _, _, _, _, _, _ = layout(n, x[X_P], chunk)
        for i in range(2 * n):
            d[win + i] = 0.0
        for i in range(n):
            d[wet + i] = 0.0


@numba.njit(**OPTS)
def _init_once(d, x, ok, chunk):
    if x[X_INIT] == 1:
        return
    _clear_signal(d, x, ok, chunk)
    x[X_IR_CUR] = -1
    fence()
    x[X_IR_NEXT] = -1
    x[X_MODE] = TANH
    for s in range(N_STAGES):
        d[S_PRESENT + s] = 0.0
        d[S_W + s] = 0.0
        d[S_WT + s] = 0.0
        x[X_MOVING + s] = 0
    x[X_INIT] = 1


@numba.njit(**OPTS)
def reset(ih, dh, fh):
    """Entering fx mode: the chain's audio state is cleared (parameters, weights and IRs stay)."""
    d, x = _buffers(ih, dh)
    if x.shape[0] < X_LEN or d.shape[0] < HEADER:
        return
    ok = _geometry_ok(ih, d, x)
    if x[X_INIT] != 1:
        _init_once(d, x, ok, ih[L.I_MAX_CHUNK])
    else:
        _clear_signal(d, x, ok, ih[L.I_MAX_CHUNK])


@numba.njit(**OPTS)
def _take_targets(d, x):
    """At a block boundary: the newest complete record of targets (ChainTwin's set_* calls)."""
    for _ in range(4):
        g = x[X_GEN]
        if g == x[X_SEEN] or (g & 1) != 0:
            return
        fence()
        for j in range(N_P):
            d[S_TARGET + j] = d[R_TARGET + j]
        for s in range(N_STAGES):
            d[S_WT + s] = d[R_WT + s]
            d[S_PRESENT + s] = d[R_PRESENT + s]
        d[S_SMOOTH] = d[R_SMOOTH]
        mode_value = d[R_MODE]
        imm = d[R_IMM]
        immediate = imm != d[S_IMM_SEEN]
        if immediate:
            for j in range(N_P):
                d[S_UNIT + j] = d[R_UNIT + j]
                d[S_PHYS + j] = d[R_PHYS + j]
            for s in range(N_STAGES):
                d[S_W + s] = d[R_W + s]
        fence()
        if x[X_GEN] != g:
            continue  # written meanwhile: copy again
        x[X_SEEN] = g
        mode = HARD if mode_value == 0.0 else (SOFT if mode_value == 1.0 else TANH)
        if immediate:
            d[S_IMM_SEEN] = imm
            for s in range(N_STAGES):
                _derive(d, s, True)
        if mode != x[X_MODE]:  # a new curve: a new twin, its gains at their targets
            x[X_MODE] = mode
            d[S_RAMP + 2 * RP_DRIVE] = d[S_RAMP + 2 * RP_DRIVE + 1]
            d[S_RAMP + 2 * RP_OUT] = d[S_RAMP + 2 * RP_OUT + 1]
        for j in range(N_P):
            if d[K_JUMP + j] != 0.0:  # rebuilt, not smoothed (the IR crossfades instead)
                d[S_UNIT + j] = d[S_TARGET + j]
        for s in range(N_STAGES):
            x[X_MOVING + s] = 1  # ChainTwin: a version bump per set_params
        return


@numba.njit(**OPTS)
def _take_ir(x):
    g = x[X_IR_GEN]
    if g == x[X_IR_SEEN]:
        return
    fence()
    s = x[X_IR_SLOT]
    imm = x[X_IR_IMM]
    base = x[X_IR_BASE]
    cur = x[X_IR_CUR]
    if 0 <= s < N_SLOTS:
        if imm == 0 and 0 <= base < N_SLOTS and base != s:  # the skipped immediate IR, then this one
            cur = base
            x[X_IR_CUR] = cur
        if imm != 0 or cur < 0 or cur >= N_SLOTS:
            x[X_IR_CUR] = s
            fence()
            x[X_IR_NEXT] = -1
        elif s != cur:
            x[X_IR_NEXT] = s  # the newest wins; crossfaded at the next partition boundary
        else:
            x[X_IR_NEXT] = -1
    fence()
    x[X_IR_SEEN] = g


@numba.njit(**OPTS)
def _smooth(d, x, s, a):
    """ChainTwin.process's parameter step for one stage."""
    if x[X_MOVING + s] == 0:
        return
    j0, nj = P_START[s], P_COUNT[s]
    far = 0.0
    for j in range(j0, j0 + nj):
        u = d[S_UNIT + j]
        t = d[S_TARGET + j]
        u += a * (t - u)
        if not math.isfinite(u):  # only from garbage in the block: back to something sane
            u = t if math.isfinite(t) else 0.0
        d[S_UNIT + j] = u
        far = max(far, abs(u - t))
    if far < 1e-6:
        for j in range(j0, j0 + nj):
            d[S_UNIT + j] = d[S_TARGET + j]
        x[X_MOVING + s] = 0
    for j in range(j0, j0 + nj):
        d[S_PHYS + j] = _from_unit(d, j, d[S_UNIT + j])
    _derive(d, s, False)


# -- the effects, in place on w[:n] (float64) ------------------------------------------------------------------------
@numba.njit(**OPTS)
def _ramp_mul(d, r, w, n):
    """w *= _Ramp.block(n)."""
    v = d[S_RAMP + 2 * r]
    t = d[S_RAMP + 2 * r + 1]
    if t == v:
        for i in range(n):
            w[i] *= v
        return
    for i in range(n):
        w[i] *= v + (t - v) * ((i + 1.0) / n)
    d[S_RAMP + 2 * r] = t


@numba.njit(**OPTS)
def _eq(d, w, n):
    for k in range(5):  # section by section over the block: the same numbers as sample by sample
        o = S_SOS + 5 * k
        b0, b1, b2, a1, a2 = d[o], d[o + 1], d[o + 2], d[o + 3], d[o + 4]
        z0, z1 = d[S_ZI + 2 * k], d[S_ZI + 2 * k + 1]
        for i in range(n):
            xc = w[i]
            y = b0 * xc + z0
            z0 = b1 * xc - a1 * y + z1
            z1 = b2 * xc - a2 * y
            w[i] = y
        d[S_ZI + 2 * k], d[S_ZI + 2 * k + 1] = z0, z1


@numba.njit(**OPTS)
def _compressor(d, w, n):
    p = S_PHYS + P_START[COMP]
    thr, ratio, knee_db = d[p], d[p + 1], d[p + 4]
    c = d[K_RMS_C]
    a1 = c - 1.0
    slope = 1.0 / ratio - 1.0
    knee = max(knee_db, 1e-3)
    z, g, at, rt = d[S_LZI], d[S_G], d[S_AT], d[S_RT]
    v = d[S_RAMP + 2 * RP_MAKEUP]
    t = d[S_RAMP + 2 * RP_MAKEUP + 1]
    ramp = t != v
    for i in range(n):
        xi = w[i]
        pw = (xi * xi) * c
        y = z + pw
        z = 0.0 * pw - a1 * y
        level_db = 10.0 * math.log10(max(y, 0.0) + 1e-10)
        over = level_db - thr
        if 2.0 * over <= -knee:
            g_db = 0.0 * over
        elif 2.0 * over >= knee:
            g_db = slope * over
        else:
            e = over + knee / 2.0
            g_db = slope * (e * e) / (2.0 * knee)
        f = 10.0 ** (g_db / 20.0)
        g += (at if f < g else rt) * (f - g)
        m = v + (t - v) * ((i + 1.0) / n) if ramp else v
        w[i] = xi * (g * m)
    d[S_LZI], d[S_G] = z, g
    d[S_RAMP + 2 * RP_MAKEUP] = t


@numba.njit(**OPTS)
def _distortion(d, x, w, n):
    _ramp_mul(d, RP_DRIVE, w, n)
    mode = x[X_MODE]
    if mode == HARD:
        for i in range(n):
            w[i] = min(max(w[i], -1.0), 1.0)
    elif mode == SOFT:
        for i in range(n):
            v = min(max(w[i] / 1.5, -1.0), 1.0)
            w[i] = 1.5 * (v - v**3.0 / 3.0)
    else:
        for i in range(n):
            w[i] = math.tanh(w[i])
    _ramp_mul(d, RP_OUT, w, n)


@numba.njit(**OPTS)
def _mac_row(acc, a, b, m):
    """acc += a · b over m interleaved complex bins, as numpy multiplies complex numbers (one stream per
    array: the compiler vectorises it behind its overlap checks, ld2/st2 on NEON)."""
    for f in range(m):
        ar, ai = a[2 * f], a[2 * f + 1]
        br, bi = b[2 * f], b[2 * f + 1]
        acc[2 * f] += ar * br - ai * bi
        acc[2 * f + 1] += ar * bi + ai * br


@numba.njit(**OPTS)
def _wet_of(d, slot, out, n, p, pm, fdl_t, slots, newest, filled, acc, acc_re, acc_im, rev, cos, sin, w_re, w_im, tmp):
    """The last N samples of irfft(Σ_j fdl[newest + j] · h_slot[j], 2N) into out[:N] (zeros without an IR)."""
    m = n + 1
    if slot < 0:
        for i in range(n):
            out[i] = 0.0
        return
    base = slots + 2 * slot * pm
    h = d[base : base + 2 * pm]
    for f in range(2 * m):
        acc[f] = 0.0
    for j in range(filled):  # rows older than ``filled`` partitions are zero since the last reset
        r = newest + j
        if r >= p:
            r -= p
        _mac_row(acc, fdl_t[2 * r * m : 2 * (r + 1) * m], h[2 * j * m : 2 * (j + 1) * m], m)
    for f in range(m):
        acc_re[f] = acc[2 * f]
        acc_im[f] = acc[2 * f + 1]
    fft.irfft(acc_re, acc_im, 2 * n, tmp, w_re, w_im, rev, cos, sin, 2 * n)
    for i in range(n):
        out[i] = tmp[n + i]


@numba.njit(**OPTS)
def _reverb(d, x, ih, w, n_total):
    """ReverbTwin.process: partitioned convolution, the mix ramped over the block."""
    n, p = x[X_N], x[X_P]
    m = n + 1
    pm = p * m
    _, _, cos, sin, fade, win, wet, old, acc_re, acc_im, w_re, w_im, tmp, acc, fdl, slots, _ = layout(
        n, p, ih[L.I_MAX_CHUNK]
    )
    cos_t, sin_t = d[cos : cos + m + n], d[sin : sin + m + n]
    fade_t, win_t, wet_t, old_t = d[fade : fade + n], d[win : win + 2 * n], d[wet : wet + n], d[old : old + n]
    acc_re_t, acc_im_t = d[acc_re : acc_re + m], d[acc_im : acc_im + m]
    w_re_t, w_im_t, tmp_t = d[w_re : w_re + n], d[w_im : w_im + n], d[tmp : tmp + 2 * n]
    acc_t, fdl_t = d[acc : acc + 2 * m], d[fdl : fdl + 2 * pm]
    rev = x[X_REV : X_REV + n]
    v = d[S_RAMP + 2 * RP_MIX]
    t = d[S_RAMP + 2 * RP_MIX + 1]
    ramp = t != v
    pos = x[X_POS]
    if pos < 0 or pos >= n:
        pos = 0
    start = 0
    while start < n_total:
        k = min(n - pos, n_total - start)
        for i in range(k):
            xi = w[start + i]
            win_t[n + pos + i] = xi
            mix = v + (t - v) * ((start + i + 1.0) / n_total) if ramp else v
            w[start + i] = xi * (1.0 - mix) + mix * wet_t[pos + i]
        pos += k
        start += k
        if pos == n:  # a partition is complete: its spectrum enters the delay line, the next wet part
            pos = 0
            newest = x[X_NEWEST] - 1
            if newest < 0 or newest >= p:
                newest = p - 1
            x[X_NEWEST] = newest
            filled = min(max(x[X_FILLED], 0) + 1, p)
            x[X_FILLED] = filled
            fft.rfft(win_t, 2 * n, acc_re_t, acc_im_t, w_re_t, w_im_t, rev, cos_t, sin_t, 2 * n)
            row = fdl_t[2 * newest * m : 2 * (newest + 1) * m]
            for f in range(m):
                row[2 * f] = acc_re_t[f]
                row[2 * f + 1] = acc_im_t[f]
            cur, nxt = x[X_IR_CUR], x[X_IR_NEXT]
            if cur >= N_SLOTS:
                cur = -1
            if 0 <= nxt < N_SLOTS and nxt != cur:  # a new IR: crossfade the two outputs over this partition
                _wet_of(d, cur, old_t, n, p, pm, fdl_t, slots, newest, filled, acc_t, acc_re_t, acc_im_t, rev,
                        cos_t, sin_t, w_re_t, w_im_t, tmp_t)  # fmt: skip
                _wet_of(d, nxt, wet_t, n, p, pm, fdl_t, slots, newest, filled, acc_t, acc_re_t, acc_im_t, rev,
                        cos_t, sin_t, w_re_t, w_im_t, tmp_t)  # fmt: skip
                for i in range(n):
                    o = old_t[i]
                    wet_t[i] = o + (wet_t[i] - o) * fade_t[i]
                x[X_IR_CUR] = nxt
                fence()
                x[X_IR_NEXT] = -1
            else:
                _wet_of(d, cur, wet_t, n, p, pm, fdl_t, slots, newest, filled, acc_t, acc_re_t, acc_im_t, rev,
                        cos_t, sin_t, w_re_t, w_im_t, tmp_t)  # fmt: skip
            for i in range(n):
                win_t[i] = win_t[n + i]
    x[X_POS] = pos
    d[S_RAMP + 2 * RP_MIX] = t


@numba.njit(**OPTS)
def _stage(d, x, ih, s, w, n, reverb_ok):
    if s == EQ:
        _eq(d, w, n)
    elif s == COMP:
        _compressor(d, w, n)
    elif s == DIST:
        _distortion(d, x, w, n)
    elif s == REV:
        if reverb_ok:
            _reverb(d, x, ih, w, n)
    else:
        _ramp_mul(d, RP_GAIN, w, n)


@numba.njit(**OPTS)
def _chain(ih, d, x, w, dry, n, reverb_ok):
    """ChainTwin.process on w[:n] (float64, in place); ``dry``: scratch of at least n."""
    sr = d[K_RATE]
    smooth_ms = d[S_SMOOTH]
    if smooth_ms > 0:
        a = 1.0 - math.exp(-n / (smooth_ms * 1e-3 * sr))
    else:
        a = 1.0
    for s in range(N_STAGES):
        if d[S_PRESENT + s] == 0.0:
            continue
        _smooth(d, x, s, a)
        w0 = d[S_W + s]
        wt = d[S_WT + s]
        w1 = w0 + a * (wt - w0)
        if abs(w1 - wt) < 1e-4:
            w1 = wt
        if not (0.0 <= w1 <= 1.0):  # only from garbage in the block
            w1 = 0.0
            if not (0.0 <= w0 <= 1.0):
                w0 = 0.0
        d[S_W + s] = w1
        if w0 == 0.0 and w1 == 0.0:
            continue
        if w0 == 1.0 and w1 == 1.0:
            _stage(d, x, ih, s, w, n, reverb_ok)
            continue
        for i in range(n):
            dry[i] = w[i]
        _stage(d, x, ih, s, w, n, reverb_ok)
        for i in range(n):
            wi = w0 + (w1 - w0) * ((i + 1.0) / n)
            w[i] = w[i] * wi + (1.0 - wi) * dry[i]


@numba.njit(**OPTS)
def _begin(ih, dh):
    """At a block boundary: checks, first use, the control side's news. (d, x, dry offset, reverb ok, ok)."""
    d, x = _buffers(ih, dh)
    if x.shape[0] < X_LEN or d.shape[0] < HEADER:
        return d, x, 0, False, False
    ok = _geometry_ok(ih, d, x)
    if x[X_INIT] != 1:
        _init_once(d, x, ok, ih[L.I_MAX_CHUNK])
    if not ok:
        return d, x, 0, False, False
    _take_targets(d, x)
    _take_ir(x)
    reverb_ok = _rev_ok(x, x[X_N])
    return d, x, layout(x[X_N], x[X_P], ih[L.I_MAX_CHUNK])[1], reverb_ok, True


@numba.njit(**OPTS)
def _finish(ih, d, x, w, n, ok):
    bad = False
    for i in range(n):
        if not math.isfinite(w[i]):
            bad = True
            break
    if bad:  # a non-finite output: the chain starts clean (the guard silences this block)
        _clear_signal(d, x, ok, ih[L.I_MAX_CHUNK])
        x[X_N_RESETS] += 1


@numba.njit(**OPTS)
def process64(ih, dh, fh, w, n):
    """The chain on float64 ``w[:n]`` in place (n ≤ the block's max chunk; any n is cut to it)."""
    if ih[L.I_MATCH] == 0:
        return
    d, x, dry_off, reverb_ok, ok = _begin(ih, dh)
    if not ok:
        return
    chunk = ih[L.I_MAX_CHUNK]
    dry = d[dry_off : dry_off + chunk]
    n = min(n, w.shape[0], chunk)
    _chain(ih, d, x, w, dry, n, reverb_ok)
    _finish(ih, d, x, w, n, ok)


@numba.njit(**OPTS)
def process(ih, dh, fh, x32, n):
    """fx matching on the float32 mono block ``x32[:n]`` in place (nothing when I_MATCH is 0); float64
    inside. Blocks longer than the max chunk are processed in pieces of it."""
    if ih[L.I_MATCH] == 0:
        return
    d, x, dry_off, reverb_ok, ok = _begin(ih, dh)
    if not ok:
        return
    chunk = ih[L.I_MAX_CHUNK]
    work_off = layout(x[X_N], x[X_P], chunk)[0]
    work = d[work_off : work_off + chunk]
    dry = d[dry_off : dry_off + chunk]
    n = min(n, x32.shape[0])
    start = 0
    while start < n:
        k = min(chunk, n - start)
        if start > 0:
            _take_targets(d, x)
            _take_ir(x)
        for i in range(k):
            work[i] = x32[start + i]
        _chain(ih, d, x, work, dry, k, reverb_ok)
        _finish(ih, d, x, work, k, ok)
        for i in range(k):
            x32[start + i] = np.float32(work[i])
        start += k
