"""Analysis by synthesis: the laptop's default path when the dry file is at hand (ST-ITO style).

The network's estimate is a starting point; the dry signal is rendered through the project's
differentiable chain and fitted to the wet one within a time budget:

1. every on/off combination of the four selectable effects is rendered with the network's
   parameters on the fitting stretch (the loudest ``fit_s`` seconds) and ranked by its
   level-matched log-mel distance to the wet signal, less ``search_prior`` times the network's
   log-likelihood of the combination; with ``search_first`` the module's own check
   (:class:`pimodule.device.fx.check.SubsetCheck`: coordinate search, numpy) runs first on the
   same stretch, its parameters seed every candidate and its combination is the first one; the
   ``n_candidates`` best, and the chain with all four on (``full_chain``), are fitted together;
2. fitting: Adam on the logits of every [0, 1] parameter and of the distortion curve (the curves
   blended while fitting), on the multi-resolution STFT + log-mel distance with the **levels
   matched** (both at unit RMS: the effects are judged on their own, the level comes last in closed
   form); at most ``steps`` steps and ``budget_s`` seconds; each candidate keeps its best step;
3. the candidate closest on the whole selection stretch (hard curve) gets its reverb's decay and
   mix and its compressor's threshold and ratio searched on that stretch (``polish``,
   :func:`polish`): the fit's loudest second hides a reverb's tail under the direct sound and a
   compressor's work under the loud part, and the fit turns them down; then it is pruned: an effect
   whose removal changes its output by less than :data:`~pimodule.core.fx_specs.LABEL_DB`
   (level-matched log-mel) is switched off, the definition of "heard" the benchmark and the
   removal labels use (a reverb by less than :data:`pimodule.device.fx.decide.PRUNE_DB`: a fitted
   reverb is weaker than the recording's);
4. **never worse than doing nothing**: from the pruned chain, effects are dropped one at a time
   while the chain stays as close to the recording (up to ``select_s`` seconds; level-matched
   MRSTFT and log-mel distances, an effect must earn
   :data:`~pimodule.device.fx.decide.EFFECT_PENALTY`), and the level alone wins unless the chain is
   closer on both (:func:`pimodule.device.fx.decide.simplest_closest`, the module's rule too);
5. the gain stage is set in closed form (least squares on STFT magnitudes), and each effect gets a
   confidence in words (:func:`pimodule.device.fx.decide.confidence`, the module's words too).

``pimodule estimate --dry`` runs it by default (``--no-refine`` skips it), with progress;
``pimodule eval fx --refine`` and the real-recording benchmark score it. Deterministic.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from pimodule.core.fx_specs import EFFECT_NAMES, SELECTABLE, SPECS
from pimodule.device.fx.check import LEVEL_ONLY, SubsetCheck
from pimodule.device.fx.decide import confidence, effect_costs, heard, label, margin, simplest_closest
from pimodule.laptop.fx.batch import _GAIN, _unit_rms, render_stages
from pimodule.laptop.fx.chain import N_MODES, PARAM_SLICES, Chain, apply_chain, describe
from pimodule.laptop.fx.losses import _mag, log_mel_db, mel_distance, mrstft
from pimodule.laptop.fx.polish import POLISH, polish_grid, polish_renders

_COLS = [EFFECT_NAMES.index(n) for n in SELECTABLE]
#: every on/off combination of the selectable effects, (16, 4)
SUBSETS = torch.tensor(list(itertools.product((0.0, 1.0), repeat=len(SELECTABLE))))
MEL_WEIGHT = 0.05  # of the mel L1 (dB) next to the MRSTFT distance in the fitting loss
_EPS = 1e-3
_GAIN_SPEC = SPECS["gain"]["gain_db"]
_ZERO_GAIN = float(_GAIN_SPEC.to_unit(0.0))


#: pull of the level parameters towards their start in the fit (per squared logit): far above the
#: float noise a level-matched loss leaves them, far below a real gradient (a gain before a
#: compressor changes how much it compresses)
HOLD_WEIGHT = 1e-3


def level_columns() -> list[int]:
    """The [0, 1] parameter columns that mostly scale the level (an effect's make-up and output
    gains, the gain stage): a level-matched loss gives them little more than float noise, which
    Adam turns into full-size steps; unheld they drifted to their range's ends, and the closed-form
    level at the end then hit the gain stage's limit (raw distance up, on the real benchmark)."""
    cols = [PARAM_SLICES["gain"].start + j for j in range(len(SPECS["gain"]))]
    for name in SELECTABLE:
        cols += [PARAM_SLICES[name].start + j for j, spec in enumerate(SPECS[name]) if spec.name in LEVEL_ONLY]
    return cols


