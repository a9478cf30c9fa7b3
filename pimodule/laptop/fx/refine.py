"""Analysis by synthesis: refine a dry-conditioned estimate against the audio it explains.

The network's parameters are good enough to sound close (MRSTFT ratio about 0.15) but about 2 dB
(level-matched log-mel) off the wet signal, more than the 1.5 dB that decides whether an effect is
heard (:mod:`pimodule.laptop.fx.batch`). With the dry signal at hand the estimate can be checked and
fitted, the auto-encoder objective run at test time:

1. every on/off combination of the four selectable effects is rendered on the dry signal with the
   network's parameters and ranked by its distance to the wet signal, less ``search_prior`` times
   the network's log-likelihood of that combination;
2. the ``n_candidates`` best combinations get their parameters fitted by gradient descent through
   the differentiable chain (Adam on the logits of the [0, 1] parameters, MRSTFT + mel loss);
3. the candidate with the smallest distance (less ``choice_prior`` times its log-likelihood) wins;
4. its effects are labelled as the training data was (:data:`pimodule.laptop.fx.batch.LABELS`): one that
   changes the sound by less than :data:`pimodule.laptop.fx.batch.LABEL_DB` with the fitted parameters
   is switched off (:func:`pimodule.laptop.fx.batch.heard_effects`).

Laptop side (torch): ``pimodule estimate --dry ... --refine`` and ``pimodule eval fx --refine``.
The module keeps the network's estimate (the device never imports torch). Deterministic: no
randomness is involved.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from pimodule.core.fx_specs import EFFECT_NAMES, SELECTABLE
from pimodule.laptop.fx.batch import _GAIN, LABELS, _changes, _unit_rms, heard_effects, render_stages
from pimodule.laptop.fx.chain import Chain, apply_chain
from pimodule.laptop.fx.losses import log_mel_db, mel_distance, mrstft

_COLS = [EFFECT_NAMES.index(n) for n in SELECTABLE]
#: every on/off combination of the selectable effects, (16, 4)
SUBSETS = torch.tensor(list(itertools.product((0.0, 1.0), repeat=len(SELECTABLE))))
MEL_WEIGHT = 0.05  # of the mel L1 (dB) next to the MRSTFT distance in the fitting loss
_EPS = 1e-3


@dataclass(frozen=True)
class RefineConfig:
    steps: int = 40  # gradient steps per candidate
    learning_rate: float = 0.1
    n_candidates: int = 4
    search_prior: float = 0.3  # weight of the network's log-likelihood when ranking combinations
    choice_prior: float = 0.1  # ... and when choosing among the fitted candidates
    labels: str = "stage"  # which change decides an effect is heard (pimodule.laptop.fx.batch.LABELS)
    chunk: int = 64  # examples fitted at once

    def __post_init__(self):
        if self.labels not in LABELS:
            raise ValueError(f"labels must be one of {LABELS}, not {self.labels!r}")
        if self.steps < 0 or self.n_candidates < 1 or self.n_candidates > len(SUBSETS):
            raise ValueError(f"steps >= 0 and 1 <= n_candidates <= {len(SUBSETS)} required")


def subset_log_likelihood(probability: torch.Tensor) -> torch.Tensor:
    """``(batch, N_EFFECTS)`` probabilities -> ``(batch, 16)`` log-likelihood of each combination."""
    p = probability[:, _COLS].clamp(1e-4, 1 - 1e-4)
    s = SUBSETS.to(p.dtype)[None]
    return (s * p[:, None].log() + (1 - s) * (1 - p[:, None]).log()).sum(-1)


def with_subset(active: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """``active`` with the selectable effects set to ``bits`` ``(batch, 4)`` and the gain stage on."""
    out = active.clone()
    out[:, _COLS] = bits.to(out.dtype)
    out[:, _GAIN] = 1.0
    return out


def distance(x: torch.Tensor, y: torch.Tensor, sample_rate: int, chain: Chain, chunk: int = 64) -> torch.Tensor:
    """Level-matched log-mel distance (dB) of hard ``chain`` on ``x`` to ``y``, ``(batch,)``."""
    with torch.no_grad():
        out = [
            mel_distance(
                _unit_rms(render_stages(x[s : s + chunk], sample_rate, chain.rows(slice(s, s + chunk)))[0]),
                _unit_rms(y[s : s + chunk]),
                sample_rate,
            )
            for s in range(0, x.shape[0], chunk)
        ]
    return torch.cat(out)


def fit_parameters(
    x: torch.Tensor, y: torch.Tensor, sample_rate: int, chain: Chain, steps: int, learning_rate: float
) -> torch.Tensor:
    """``chain``'s [0, 1] parameters fitted so that it turns ``x`` into ``y`` (both ``(batch,
    samples)``); an example whose fit ends worse than it began, or not finite, keeps its start."""
    start = chain.unit.detach()
    z = torch.logit(start.clamp(_EPS, 1 - _EPS)).clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=learning_rate)
    target_mel = log_mel_db(y, sample_rate).detach()
    with torch.enable_grad():
        for _ in range(steps):
            out = apply_chain(x[:, None], sample_rate, Chain(chain.active, torch.sigmoid(z), chain.mode_weights))[:, 0]
            loss = mrstft(out, y) + MEL_WEIGHT * (log_mel_db(out, sample_rate) - target_mel).abs().mean((-2, -1))
            if not torch.isfinite(loss).all():
                break
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
    fitted = torch.sigmoid(z.detach())
    before = distance(x, y, sample_rate, chain)
    after = distance(x, y, sample_rate, Chain(chain.active, fitted, chain.mode_weights))
    keep = ~torch.isfinite(after) | (after > before) | ~torch.isfinite(fitted).all(-1)
    return torch.where(keep[:, None], start, fitted)


def refine(
    x: torch.Tensor, y: torch.Tensor, sample_rate: int, estimate: Chain, config: RefineConfig = RefineConfig()
) -> tuple[Chain, torch.Tensor]:
    """The refined chain for dry ``x`` and wet ``y`` ``(batch, samples)`` from the network's
    ``estimate`` (soft): hard decisions (the gain stage on), fitted parameters, the network's most
    likely distortion curve. Also returns its distance to ``y`` (level-matched log-mel dB)."""
    if x.shape != y.shape or x.ndim != 2 or estimate.batch != x.shape[0]:
        raise ValueError(f"dry {tuple(x.shape)}, wet {tuple(y.shape)} and {estimate.batch} estimates do not match")
    x, y = x.float(), y.float()
    n, k = x.shape[0], config.n_candidates
    hard = estimate.hard().to(torch.float32)
    ll = subset_log_likelihood(estimate.active.float())
    d0 = torch.stack(
        [
            distance(
                x,
                y,
                sample_rate,
                Chain(with_subset(hard.active, s.expand(n, -1)), hard.unit, hard.mode_weights),
                config.chunk,
            )
            for s in SUBSETS
        ],
        1,
    )
    cand = (d0 - config.search_prior * ll).topk(k, 1, largest=False).indices  # (n, k)
    rows = torch.arange(n).repeat_interleave(k)
    trial = Chain(
        with_subset(hard.active[rows], SUBSETS[cand.reshape(-1)]), hard.unit[rows].clone(), hard.mode_weights[rows]
    )
    for s in range(0, rows.shape[0], config.chunk):
        part = slice(s, s + config.chunk)
        trial.unit[part] = fit_parameters(
            x[rows[part]], y[rows[part]], sample_rate, trial.rows(part), config.steps, config.learning_rate
        )
    d1 = distance(x[rows], y[rows], sample_rate, trial, config.chunk).reshape(n, k)
    best = torch.arange(n) * k + (d1 - config.choice_prior * ll.gather(1, cand)).argmin(1)
    chosen = trial.rows(best)
    with torch.no_grad():
        change = torch.cat(
            [
                _changes(x[s : s + config.chunk], sample_rate, chosen.rows(slice(s, s + config.chunk)), config.labels)[
                    1
                ]
                for s in range(0, n, config.chunk)
            ]
        )
    final = Chain(chosen.active * heard_effects(change).to(chosen.active.dtype), chosen.unit, chosen.mode_weights)
    return final, distance(x, y, sample_rate, final, config.chunk)
