"""Differentiable effects in torch: pure functions ``f(x, sample_rate, *, <param>_<unit>...)``.

Audio is ``(batch, channels, samples)``; every parameter is a ``(batch,)`` tensor (or a float) in
physical units, ranged by the effect's table in :mod:`pimodule.core.fx_specs`. The formulas shared with
the real-time twins live in :mod:`pimodule.device.fx.twin_core`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from scipy.fft import next_fast_len
from torchcomp import compressor_core
from torchlpc import sample_wise_lpc

from pimodule.core.fx_specs import DISTORTION_MODES
from pimodule.device.fx import twin_core as core

Tensor = torch.Tensor


def _per_example(value: Any, x: Tensor) -> Tensor:
    """A parameter as a ``(batch,)`` tensor on x's device and dtype."""
    return torch.as_tensor(value, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])


def _col(value: Tensor) -> Tensor:
    return value[:, None, None]


def db_to_amp(db: Tensor) -> Tensor:
    return torch.pow(10.0, db / 20.0)


# -- gain -----------------------------------------------------------------------------------------
def gain(x: Tensor, sample_rate: int, *, gain_db: Any) -> Tensor:
    return x * _col(db_to_amp(_per_example(gain_db, x)))


# -- parametric EQ --------------------------------------------------------------------------------
def _eq_sections(x: Tensor, sample_rate: int, params: dict) -> list[tuple[Tensor, Tensor]]:
    return core.eq_biquads(torch, sample_rate, {k: _per_example(v, x) for k, v in params.items()})


