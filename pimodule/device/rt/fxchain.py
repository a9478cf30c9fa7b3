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
  state ``S_*`` (A), then the buffers (:func:`.fxlayout.layout`), the IR slots last (C writes a slot only when the
  audio has acknowledged the previous IR and reads neither it nor the installed one).

The control side's targets are copied at a block boundary when the generation is even and unchanged
across the copy (a torn copy is retried); an IR is taken at a block boundary and installed at the next
partition boundary (crossfaded), or at once when published as immediate. Geometry, slot numbers and the
bit-reversal table are checked before use: whatever the block holds, nothing is read out of bounds.
A block whose output went non-finite resets the chain's signal state (EQ, the compressor's gain, reverb).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from pimodule.device.rt import fxcoef
from pimodule.device.rt import fxlayout as F
from pimodule.device.rt import shared as L
from pimodule.device.rt.dsp import OPTS
from pimodule.device.rt.fxreverb import reverb
from pimodule.device.rt.lowlevel import fence


# -- state -------------------------------------------------------------------------------------------------------------
@numba.njit(**OPTS)
def _clear_signal(d, x, ok, chunk):
    """The twins' reset(): filter states, the compressor's gain, the reverb's history (not parameters or IRs)."""
    for i in range(10):
        d[F.S_ZI + i] = 0.0
    d[F.S_G] = 1.0
    x[F.X_NEWEST] = 0
    x[F.X_POS] = 0
    x[F.X_FILLED] = 0  # the delay line's rows older than this many partitions count as zero
    if ok:
        n = x[F.X_N]
        _, _, _, _, _, win, wet, _, _, _, _, _, _, _, _, _, _ = F.layout(n, x[F.X_P], chunk)
        for i in range(2 * n):
            d[win + i] = 0.0
        for i in range(n):
            d[wet + i] = 0.0


@numba.njit(**OPTS)
def _init_once(d, x, ok, chunk):
    if x[F.X_INIT] == 1:
        return
    _clear_signal(d, x, ok, chunk)
    x[F.X_IR_CUR] = -1
    fence()
    x[F.X_IR_NEXT] = -1
    x[F.X_MODE] = F.TANH
    for s in range(F.N_STAGES):
        d[F.S_PRESENT + s] = 0.0
        d[F.S_W + s] = 0.0
        d[F.S_WT + s] = 0.0
        x[F.X_MOVING + s] = 0
    x[F.X_INIT] = 1


@numba.njit(**OPTS)
def reset(ih, dh, fh):
    """Entering fx mode: the chain's audio state is cleared (parameters, weights and IRs stay)."""
    d, x = F.buffers(ih, dh)
    if x.shape[0] < F.X_LEN or d.shape[0] < F.HEADER:
        return
    ok = F.geometry_ok(ih, d, x)
    if x[F.X_INIT] != 1:
        _init_once(d, x, ok, ih[L.I_MAX_CHUNK])
    else:
        _clear_signal(d, x, ok, ih[L.I_MAX_CHUNK])


@numba.njit(**OPTS)
def _take_targets(d, x):
    """At a block boundary: the newest complete record of targets (ChainTwin's set_* calls)."""
    for _ in range(4):
        g = x[F.X_GEN]
        if g == x[F.X_SEEN] or (g & 1) != 0:
            return
        fence()
        for j in range(F.N_P):
            d[F.S_TARGET + j] = d[F.R_TARGET + j]
        for s in range(F.N_STAGES):
            d[F.S_WT + s] = d[F.R_WT + s]
            d[F.S_PRESENT + s] = d[F.R_PRESENT + s]
        d[F.S_SMOOTH] = d[F.R_SMOOTH]
        mode_value = d[F.R_MODE]
        imm = d[F.R_IMM]
        immediate = imm != d[F.S_IMM_SEEN]
        if immediate:
            for j in range(F.N_P):
                d[F.S_UNIT + j] = d[F.R_UNIT + j]
                d[F.S_PHYS + j] = d[F.R_PHYS + j]
            for s in range(F.N_STAGES):
                d[F.S_W + s] = d[F.R_W + s]
        fence()
        if x[F.X_GEN] != g:
            continue  # written meanwhile: copy again
        x[F.X_SEEN] = g
        mode = F.HARD if mode_value == 0.0 else (F.SOFT if mode_value == 1.0 else F.TANH)
        if immediate:
            d[F.S_IMM_SEEN] = imm
            for s in range(F.N_STAGES):
                fxcoef.derive(d, s, True)
        if mode != x[F.X_MODE]:  # a new curve: a new twin, its gains at their targets
            x[F.X_MODE] = mode
            d[F.S_RAMP + 2 * F.RP_DRIVE] = d[F.S_RAMP + 2 * F.RP_DRIVE + 1]
            d[F.S_RAMP + 2 * F.RP_OUT] = d[F.S_RAMP + 2 * F.RP_OUT + 1]
        for j in range(F.N_P):
            if d[F.K_JUMP + j] != 0.0:  # rebuilt, not smoothed (the IR crossfades instead)
                d[F.S_UNIT + j] = d[F.S_TARGET + j]
        for s in range(F.N_STAGES):
            x[F.X_MOVING + s] = 1  # ChainTwin: a version bump per set_params
        return


