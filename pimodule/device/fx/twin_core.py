"""Effect math shared by the torch effects and the real-time twins (torch-free).

Functions here take an array namespace ``xp`` (``numpy`` or ``torch``) so the formulas exist once:
RBJ biquad coefficients, the compressor's static curve, the waveshapers and the reverb's impulse
response. Only names both namespaces share are used (``sin``, ``cos``, ``sqrt``, ``exp``,
``log10``, ``where``, ``clip``, ``tanh``, ``abs``, ``sign``, ``stack``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from pimodule.core.fx_specs import (
    REVERB_BAND_EDGES_HZ,
    REVERB_IR_S,
    REVERB_PREDELAY_MS,
    REVERB_SEED,
)

EQ_SECTIONS = (
    ("low_shelf", "low_shelf_freq_hz", "low_shelf_gain_db", None),
    ("peak", "peak1_freq_hz", "peak1_gain_db", "peak1_q"),
    ("peak", "peak2_freq_hz", "peak2_gain_db", "peak2_q"),
    ("peak", "peak3_freq_hz", "peak3_gain_db", "peak3_q"),
    ("high_shelf", "high_shelf_freq_hz", "high_shelf_gain_db", None),
)
MAX_FREQ_RATIO = 0.45  # corner frequencies are kept below 0.45 * sample_rate


def rbj_biquad(xp: Any, kind: str, freq_hz: Any, gain_db: Any, q: Any, sample_rate: float):
    """RBJ cookbook biquad ``(b, a)``, each stacked on a new last axis of 3, normalised so a0 = 1.

    ``kind`` is ``peak``, ``low_shelf`` or ``high_shelf`` (shelves use slope S = 1, q ignored).
    """
    freq_hz = xp.clip(freq_hz, 1.0, MAX_FREQ_RATIO * sample_rate)
    w0 = (2.0 * math.pi / sample_rate) * freq_hz
    cos_w0, sin_w0 = xp.cos(w0), xp.sin(w0)
    big_a = 10.0 ** (gain_db / 40.0)
    if kind == "peak":
        alpha = sin_w0 / (2.0 * q)
        b = (1.0 + alpha * big_a, -2.0 * cos_w0, 1.0 - alpha * big_a)
        a = (1.0 + alpha / big_a, -2.0 * cos_w0, 1.0 - alpha / big_a)
    elif kind in ("low_shelf", "high_shelf"):
        alpha = sin_w0 / 2.0 * math.sqrt(2.0)  # S = 1: alpha = sin(w0)/2 * sqrt(2)
        two_sqrt_a_alpha = 2.0 * xp.sqrt(big_a) * alpha
        ap1, am1 = big_a + 1.0, big_a - 1.0
        if kind == "low_shelf":
            b = (
                big_a * (ap1 - am1 * cos_w0 + two_sqrt_a_alpha),
                2.0 * big_a * (am1 - ap1 * cos_w0),
                big_a * (ap1 - am1 * cos_w0 - two_sqrt_a_alpha),
            )
            a = (
                ap1 + am1 * cos_w0 + two_sqrt_a_alpha,
                -2.0 * (am1 + ap1 * cos_w0),
                ap1 + am1 * cos_w0 - two_sqrt_a_alpha,
            )
        else:
            b = (
                big_a * (ap1 + am1 * cos_w0 + two_sqrt_a_alpha),
                -2.0 * big_a * (am1 + ap1 * cos_w0),
                big_a * (ap1 + am1 * cos_w0 - two_sqrt_a_alpha),
            )
            a = (
                ap1 - am1 * cos_w0 + two_sqrt_a_alpha,
                2.0 * (am1 - ap1 * cos_w0),
                ap1 - am1 * cos_w0 - two_sqrt_a_alpha,
            )
    else:
        raise ValueError(f"unknown biquad kind {kind!r}")
    a0 = a[0]
    b = xp.stack([c / a0 for c in b], -1)
    a = xp.stack([a0 / a0, a[1] / a0, a[2] / a0], -1)
    return b, a


def eq_biquads(xp: Any, sample_rate: float, params: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    """The five ``(b, a)`` sections of the parametric EQ for the given physical parameters."""
    out = []
    for kind, f_name, g_name, q_name in EQ_SECTIONS:
        q = params[q_name] if q_name else 0.707
        out.append(rbj_biquad(xp, kind, params[f_name], params[g_name], q, sample_rate))
    return out


def eq_sos(sample_rate: float, params: Mapping[str, float]) -> np.ndarray:
    """The EQ as a scipy ``sos`` array ``(5, 6)`` (float64) for scalar parameters."""
    sections = eq_biquads(np, sample_rate, {k: np.float64(v) for k, v in params.items()})
    return np.stack([np.concatenate([b, a]) for b, a in sections])


def compressor_gain_db(xp: Any, level_db: Any, threshold_db: Any, ratio: Any, knee_db: Any) -> Any:
    """Soft-knee static curve: gain change in dB (<= 0) for a detector level in dB."""
    slope = 1.0 / ratio - 1.0
    over = level_db - threshold_db
    knee = xp.clip(knee_db, 1e-3, None) if hasattr(knee_db, "shape") else max(knee_db, 1e-3)
    in_knee = slope * (over + knee / 2.0) ** 2 / (2.0 * knee)
    above = slope * over
    return xp.where(2.0 * over <= -knee, 0.0 * over, xp.where(2.0 * over >= knee, above, in_knee))


def one_pole_coef(time_ms: Any, sample_rate: float, xp: Any = np) -> Any:
    """Smoothing coefficient c of ``y += c (x - y)`` for a time constant in ms."""
    return 1.0 - xp.exp(-1000.0 / (time_ms * sample_rate))


def waveshape(xp: Any, u: Any, mode: str) -> Any:
    """The distortion curves, all with slope 1 at 0 and output within [-1, 1]."""
    if mode == "hard":
        return xp.clip(u, -1.0, 1.0)
    if mode == "soft":  # cubic soft clipper reaching +-1 at |u| = 1.5
        v = xp.clip(u / 1.5, -1.0, 1.0)
        return 1.5 * (v - v**3 / 3.0)
    if mode == "tanh":
        return xp.tanh(u)
    raise ValueError(f"unknown distortion mode {mode!r}")


@lru_cache(maxsize=8)
def reverb_bands(sample_rate: int) -> np.ndarray:
    """Fixed noise split into low/mid/high bands, ``(3, n_ir)`` float64, predelay not included.

    Seeded: the noise is part of the effect's definition, so torch and twin build the same IR.
    """
    n_ir = int(round(REVERB_IR_S * sample_rate))
    noise = np.random.default_rng(REVERB_SEED).standard_normal(n_ir)
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(n_ir, 1.0 / sample_rate)
    lo, hi = REVERB_BAND_EDGES_HZ
    masks = [freqs < lo, (freqs >= lo) & (freqs < hi), freqs >= hi]
    bands = np.stack([np.fft.irfft(spectrum * m, n_ir) for m in masks])
    bands.setflags(write=False)
    return bands


def reverb_predelay(sample_rate: int) -> int:
    return int(round(REVERB_PREDELAY_MS * 1e-3 * sample_rate))


def reverb_decays_s(decay_s: Any, damping_pct: Any) -> tuple[Any, Any, Any]:
    """T60 of the low, mid and high bands: damping shortens the upper bands."""
    d = damping_pct / 100.0
    return decay_s, decay_s * (1.0 - 0.5 * d), decay_s * (1.0 - 0.85 * d)


def reverb_ir(xp: Any, bands: Any, sample_rate: int, decay_s: Any, damping_pct: Any) -> Any:
    """Unit-energy impulse response ``(..., n_ir)`` without predelay.

    ``bands`` is :func:`reverb_bands` as an array of ``xp``; parameters are scalars or ``(batch,)``.
    """
    n_ir = bands.shape[-1]
    t = xp.arange(n_ir) / float(sample_rate) if xp is np else bands.new_tensor(np.arange(n_ir) / sample_rate)
    ir = 0.0
    for band, t60 in zip(bands, reverb_decays_s(decay_s, damping_pct)):
        t60 = t60[..., None] if hasattr(t60, "shape") and len(t60.shape) else t60
        ir = ir + band * xp.exp(-6.907755 * t / t60)  # ln(1000): -60 dB at T60
    energy = (ir**2).sum(-1, keepdims=True) if xp is np else (ir**2).sum(-1, keepdim=True)
    return ir / xp.sqrt(energy + 1e-12)
