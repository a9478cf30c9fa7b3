"""Style transfer without a dry file: a chain fitted so that the input through it has a
reference's features (ST-ITO's analysis by synthesis, with hand-made features), then pruned and
checked against the input left as it is with the rules of :mod:`.refine` and the module's check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from pimodule.core.fx_specs import EFFECT_NAMES, LABEL_DB, SELECTABLE
from pimodule.device.fx.decide import confidence, label, margin, simplest_closest
from pimodule.laptop.fx.batch import _unit_rms
from pimodule.laptop.fx.chain import PARAM_SLICES, Chain, apply_chain
from pimodule.laptop.fx.losses import log_mel_db
from pimodule.laptop.fx.refine import (
    _EPS,
    _GAIN_SPEC,
    RefineConfig,
    Refined,
    _hard_mode,
    _neutral_gain,
    loudest,
    removal_changes,
    render,
    with_subset,
)


def style_features(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """What a reference's effects leave in any content, ``(batch, 3 * 64)``: per mel band, the mean
    log-mel relative to the whole spectrum's (the EQ's tilt and bumps), its spread over frames (the
    dynamics a compressor narrows) and its mean frame-to-frame change (what a reverb smooths), at
    unit RMS."""
    mel = log_mel_db(_unit_rms(x), sample_rate).clamp_min(-80.0)  # (batch, frames, bands)
    mean = mel.mean(1)
    return torch.cat([mean - mean.mean(-1, keepdim=True), mel.std(1), (mel[:, 1:] - mel[:, :-1]).abs().mean(1)], -1)


def match_reference(
    x: torch.Tensor,
    reference: torch.Tensor,
    sample_rate: int,
    estimate: Chain,
    config: RefineConfig = RefineConfig(),
    progress: Callable[[int, int, float], None] | None = None,
) -> Refined:
    """Style transfer without a dry file, by analysis by synthesis on features (ST-ITO's idea with
    hand-made features, :func:`style_features`): the chain, started from a blind estimate of the
    reference (all four effects on), is fitted so that the input ``x`` through it has the
    reference's features; effects whose removal changes the output by less than 1.5 dB are off,
    and :func:`~pimodule.device.fx.decide.simplest_closest` keeps what earns its place against the
    input left as it is, in feature distance. The level is the reference's (RMS)."""
    t0 = time.perf_counter()
    x, reference = x.float().reshape(-1), reference.float().reshape(-1)
    xf = x[loudest(x, int(config.fit_s * sample_rate))]
    target = style_features(reference[None], sample_rate)
    base = _neutral_gain(estimate.hard().to(torch.float32))
    start = Chain(with_subset(base.active, torch.ones(1, 4)), base.unit.clone(), estimate.mode_weights.float().clone())
    z = torch.logit(start.unit.clamp(_EPS, 1 - _EPS)).clone().requires_grad_(True)
    m = torch.log(start.mode_weights.clamp_min(1e-3)).clone().requires_grad_(True)
    opt = torch.optim.Adam([z, m], lr=config.learning_rate)
    best, best_z, best_m, steps = math.inf, z.detach().clone(), m.detach().clone(), 0
    with torch.enable_grad():
        for step in range(config.steps + 1):
            out = apply_chain(xf[None, None], sample_rate, Chain(start.active, torch.sigmoid(z), torch.softmax(m, -1)))
            loss = (style_features(out[:, 0], sample_rate) - target).abs().mean()
            if not torch.isfinite(loss):
                break
            if float(loss.detach()) < best:
                best, best_z, best_m = float(loss.detach()), z.detach().clone(), m.detach().clone()
            elapsed = time.perf_counter() - t0
            if step == config.steps or elapsed >= 0.8 * config.budget_s:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if progress is not None:
                progress(steps, config.steps, elapsed)
    chosen = _hard_mode(Chain(start.active, torch.sigmoid(best_z), torch.softmax(best_m, -1)))
    return choose_for_reference(x, reference, sample_rate, chosen, estimate.active, steps=steps, t0=t0)


def choose_for_reference(
    x: torch.Tensor,
    reference: torch.Tensor,
    sample_rate: int,
    chain: Chain,
    probability: torch.Tensor | None = None,
    *,
    steps: int = 0,
    t0: float | None = None,
) -> Refined:
    """What of ``chain`` (hard, ``(1, ...)``) to play on the input ``x`` so that it sounds like
    ``reference``, never further from it than ``x`` left as it is: effects whose removal changes
    the output by less than 1.5 dB are off, then
    :func:`~pimodule.device.fx.decide.simplest_closest` keeps what earns its place in feature
    distance (:func:`style_features`) against the simpler chains and the input alone. The level is
    the reference's (RMS). ``probability``: the estimator's, for the confidence words."""
    t0 = time.perf_counter() if t0 is None else t0
    x, reference = x.float().reshape(-1), reference.float().reshape(-1)
    chosen = _hard_mode(_neutral_gain(chain.to(torch.float32)))  # the level is set last, from the render
    target = style_features(reference[None], sample_rate)
    y = render(x, sample_rate, chosen)
    change = removal_changes(x, y, sample_rate, chosen, SELECTABLE)
    kept = tuple(e for e in SELECTABLE if change[e] >= LABEL_DB)  # an effect left off changes nothing
    renders = {}

    def distance_of(sub: tuple) -> tuple[float, float]:
        bits = torch.tensor([[float(e in sub) for e in SELECTABLE]])
        r = renders[sub] = render(
            x, sample_rate, Chain(with_subset(chosen.active, bits), chosen.unit, chosen.mode_weights)
        )
        d = float((style_features(r, sample_rate) - target).abs().mean())
        return d, d

    picked, scores = simplest_closest(kept, distance_of)
    bits = torch.tensor([[float(e in picked) for e in SELECTABLE]])
    final = Chain(with_subset(chosen.active, bits), chosen.unit.clone(), chosen.mode_weights)
    out = renders[picked][0]
    gain_db = 20 * math.log10(
        float(reference.square().mean().sqrt()) / (float(out.square().mean().sqrt()) + 1e-12) + 1e-12
    )
    final.unit[0, PARAM_SLICES["gain"]] = float(_GAIN_SPEC.to_unit(_GAIN_SPEC.clamp(gain_db)))
    p = chosen.active if probability is None else probability
    words = {
        e: confidence(
            e in picked,
            change.get(e, 0.0),
            margin(scores, picked, e) if e in picked else 0.0,
            float(p[0, EFFECT_NAMES.index(e)]),
            True,
        )
        for e in SELECTABLE
    }
    return Refined(
        final,
        scores[picked],
        scores[()],
        words,
        change,
        steps,
        time.perf_counter() - t0,
        label(picked, kept),
        {(label(k, kept) if k else "level only"): v for k, v in scores.items()},
    )