@numba.njit(**OPTS)
def _take_ir(x):
    g = x[F.X_IR_GEN]
    if g == x[F.X_IR_SEEN]:
        return
    fence()
    s = x[F.X_IR_SLOT]
    imm = x[F.X_IR_IMM]
    base = x[F.X_IR_BASE]
    cur = x[F.X_IR_CUR]
    if 0 <= s < F.N_SLOTS:
        if imm == 0 and 0 <= base < F.N_SLOTS and base != s:  # the skipped immediate IR, then this one
            cur = base
            x[F.X_IR_CUR] = cur
        if imm != 0 or cur < 0 or cur >= F.N_SLOTS:
            x[F.X_IR_CUR] = s
            fence()
            x[F.X_IR_NEXT] = -1
        elif s != cur:
            x[F.X_IR_NEXT] = s  # the newest wins; crossfaded at the next partition boundary
        else:
            x[F.X_IR_NEXT] = -1
    fence()
    x[F.X_IR_SEEN] = g


@numba.njit(**OPTS)
def _smooth(d, x, s, a):
    """ChainTwin.process's parameter step for one stage."""
    if x[F.X_MOVING + s] == 0:
        return
    j0, nj = F.P_START[s], F.P_COUNT[s]
    far = 0.0
    for j in range(j0, j0 + nj):
        u = d[F.S_UNIT + j]
        t = d[F.S_TARGET + j]
        u += a * (t - u)
        if not math.isfinite(u):  # only from garbage in the block: back to something sane
            u = t if math.isfinite(t) else 0.0
        d[F.S_UNIT + j] = u
        far = max(far, abs(u - t))
    if far < 1e-6:
        for j in range(j0, j0 + nj):
            d[F.S_UNIT + j] = d[F.S_TARGET + j]
        x[F.X_MOVING + s] = 0
    for j in range(j0, j0 + nj):
        d[F.S_PHYS + j] = fxcoef.from_unit(d, j, d[F.S_UNIT + j])
    fxcoef.derive(d, s, False)


# -- the effects, in place on w[:n] (float64) ------------------------------------------------------------------------
@numba.njit(**OPTS)
def _ramp_mul(d, r, w, n):
    """w *= _Ramp.block(n)."""
    v = d[F.S_RAMP + 2 * r]
    t = d[F.S_RAMP + 2 * r + 1]
    if t == v:
        for i in range(n):
            w[i] *= v
        return
    for i in range(n):
        w[i] *= v + (t - v) * ((i + 1.0) / n)
    d[F.S_RAMP + 2 * r] = t


@numba.njit(**OPTS)
def _eq(d, w, n):
    for k in range(5):  # section by section over the block: the same numbers as sample by sample
        o = F.S_SOS + 5 * k
        b0, b1, b2, a1, a2 = d[o], d[o + 1], d[o + 2], d[o + 3], d[o + 4]
        z0, z1 = d[F.S_ZI + 2 * k], d[F.S_ZI + 2 * k + 1]
        for i in range(n):
            xc = w[i]
            y = b0 * xc + z0
            z0 = b1 * xc - a1 * y + z1
            z1 = b2 * xc - a2 * y
            w[i] = y
        d[F.S_ZI + 2 * k], d[F.S_ZI + 2 * k + 1] = z0, z1


