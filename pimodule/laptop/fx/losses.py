"""Objectives and distances of the effect estimator.

- :func:`mrstft` multi-resolution STFT distance (spectral convergence + mean abs log magnitude over
  several FFT sizes), per example; matches auraloss' ``MultiResolutionSTFTLoss`` (tested).
- :func:`mel_distance` mean abs difference of log-mel spectra in dB, per example.
- :func:`estimator_loss` the training objective: ``param``, ``audio`` or ``hybrid``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from pimodule.core.fx_specs import EFFECT_NAMES, LABEL_DB, SELECTABLE
from pimodule.laptop.fx.chain import PARAM_SLICES, Chain, apply_chain
from pimodule.laptop.fx.model import mel_filterbank

OBJECTIVES = ("param", "audio", "hybrid")
FFT_SIZES = (256, 512, 1024, 2048)


def _mag(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    spec = torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True)
    # faster than complex abs, and than summing a trailing dimension of 2
    return (spec.real.square() + spec.imag.square() + 1e-14).sqrt().clamp_min(1e-7)


def mrstft(y_hat: torch.Tensor, y: torch.Tensor, fft_sizes=FFT_SIZES) -> torch.Tensor:
    """``(batch, samples)`` pairs -> ``(batch,)`` distances (average over resolutions)."""
    total = 0.0
    for n_fft in fft_sizes:
        s_hat, s = _mag(y_hat, n_fft), _mag(y, n_fft)
        sc = torch.linalg.vector_norm(s - s_hat, dim=(-2, -1)) / torch.linalg.vector_norm(s, dim=(-2, -1))
        log_mag = (torch.log(s) - torch.log(s_hat)).abs().mean((-2, -1))
        total = total + sc + log_mag
    return total / len(fft_sizes)


@functools.lru_cache(maxsize=8)
def _filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    return torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels))


def log_mel_db(x: torch.Tensor, sample_rate: int, n_fft: int = 1024, n_mels: int = 64) -> torch.Tensor:
    """``(batch, samples)`` -> ``(batch, frames, n_mels)`` log-mel power in dB (floor -80 dB)."""
    fb = _filterbank(sample_rate, n_fft, n_mels).to(x.dtype)
    return 10 * torch.log10((_mag(x, n_fft).square().transpose(1, 2) @ fb.T) + 1e-8)


def mel_distance(
    y_hat: torch.Tensor, y: torch.Tensor, sample_rate: int, n_fft: int = 1024, n_mels: int = 64
) -> torch.Tensor:
    """Mean abs difference of log-mel spectra in dB (floor -80 dB), ``(batch,)``."""
    return (
        (log_mel_db(y_hat, sample_rate, n_fft, n_mels) - log_mel_db(y, sample_rate, n_fft, n_mels)).abs().mean((-2, -1))
    )


def match_level(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y_hat`` ``(batch, samples)`` scaled to the level of ``y`` in closed form: the least-squares
    gain between their STFT magnitudes (FFT 1024), which ignores phase, so a reverb's or a
    filter's phase does not pull it down as a waveform least-squares gain would."""
    s_hat, s = _mag(y_hat, 1024), _mag(y, 1024)
    g = (s_hat * s).sum((-2, -1)) / (s_hat.square().sum((-2, -1)) + 1e-12)
    return y_hat * g[:, None]


def param_mask(active: torch.Tensor) -> torch.Tensor:
    """``(batch, N_PARAMS)``: 1 where the parameter belongs to an active effect."""
    cols = [
        active[:, i : i + 1].expand(-1, s.stop - s.start) for i, s in enumerate(PARAM_SLICES[n] for n in EFFECT_NAMES)
    ]
    return torch.cat(cols, 1)


#: graded selection targets: logit = slope x (stage change - the on/off threshold), clamped
CHANGE_SLOPE_PER_DB = 2.0
CHANGE_LOGIT_MAX = 6.0


def change_logits(change: torch.Tensor, threshold_db: float) -> torch.Tensor:
    """The on/off logit a stage change (dB) asks for: 0 at the threshold, ±2 per dB, within ±6."""
    return (CHANGE_SLOPE_PER_DB * (change - threshold_db)).clamp(-CHANGE_LOGIT_MAX, CHANGE_LOGIT_MAX)


def estimator_loss(
    objective: str,
    pred: Chain,
    active_logits: torch.Tensor,
    mode_logits: torch.Tensor,
    target: Chain,
    source: torch.Tensor,
    wet: torch.Tensor,
    sample_rate: int,
    teacher_forcing: bool = False,
    select_weight: float = 1.0,
    change: torch.Tensor | None = None,
    change_weight: float = 0.0,
    level_match: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch. ``source`` ``(batch, samples)`` is what the predicted chain is applied to
    for the audio loss and ``wet`` the target it should reproduce. Chain selection (which effects
    are on) and the distortion curve are classification terms in every objective; the parameter
    values are supervised only by ``param``/``hybrid``: the ``audio`` objective needs no
    ground-truth parameter values. With ``teacher_forcing`` the audio objective renders the
    predicted parameters with the true on/off decisions and curve (labels the data has anyway).
    ``select_weight`` scales the chain-selection term. With ``change`` (each stage's change in dB,
    :class:`pimodule.laptop.fx.batch.Batch`) and ``change_weight`` > 0 the selectable effects' logits are
    also pulled (smooth L1) towards :func:`change_logits`: how far each effect is from the audibility
    threshold, not only on which side. With ``level_match`` the rendered estimate is brought to the
    target's level in closed form (:func:`match_level`) before the audio distance, so the effects
    are judged on their own and the chain's gain stage is left to that closed form."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}")
    parts = {}
    parts["select"] = F.binary_cross_entropy_with_logits(active_logits, target.active)
    dist_on = target.active[:, EFFECT_NAMES.index("distortion")]
    ce = F.cross_entropy(mode_logits, target.mode_weights.argmax(-1), reduction="none")
    parts["mode"] = (ce * dist_on).sum() / dist_on.sum().clamp_min(1.0)
    total = select_weight * parts["select"] + 0.5 * parts["mode"]
    if change is not None and change_weight > 0:
        cols = [EFFECT_NAMES.index(n) for n in SELECTABLE]
        goal = change_logits(change[:, cols], LABEL_DB)
        parts["change"] = F.smooth_l1_loss(active_logits[:, cols], goal)
        total = total + change_weight * parts["change"]
    if objective in ("param", "hybrid"):
        mask = param_mask(target.active)
        parts["param"] = ((pred.unit - target.unit).abs() * mask).sum() / mask.sum().clamp_min(1.0)
        total = total + 4.0 * parts["param"]
    if objective in ("audio", "hybrid"):
        render = Chain(target.active, pred.unit, target.mode_weights) if teacher_forcing else pred
        rendered = apply_chain(source[:, None], sample_rate, render)[:, 0]
        if level_match:
            rendered = match_level(rendered, wet)
        parts["audio"] = mrstft(rendered, wet).mean()
        total = total + parts["audio"]
    return total, {k: float(v.detach()) for k, v in parts.items()}