def eq_response(sections: list[tuple[Tensor, Tensor]], n_fft: int) -> Tensor:
    """Complex frequency response ``(batch, n_fft // 2 + 1)`` of cascaded biquads on rfft bins."""
    w = torch.linspace(0.0, math.pi, n_fft // 2 + 1, dtype=sections[0][0].dtype, device=sections[0][0].device)
    z1 = torch.polar(torch.ones_like(w), -w)  # e^{-jw}
    powers = torch.stack([torch.ones_like(z1), z1, z1 * z1])  # (3, n_bins)
    h = 1.0
    for b, a in sections:
        num = b.to(powers.dtype) @ powers
        den = a.to(powers.dtype) @ powers
        h = h * num / den
    return h


def parametric_eq(
    x: Tensor,
    sample_rate: int,
    *,
    low_shelf_gain_db: Any,
    low_shelf_freq_hz: Any,
    peak1_gain_db: Any,
    peak1_freq_hz: Any,
    peak1_q: Any,
    peak2_gain_db: Any,
    peak2_freq_hz: Any,
    peak2_q: Any,
    peak3_gain_db: Any,
    peak3_freq_hz: Any,
    peak3_q: Any,
    high_shelf_gain_db: Any,
    high_shelf_freq_hz: Any,
) -> Tensor:
    """Frequency-sampled EQ (for training): x's spectrum times the biquads' response.

    The FFT is zero-padded to about twice the signal so the IIR's decaying tail does not wrap
    around; against the recursive filter the difference is the tail beyond that length.
    """
    params = dict(locals())
    del params["x"], params["sample_rate"]
    n = x.shape[-1]
    n_fft = next_fast_len(2 * n, real=True)
    h = eq_response(_eq_sections(x, sample_rate, params), n_fft)
    spec = torch.fft.rfft(x, n_fft) * h[:, None, :]
    return torch.fft.irfft(spec, n_fft)[..., :n]


def parametric_eq_iir(
    x: Tensor,
    sample_rate: int,
    *,
    low_shelf_gain_db: Any,
    low_shelf_freq_hz: Any,
    peak1_gain_db: Any,
    peak1_freq_hz: Any,
    peak1_q: Any,
    peak2_gain_db: Any,
    peak2_freq_hz: Any,
    peak2_q: Any,
    peak3_gain_db: Any,
    peak3_freq_hz: Any,
    peak3_q: Any,
    high_shelf_gain_db: Any,
    high_shelf_freq_hz: Any,
) -> Tensor:
    """The same EQ as a recursive cascade (exact, differentiable through torchlpc)."""
    params = dict(locals())
    del params["x"], params["sample_rate"]
    batch, channels, n = x.shape
    y = x.reshape(batch * channels, n)
    for b, a in _eq_sections(x, sample_rate, params):
        b = b.repeat_interleave(channels, 0)
        a = a.repeat_interleave(channels, 0)
        padded = torch.nn.functional.pad(y, (2, 0))
        fir = b[:, :1] * padded[:, 2:] + b[:, 1:2] * padded[:, 1:-1] + b[:, 2:] * padded[:, :-2]
        y = sample_wise_lpc(fir, a[:, None, 1:].expand(-1, n, -1))
    return y.reshape(batch, channels, n)


# -- compressor -----------------------------------------------------------------------------------
def compressor(
    x: Tensor,
    sample_rate: int,
    *,
    threshold_db: Any,
    ratio: Any,
    attack_ms: Any,
    release_ms: Any,
    knee_db: Any,
    makeup_db: Any,
) -> Tensor:
    """Feed-forward compressor, channels linked.

    Detector: the instantaneous level (mean square over channels, a peak detector for one channel);
    soft-knee static curve in dB; the linear gain is smoothed with attack (gain falling) and release
    (gain rising) time constants by torchcomp's differentiable one-pole (``compressor_core``).
    """
    threshold_db, ratio, knee_db, makeup_db = (_per_example(v, x) for v in (threshold_db, ratio, knee_db, makeup_db))
    at = core.one_pole_coef(_per_example(attack_ms, x), sample_rate, torch)
    rt = core.one_pole_coef(_per_example(release_ms, x), sample_rate, torch)
    level_db = 10.0 * torch.log10(x.square().mean(1) + 1e-10)  # (batch, samples)
    g_db = core.compressor_gain_db(torch, level_db, threshold_db[:, None], ratio[:, None], knee_db[:, None])
    target = db_to_amp(g_db)
    smooth = compressor_core(target, x.new_ones(x.shape[0]), at, rt)
    return x * smooth[:, None, :] * _col(db_to_amp(makeup_db))


# -- distortion -----------------------------------------------------------------------------------
def distortion(x: Tensor, sample_rate: int, *, drive_db: Any, output_gain_db: Any, mode: str = "tanh") -> Tensor:
    """Waveshaper: ``shape(x * drive) * output_gain``; ``mode`` is hard, soft or tanh."""
    drive = _col(db_to_amp(_per_example(drive_db, x)))
    return core.waveshape(torch, x * drive, mode) * _col(db_to_amp(_per_example(output_gain_db, x)))


def distortion_mix(x: Tensor, sample_rate: int, *, drive_db: Any, output_gain_db: Any, mode_weights: Tensor) -> Tensor:
    """All curves weighted by ``mode_weights`` ``(batch, 3)`` (DISTORTION_MODES order): a
    differentiable stand-in for the mode choice when the estimator's choice is soft."""

    drive = _col(db_to_amp(_per_example(drive_db, x)))
    u = x * drive
    y = sum(mode_weights[:, i, None, None] * core.waveshape(torch, u, m) for i, m in enumerate(DISTORTION_MODES))
    return y * _col(db_to_amp(_per_example(output_gain_db, x)))


# -- reverb ---------------------------------------------------------------------------------------
def reverb_ir(x: Tensor, sample_rate: int, decay_s: Any, damping_pct: Any) -> Tensor:
    """The reverb's impulse response ``(batch, predelay + n_ir)`` for x's batch."""
    bands = torch.tensor(core.reverb_bands(sample_rate), dtype=x.dtype, device=x.device)
    ir = core.reverb_ir(torch, bands, sample_rate, _per_example(decay_s, x), _per_example(damping_pct, x))
    return torch.nn.functional.pad(ir, (core.reverb_predelay(sample_rate), 0))


def reverb(x: Tensor, sample_rate: int, *, decay_s: Any, damping_pct: Any, mix_pct: Any) -> Tensor:
    """Filtered-noise reverb (three band decays), FFT convolution, dry/wet mix; output length = x's."""
    ir = reverb_ir(x, sample_rate, decay_s, damping_pct)
    n = x.shape[-1]
    n_fft = next_fast_len(n + ir.shape[-1] - 1, real=True)
    wet = torch.fft.irfft(torch.fft.rfft(x, n_fft) * torch.fft.rfft(ir, n_fft)[:, None, :], n_fft)
    mix = _col(_per_example(mix_pct, x) / 100.0)
    return (1.0 - mix) * x + mix * wet[..., :n]


#: effect name -> the training (differentiable) function
EFFECTS = {
    "eq": parametric_eq,
    "compressor": compressor,
    "distortion": distortion,
    "reverb": reverb,
    "gain": gain,
}