@numba.njit(**OPTS)
def _compressor(d, w, n):
    p = F.S_PHYS + F.P_START[F.COMP]
    thr, ratio, knee_db = d[p], d[p + 1], d[p + 4]
    slope = 1.0 / ratio - 1.0
    knee = max(knee_db, 1e-3)
    g, at, rt = d[F.S_G], d[F.S_AT], d[F.S_RT]
    v = d[F.S_RAMP + 2 * F.RP_MAKEUP]
    t = d[F.S_RAMP + 2 * F.RP_MAKEUP + 1]
    ramp = t != v
    for i in range(n):
        xi = w[i]
        level_db = 10.0 * math.log10(xi * xi + 1e-10)
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
    d[F.S_G] = g
    d[F.S_RAMP + 2 * F.RP_MAKEUP] = t


@numba.njit(**OPTS)
def _distortion(d, x, w, n):
    _ramp_mul(d, F.RP_DRIVE, w, n)
    mode = x[F.X_MODE]
    if mode == F.HARD:
        for i in range(n):
            w[i] = min(max(w[i], -1.0), 1.0)
    elif mode == F.SOFT:
        for i in range(n):
            v = min(max(w[i] / 1.5, -1.0), 1.0)
            w[i] = 1.5 * (v - v**3.0 / 3.0)
    else:
        for i in range(n):
            w[i] = math.tanh(w[i])
    _ramp_mul(d, F.RP_OUT, w, n)


@numba.njit(**OPTS)
def _stage(d, x, ih, s, w, n, reverb_ok):
    if s == F.EQ:
        _eq(d, w, n)
    elif s == F.COMP:
        _compressor(d, w, n)
    elif s == F.DIST:
        _distortion(d, x, w, n)
    elif s == F.REV:
        if reverb_ok:
            reverb(d, x, ih, w, n)
    else:
        _ramp_mul(d, F.RP_GAIN, w, n)


@numba.njit(**OPTS)
def _chain(ih, d, x, w, dry, n, reverb_ok):
    """ChainTwin.process on w[:n] (float64, in place); ``dry``: scratch of at least n."""
    sr = d[F.K_RATE]
    smooth_ms = d[F.S_SMOOTH]
    if smooth_ms > 0:
        a = 1.0 - math.exp(-n / (smooth_ms * 1e-3 * sr))
    else:
        a = 1.0
    for s in range(F.N_STAGES):
        if d[F.S_PRESENT + s] == 0.0:
            continue
        _smooth(d, x, s, a)
        w0 = d[F.S_W + s]
        wt = d[F.S_WT + s]
        w1 = w0 + a * (wt - w0)
        if abs(w1 - wt) < 1e-4:
            w1 = wt
        if not (0.0 <= w1 <= 1.0):  # only from garbage in the block
            w1 = 0.0
            if not (0.0 <= w0 <= 1.0):
                w0 = 0.0
        d[F.S_W + s] = w1
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


@numba.njit(inline="always", **OPTS)
def _begin(ih, dh):
    """At a block boundary: checks, first use, the control side's news. (d, x, dry offset, reverb ok, ok)."""
    d, x = F.buffers(ih, dh)
    if x.shape[0] < F.X_LEN or d.shape[0] < F.HEADER:
        return d, x, 0, False, False
    ok = F.geometry_ok(ih, d, x)
    if x[F.X_INIT] != 1:
        _init_once(d, x, ok, ih[L.I_MAX_CHUNK])
    if not ok:
        return d, x, 0, False, False
    _take_targets(d, x)
    _take_ir(x)
    reverb_ok = F.rev_ok(x, x[F.X_N])
    return d, x, F.layout(x[F.X_N], x[F.X_P], ih[L.I_MAX_CHUNK])[1], reverb_ok, True


@numba.njit(**OPTS)
def _finish(ih, d, x, w, n, ok):
    bad = False
    for i in range(n):
        if not math.isfinite(w[i]):
            bad = True
            break
    if bad:  # a non-finite output: the chain starts clean (the guard silences this block)
        _clear_signal(d, x, ok, ih[L.I_MAX_CHUNK])
        x[F.X_N_RESETS] += 1


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
    work_off = F.layout(x[F.X_N], x[F.X_P], chunk)[0]
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
