"""fx mode's matched chain: a stage's derived coefficients from its physical parameters, compiled
(:mod:`pimodule.device.rt.fxchain` calls them at block boundaries): the parameter specs'
``from_unit`` with their clamps, the RBJ biquads of the EQ, the compressor's attack and release
coefficients and the gains' ramp targets, as the twins (:mod:`pimodule.device.fx.twin_effects`)
compute them."""

from __future__ import annotations

import math

import numba

from pimodule.device.rt import fxlayout as F
from pimodule.device.rt.dsp import OPTS


@numba.njit(**OPTS)
def from_unit(d, j, u):
    """ParamSpec.from_unit then clamp (the twins' set_params)."""
    u = min(max(u, 0.0), 1.0)
    lo = d[F.K_MIN + j]
    hi = d[F.K_MAX + j]
    if d[F.K_LOG + j] != 0.0:
        a, b = d[F.K_LO + j], d[F.K_HI + j]
        v = math.exp(a + (b - a) * u)
    else:
        v = lo + (hi - lo) * u
    return min(max(v, lo), hi)


@numba.njit(**OPTS)
def _rbj(d, k, kind, freq_hz, gain_db, q, sr):
    """twin_core.rbj_biquad into section ``k`` of F.S_SOS (kind 0 peak, 1 low shelf, 2 high shelf)."""
    freq_hz = min(max(freq_hz, 1.0), d[F.K_MAX_FREQ] * sr)
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
    o = F.S_SOS + 5 * k
    d[o], d[o + 1], d[o + 2], d[o + 3], d[o + 4] = b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0


@numba.njit(**OPTS)
def derive(d, s, jump):
    """A stage's coefficients and ramp targets from its physical parameters (TwinEffect._update);
    ``jump``: the ramps take their targets at once (set_params(ramp=False))."""
    sr = d[F.K_RATE]
    p = F.S_PHYS + F.P_START[s]
    if s == F.EQ:
        _rbj(d, 0, 1, d[p + 1], d[p], 0.707, sr)
        _rbj(d, 1, 0, d[p + 3], d[p + 2], d[p + 4], sr)
        _rbj(d, 2, 0, d[p + 6], d[p + 5], d[p + 7], sr)
        _rbj(d, 3, 0, d[p + 9], d[p + 8], d[p + 10], sr)
        _rbj(d, 4, 2, d[p + 12], d[p + 11], 0.707, sr)
        return
    if s == F.COMP:
        d[F.S_AT] = 1.0 - math.exp(-1000.0 / (d[p + 2] * sr))
        d[F.S_RT] = 1.0 - math.exp(-1000.0 / (d[p + 3] * sr))
        r0, r1 = F.RP_MAKEUP, F.RP_MAKEUP
        d[F.S_RAMP + 2 * F.RP_MAKEUP + 1] = 10.0 ** (d[p + 5] / 20.0)
    elif s == F.DIST:
        r0, r1 = F.RP_DRIVE, F.RP_OUT
        d[F.S_RAMP + 2 * F.RP_DRIVE + 1] = 10.0 ** (d[p] / 20.0)
        d[F.S_RAMP + 2 * F.RP_OUT + 1] = 10.0 ** (d[p + 1] / 20.0)
    elif s == F.REV:
        r0, r1 = F.RP_MIX, F.RP_MIX
        d[F.S_RAMP + 2 * F.RP_MIX + 1] = d[p + 2] / 100.0
    else:
        r0, r1 = F.RP_GAIN, F.RP_GAIN
        d[F.S_RAMP + 2 * F.RP_GAIN + 1] = 10.0 ** (d[p] / 20.0)
    if jump:
        for r in range(r0, r1 + 1):
            d[F.S_RAMP + 2 * r] = d[F.S_RAMP + 2 * r + 1]