@dataclass(frozen=True)
class RefineConfig:
    steps: int = 150  # at most this many gradient steps (all candidates at once)
    budget_s: float = 8.0  # seconds for the whole refinement; the fit stops when the rest would not fit
    learning_rate: float = 0.1
    n_candidates: int = 3  # best-ranked on/off combinations fitted
    full_chain: bool = True  # also fit all four effects on (pruning then drops what is not heard)
    search_prior: float = 0.3  # weight of the network's log-likelihood when ranking combinations
    fit_s: float = 1.0  # seconds of audio the fit runs on (the loudest stretch; 2 s: a third of the steps)
    select_s: float = 8.0  # seconds of audio the never-worse selection compares on
    # start from the module's coordinate search (pimodule.device.fx.check, numpy, a few seconds):
    # its parameters seed every candidate and its combination is one of them
    search_first: bool = True
    # effects whose POLISH parameters are searched on the whole selection stretch after the fit
    polish: tuple[str, ...] = ("reverb", "compressor")

    def __post_init__(self):
        if self.steps < 0 or not 1 <= self.n_candidates <= len(SUBSETS):
            raise ValueError(f"steps >= 0 and 1 <= n_candidates <= {len(SUBSETS)} required")
        if not all(math.isfinite(v) and v > 0 for v in (self.budget_s, self.fit_s, self.select_s, self.learning_rate)):
            raise ValueError("budget_s, fit_s, select_s and learning_rate must be positive")
        if not set(self.polish) <= set(POLISH):
            raise ValueError(f"polish: effects of {', '.join(POLISH)}")


@dataclass
class Refined:
    """One refined estimate and what decided it."""

    chain: Chain  # (1, ...) hard decisions, fitted parameters, gain stage in closed form
    distance: tuple[float, float]  # its level-matched (MRSTFT, log-mel dB) to the wet audio
    level_only: tuple[float, float]  # the level alone's
    confidence: dict[str, str]  # effect -> "on, sure" | "on, probably" | "off, probably" | "off, sure"
    change_db: dict[str, float]  # effect -> what removing it changes (dB), the chosen effects
    steps: int = 0
    seconds: float = 0.0
    choice: str = ""  # "chain", "without <effect>", "level only"
    candidates: dict = field(default_factory=dict)  # label -> (MRSTFT, mel) of what was compared


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


def _neutral_gain(chain: Chain) -> Chain:
    unit = chain.unit.clone()
    unit[:, PARAM_SLICES["gain"]] = _ZERO_GAIN
    return Chain(chain.active, unit, chain.mode_weights)


def render(x: torch.Tensor, sample_rate: int, chain: Chain) -> torch.Tensor:
    """Hard ``chain`` ``(batch, ...)`` on ``x`` ``(samples,)`` or ``(batch, samples)``."""
    x = x.expand(chain.batch, -1) if x.ndim == 1 else x
    with torch.no_grad():
        return render_stages(x, sample_rate, chain)[0]


