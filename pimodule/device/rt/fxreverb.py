"""fx mode's reverb in the callback: :class:`pimodule.device.fx.twin_effects.ReverbTwin`'s uniformly
partitioned overlap-save convolution, compiled (see :mod:`.fxchain`)."""

from __future__ import annotations

import numba

from pimodule.device.rt import fft
from pimodule.device.rt import shared as L
from pimodule.device.rt.dsp import OPTS
from pimodule.device.rt.fxlayout import (
    N_SLOTS,
    RP_MIX,
    S_RAMP,
    X_FILLED,
    X_IR_CUR,
    X_IR_NEXT,
    X_N,
    X_NEWEST,
    X_P,
    X_POS,
    X_REV,
    layout,
)
from pimodule.device.rt.lowlevel import fence


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
def reverb(d, x, ih, w, n_total):
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