def level_matched(est: torch.Tensor, y: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(MRSTFT, log-mel dB) of ``est`` ``(batch, samples)`` to ``y`` ``(samples,)``, both at unit RMS."""
    a, b = _unit_rms(est), _unit_rms(y.expand_as(est))
    with torch.no_grad():
        return mrstft(a, b), mel_distance(a, b, sample_rate)


def distance(x: torch.Tensor, y: torch.Tensor, sample_rate: int, chain: Chain, chunk: int = 64) -> torch.Tensor:
    """Level-matched log-mel distance (dB) of hard ``chain`` on ``x`` to ``y`` ``(batch, samples)``."""
    out = []
    for s in range(0, x.shape[0], chunk):
        est = render(x[s : s + chunk], sample_rate, chain.rows(slice(s, s + chunk)))
        with torch.no_grad():
            out.append(mel_distance(_unit_rms(est), _unit_rms(y[s : s + chunk]), sample_rate))
    return torch.cat(out)


def closed_form_gain_db(est: torch.Tensor, y: torch.Tensor) -> float:
    """The gain (dB) that brings ``est`` to ``y``'s level: least squares on STFT magnitudes."""

    with torch.no_grad():
        a, b = _mag(est.reshape(1, -1).float(), 1024), _mag(y.reshape(1, -1).float(), 1024)
        g = float((a * b).sum() / (a.square().sum() + 1e-12))
    return 20 * math.log10(max(g, 1e-6))


def loudest(y: torch.Tensor, n: int) -> slice:
    """The stretch of ``n`` samples of ``y`` with the most energy (hops of 1/10 of ``n``)."""
    if y.shape[-1] <= n:
        return slice(0, y.shape[-1])
    hop = max(1, n // 10)
    energy = torch.nn.functional.pad(y.square(), (0, (-y.shape[-1]) % hop)).reshape(-1, hop).sum(-1)
    k = n // hop
    sums = torch.nn.functional.conv1d(energy[None, None], torch.ones(1, 1, k, dtype=energy.dtype))[0, 0]
    start = int(sums.argmax()) * hop
    return slice(start, start + n)


def fit(
    x: torch.Tensor,
    y: torch.Tensor,
    sample_rate: int,
    start: Chain,
    steps: int,
    learning_rate: float,
    budget_s: float = math.inf,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[Chain, int]:
    """``start``'s [0, 1] parameters and curve (every row is a candidate; its ``active`` are hard)
    fitted so that it turns ``x`` ``(samples,)`` into ``y``, levels matched: each row keeps its
    best step. Returns (the fitted chain with the curve still soft, steps taken)."""
    z = torch.logit(start.unit.detach().clamp(_EPS, 1 - _EPS)).clone().requires_grad_(True)
    held = level_columns()
    z0 = z.detach()[:, held].clone()
    m = torch.log(start.mode_weights.detach().clamp_min(1e-3)).clone().requires_grad_(True)
    opt = torch.optim.Adam([z, m], lr=learning_rate)
    k = start.batch
    xs, target = x.expand(k, -1), _unit_rms(y)[None].expand(k, -1)
    target_mel = log_mel_db(target[:1], sample_rate).detach()
    best = torch.full((k,), math.inf)
    best_z, best_m = z.detach().clone(), m.detach().clone()
    t0, taken = time.perf_counter(), 0
    with torch.enable_grad():
        for step in range(steps + 1):
            out = apply_chain(xs[:, None], sample_rate, Chain(start.active, torch.sigmoid(z), torch.softmax(m, -1)))
            out = _unit_rms(out[:, 0])
            loss = mrstft(out, target) + MEL_WEIGHT * (log_mel_db(out, sample_rate) - target_mel).abs().mean((-2, -1))
            # the level parameters held (the best step is judged with the pull, as the loss scored it)
            loss = loss + HOLD_WEIGHT * (z[:, held] - z0).square().sum(-1)
            finite = torch.isfinite(loss)
            better = finite & (loss.detach() < best)
            best = torch.where(better, loss.detach(), best)
            best_z[better], best_m[better] = z.detach()[better], m.detach()[better]
            elapsed = time.perf_counter() - t0
            if step == steps or elapsed >= budget_s or not finite.any():
                break
            opt.zero_grad()
            torch.where(finite, loss, torch.zeros_like(loss)).sum().backward()
            opt.step()
            taken += 1
            if progress is not None:
                progress(taken, steps, elapsed)
    return Chain(start.active, torch.sigmoid(best_z), torch.softmax(best_m, -1)), taken


def _hard_mode(chain: Chain) -> Chain:
    mode = torch.nn.functional.one_hot(chain.mode_weights.argmax(-1), N_MODES).to(chain.unit.dtype)
    return Chain(chain.active, chain.unit, mode)


def _without(chain: Chain, effect: str) -> Chain:
    active = chain.active.clone()
    active[:, EFFECT_NAMES.index(effect)] = 0.0
    return Chain(active, chain.unit, chain.mode_weights)


def removal_changes(x: torch.Tensor, y: torch.Tensor, sample_rate: int, chain: Chain, effects) -> dict:
    """Per effect, how much switching it off changes ``y`` (``x`` through ``chain``): the
    level-matched log-mel distance (dB), what "heard" means here and in the benchmark."""
    return {
        e: float(mel_distance(_unit_rms(render(x, sample_rate, _without(chain, e))), _unit_rms(y), sample_rate)[0])
        for e in effects
    }


def polish(x: torch.Tensor, y: torch.Tensor, sample_rate: int, chain: Chain, effect: str) -> Chain:
    """``chain`` (one row, hard) with ``effect``'s :data:`POLISH` parameters searched on a grid
    around the fitted values, judged on ``x``/``y`` (the whole selection stretch: the fit sees the
    loudest second, where a weak reverb's tail hides under the direct sound and a compressor's
    work under the loud part, and fits them weaker still) by the fit's own level-matched distance;
    unchanged when the effect is off or nothing on the grid is closer."""
    grid = polish_grid(chain, effect)
    if grid is None:
        return chain
    m, mel = level_matched(render(x, sample_rate, grid), y, sample_rate)
    best = int((m + MEL_WEIGHT * mel).argmin())  # row 0, the fitted values, wins ties
    return Chain(chain.active, grid.unit[best : best + 1], chain.mode_weights)


def refine_one(
    x: torch.Tensor,
    y: torch.Tensor,
    sample_rate: int,
    estimate: Chain,
    config: RefineConfig = RefineConfig(),
    progress: Callable[[int, int, float], None] | None = None,
) -> Refined:
    """The refined chain for dry ``x`` and wet ``y`` ``(samples,)`` from the network's ``estimate``
    (one row, soft); see the module doc."""
    t0 = time.perf_counter()
    x64, y64 = x.double().reshape(-1), y.double().reshape(-1)
    x, y = x.float().reshape(-1), y.float().reshape(-1)
    if x.shape != y.shape or estimate.batch != 1:
        raise ValueError(f"dry {tuple(x.shape)}, wet {tuple(y.shape)} and {estimate.batch} estimates do not match")
    fit_part = loudest(y, int(config.fit_s * sample_rate))
    sel_part = loudest(y, int(config.select_s * sample_rate))
    xf, yf = x[fit_part], y[fit_part]
    # the decisions (3, 4) are rendered in float64, as the module's check and --apply-to render: in
    # float32 the chain's FFT rounding fills digital silence, which the MRSTFT's log term counts
    xs, ys = x64[sel_part], y64[sel_part]
    base = _neutral_gain(estimate.hard().to(torch.float32))
    soft_mode = estimate.mode_weights.float()
    ll = subset_log_likelihood(estimate.active.float())[0]
    # 1. rank the combinations with the network's parameters
    every = Chain(
        with_subset(base.active.expand(16, -1), SUBSETS), base.unit.expand(16, -1), base.mode_weights.expand(16, -1)
    )
    d0 = level_matched(render(xf, sample_rate, every), yf, sample_rate)[1]
    order = torch.argsort(d0 - config.search_prior * ll, stable=True).tolist()
    picks = order[: config.n_candidates]
    if config.search_first:  # the module's search, on the same stretch, seeds the parameters
        searched = SubsetCheck(sample_rate)(xf.double().numpy(), yf.double().numpy(), describe(estimate, 0))
        unit = base.unit.clone()
        for name in SELECTABLE:
            for j, spec in enumerate(SPECS[name]):
                unit[0, PARAM_SLICES[name].start + j] = float(spec.to_unit(searched[name]["params"][spec.name]))
        base = Chain(base.active, unit, base.mode_weights)
        found = int(sum(int(searched[e]["active"]) << (3 - k) for k, e in enumerate(SELECTABLE)))
        picks = [found] + [c for c in picks if c != found][: config.n_candidates - 1]
    if config.full_chain and 15 not in picks:
        picks.append(15)
    cand = Chain(
        with_subset(base.active.expand(len(picks), -1), SUBSETS[picks]),
        base.unit.expand(len(picks), -1).clone(),
        soft_mode.expand(len(picks), -1).clone(),
    )
    # 2. fit them all at once
    # what is left of the budget, less what the polish, the pruning and the selection will take
    # (about 60 renders of the selection stretch, timed by the ranking's 16; at most a quarter of the budget,
    # for the first call in a process also compiles the effects' kernels)
    spent = time.perf_counter() - t0
    renders = 12 + len(picks) + polish_renders(config.polish)
    reserve = min(spent * renders * xs.shape[-1] / (16 * xf.shape[-1]), 0.25 * config.budget_s)
    fit_budget = max(0.0, config.budget_s - spent - reserve)
    fitted, steps = fit(xf, yf, sample_rate, cand, config.steps, config.learning_rate, fit_budget, progress)
    # the closest fitted candidate on the whole selection stretch (step 3)
    hard = _neutral_gain(_hard_mode(fitted)).to(torch.float64)  # the level comes last
    m, mel = level_matched(render(xs, sample_rate, hard), ys, sample_rate)
    best = int((m + MEL_WEIGHT * mel).argmin())
    chosen = hard.rows(slice(best, best + 1))
    for effect in config.polish:
        chosen = polish(xs, ys, sample_rate, chosen, effect)
    # 3. prune what is not heard
    y_sel = render(xs, sample_rate, chosen)
    on = [e for e in SELECTABLE if chosen.active[0, EFFECT_NAMES.index(e)] >= 0.5]
    change = removal_changes(xs, y_sel, sample_rate, chosen, on)
    kept = tuple(e for e in on if heard(e, change[e]))
    # 4. never worse than the level alone, and nothing that does not earn its place
    renders = {}

    def distance_of(sub: tuple) -> tuple[float, float]:
        bits = torch.tensor([[float(e in sub) for e in SELECTABLE]], dtype=torch.float64)
        c = Chain(with_subset(chosen.active, bits), chosen.unit, chosen.mode_weights)
        r = renders[sub] = render(xs, sample_rate, c)
        m_, l_ = level_matched(r, ys, sample_rate)
        return float(m_[0]), float(l_[0])

    probability = {e: float(estimate.active[0, EFFECT_NAMES.index(e)]) for e in SELECTABLE}
    picked, scores = simplest_closest(kept, distance_of, effect_costs(probability))
    bits = torch.tensor([[float(e in picked) for e in SELECTABLE]])
    final = Chain(with_subset(chosen.active, bits), chosen.unit, chosen.mode_weights)
    # 5. the level in closed form, the decisions in words
    gain_db = closed_form_gain_db(renders[picked][0], ys)
    unit = final.unit.clone()
    unit[0, PARAM_SLICES["gain"]] = float(_GAIN_SPEC.to_unit(_GAIN_SPEC.clamp(gain_db)))
    final = Chain(final.active.clone(), unit, final.mode_weights).to(torch.float32)
    words = {}
    for e in SELECTABLE:
        p = float(estimate.active[0, EFFECT_NAMES.index(e)])
        is_on = e in picked
        gap = margin(scores, picked, e) if is_on else 0.0
        words[e] = confidence(is_on, change.get(e, 0.0), gap, p, e in on or p >= 0.5)
    return Refined(
        chain=final,
        distance=scores[picked],
        level_only=scores[()],
        confidence=words,
        change_db=change,
        steps=steps,
        seconds=time.perf_counter() - t0,
        choice=label(picked, kept),
        candidates={label(k, kept) if k else "level only": v for k, v in scores.items()},
    )


def refine(
    x: torch.Tensor, y: torch.Tensor, sample_rate: int, estimate: Chain, config: RefineConfig = RefineConfig()
) -> tuple[Chain, torch.Tensor]:
    """:func:`refine_one` for each row of dry ``x`` and wet ``y`` ``(batch, samples)``: the hard
    chains and their level-matched log-mel distances (dB) to ``y``."""
    if x.shape != y.shape or x.ndim != 2 or estimate.batch != x.shape[0]:
        raise ValueError(f"dry {tuple(x.shape)}, wet {tuple(y.shape)} and {estimate.batch} estimates do not match")
    outs = [refine_one(x[i], y[i], sample_rate, estimate.rows(slice(i, i + 1)), config) for i in range(x.shape[0])]
    chain = Chain(*(torch.cat([getattr(o.chain, k) for o in outs]) for k in ("active", "unit", "mode_weights")))
    return chain, torch.tensor([o.distance[1] for o in outs])
