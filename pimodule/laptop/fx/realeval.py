"""Scoring estimators on the real-recording benchmark (:mod:`pimodule.laptop.fx.realbench`) the way a
user meets them: the estimate of each example rendered on its dry signal (with the project's chain,
at the benchmark's rate) and compared with the wet file.

Rows (an estimator and what is done with its estimate):

- ``level only``: no effect, the dry signal at the wet one's level (closed form): doing nothing;
- ``<dry model> network``: the network's decisions (p ≥ 0.5) and parameters, level in closed form;
- ``<dry model> module check``: the module's check (:class:`pimodule.device.fx.check.SubsetCheck`,
  numpy twins) of the network's estimate on one analysis window (the loudest), as fx mode runs it;
- ``<dry model> refine``: the laptop's default path (``pimodule estimate --dry``: the files lined up,
  :mod:`pimodule.device.fx.align`, then :mod:`pimodule.laptop.fx.refine`); ``..., input late``: the
  same with each wet file 2-40 ms late on its dry one (:func:`late_wet`), scored against the wet
  file as it was;
- ``<blind model> network`` and ``<blind model> kept``: a blind model's decisions at p ≥ 0.5, and
  with only the effects it is sure enough of, at the size it can stand behind (its calibrated
  thresholds and strengths, ``pimodule.fx.keep`` and ``pimodule.fx.strength``), as
  ``pimodule estimate`` and fx mode use it.

Numbers per row: ratio = MRSTFT(estimate, wet) ÷ MRSTFT(dry, wet) ("raw": the estimate with its own
level, the dry as it is, as the issue measured it), and with levels matched (both signals at unit
RMS before the distance); the same for the log-mel distance; the share of examples where the ratio
is below 1, and where the level-matched ratio is at most 1 ("never worse than doing nothing": the
level alone scores exactly 1); detection: each effect's on/off against what is audible in the
third-party chain (removing it changes the output by ≥ 1.5 dB), and the whole audible chain right;
seconds per example on this machine. Style transfer rows (DeepAFx-ST: the estimate from the
reference rendered on the input b, compared with the target chain(b)) are scored the same way;
a reference model's rows: ``network`` (its decisions at p ≥ 0.5), ``checked`` (as ``pimodule
estimate --reference`` checks it) and ``module check`` (as fx mode checks it, on one window).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pimodule.core.fx_specs import EFFECT_NAMES, SELECTABLE, SPECS
from pimodule.device.fx.check import CheckConfig, SubsetCheck
from pimodule.device.fx.estimator import keep_confident
from pimodule.device.fx.style_check import ReferenceCheck
from pimodule.laptop.fx import realbench
from pimodule.laptop.fx.chain import PARAM_SLICES, Chain, describe, with_strength
from pimodule.laptop.fx.infer import LoadedEstimator, lined_up, refine_estimate, styled_estimate
from pimodule.laptop.fx.losses import mel_distance, mrstft
from pimodule.laptop.fx.realbench import SAMPLE_RATE, Example
from pimodule.laptop.fx.refine import RefineConfig, _neutral_gain, closed_form_gain_db, loudest, render
from pimodule.laptop.fx.style import match_reference

log = logging.getLogger(__name__)
_GAIN = SPECS["gain"]["gain_db"]
#: a level-matched ratio up to 1 + this counts as "not worse" (rendered and scored in float64 the level alone
#: itself scores 1 within 1e-4)
NOT_WORSE_TOL = 1e-3
#: the "input late" row: how late each example's wet file is on its dry one (ms; re-amping through an
#: interface, a digital pedal), drawn per example
LATE_MS = (2.0, 40.0)
#: added to both distances of a ratio: a chain of level changes only (nothing to find) has a
#: level-matched distance of float noise, which must not be divided by itself
RATIO_EPS = {"mrstft": 1e-3, "mel": 1e-2}


@dataclass
class Outcome:
    audio: np.ndarray  # the estimate rendered on the example's dry signal (or input b)
    on: dict[str, bool]  # the estimate's decisions
    seconds: float


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / (x.square().mean(-1, keepdim=True).sqrt() + 1e-9)


def _f64(a) -> torch.Tensor:
    """Scored and rendered in float64: in float32 the level-matched MRSTFT of quiet material moves by
    up to 1e-4 when the signal is only scaled, which on an example whose chain is inaudible is more
    than the whole distance (the level alone then scored "worse than doing nothing")."""
    return torch.from_numpy(np.asarray(a, np.float64))


def example_scores(ex: Example, out: Outcome) -> dict:
    """One example's distances, ratios and detection (see the module doc)."""
    est, wet, dry = (_f64(a)[None] for a in (out.audio, ex.wet, ex.dry))
    est = torch.where(torch.isfinite(est), est, torch.zeros_like(est))
    r = {}
    for name, fn in (("mrstft", mrstft), ("mel", lambda a, b: mel_distance(a, b, SAMPLE_RATE))):
        d_raw, d0_raw = float(fn(est, wet)[0]), float(fn(dry, wet)[0])
        d_lm, d0_lm = float(fn(_unit(est), _unit(wet))[0]), float(fn(_unit(dry), _unit(wet))[0])
        eps = RATIO_EPS[name]
        r[f"{name}_ratio_raw"] = (d_raw + eps) / (d0_raw + eps)
        r[f"{name}_ratio_lm"] = (d_lm + eps) / (d0_lm + eps)
        r[f"{name}_lm"], r[f"{name}_lm_nothing"] = d_lm, d0_lm
    truth = ex.audible
    r["right"] = {e: bool(out.on.get(e, False) == truth[e]) for e in SELECTABLE}
    r["seconds"] = out.seconds
    return r


def summarise(scores: list[dict], examples: list[Example]) -> dict:
    """A row's aggregate numbers (and per family)."""

    def agg(idx: list[int]) -> dict:
        if not idx:
            return {"n": 0}
        s = [scores[i] for i in idx]
        raw = np.array([x["mrstft_ratio_raw"] for x in s])
        lm = np.array([x["mrstft_ratio_lm"] for x in s])
        mel = np.array([x["mel_ratio_lm"] for x in s])
        right = np.array([[x["right"][e] for e in SELECTABLE] for x in s])
        return {
            "n": len(s),
            "median_ratio_raw": float(np.median(raw)),
            "median_ratio_lm": float(np.median(lm)),
            "median_mel_ratio_lm": float(np.median(mel)),
            "share_raw_below_1": float(np.mean(raw < 1)),
            "share_not_worse_lm": float(np.mean(lm <= 1 + NOT_WORSE_TOL)),
            "whole_chain_right": float(np.mean(right.all(1))),
            "per_effect_right": {e: float(right[:, i].mean()) for i, e in enumerate(SELECTABLE)},
            "seconds_per_example": float(np.mean([x["seconds"] for x in s])),
        }

    out = agg(list(range(len(scores))))
    out["by_family"] = {
        fam: agg([i for i, ex in enumerate(examples) if ex.family == fam])
        for fam in sorted({e.family for e in examples})
    }
    return out


# -- the estimators as a user runs them --------------------------------------------------------------------
def with_level(pred: Chain, dry: torch.Tensor, wet: torch.Tensor, sample_rate: int, chunk: int = 16) -> Chain:
    """A dry model's hard estimates as the product plays them: the gain stage in closed form on each
    dry -> wet pair (``pimodule estimate`` and the module's matcher set it so; the model is trained
    with levels matched, so its own gain output means nothing)."""
    gain, spec = PARAM_SLICES["gain"], SPECS["gain"]["gain_db"]
    unit, active = pred.unit.clone(), pred.active.clone()
    unit[:, gain] = float(spec.to_unit(0.0))
    active[:, EFFECT_NAMES.index("gain")] = 1.0
    for s in range(0, dry.shape[0], chunk):
        rows = slice(s, s + chunk)
        est = render(dry[rows], sample_rate, Chain(active[rows], unit[rows], pred.mode_weights[rows]))
        for i in range(est.shape[0]):
            unit[s + i, gain] = float(spec.to_unit(spec.clamp(closed_form_gain_db(est[i], wet[s + i]))))
    return Chain(active, unit, pred.mode_weights)


def _closed_form(chain: Chain, x: torch.Tensor, y: torch.Tensor) -> tuple[Chain, torch.Tensor]:
    """``chain`` with its gain stage set in closed form for dry ``x`` -> wet ``y`` (1-D), and its render."""
    x = x.to(torch.float64)
    c = with_level(chain.to(torch.float64), x[None], y[None], SAMPLE_RATE)
    return c, render(x, SAMPLE_RATE, c)[0]


def at_level_of(est: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``est`` at ``y``'s RMS level (along the last axis: per example of a batch): how a style
    estimate plays (the reference's level)."""
    return est * (y.square().mean(-1, keepdim=True).sqrt() / (est.square().mean(-1, keepdim=True).sqrt() + 1e-12))


def _decisions(chain: Chain) -> dict[str, bool]:
    return {e: bool(chain.active[0, EFFECT_NAMES.index(e)] >= 0.5) for e in SELECTABLE}


def level_only(ex: Example, source: np.ndarray | None = None) -> Outcome:
    t0 = time.perf_counter()
    x = _f64(ex.dry if source is None else source)
    y = _f64(ex.wet if source is None else ex.reference)
    g = (
        closed_form_gain_db(x, y)
        if source is None
        else 20 * np.log10(float(y.square().mean().sqrt()) / (float(x.square().mean().sqrt()) + 1e-12) + 1e-12)
    )
    return Outcome((x * 10 ** (g / 20)).numpy(), dict.fromkeys(SELECTABLE, False), time.perf_counter() - t0)


def network(model: LoadedEstimator, ex: Example) -> Outcome:
    t0 = time.perf_counter()
    chain = model.estimate(ex.wet, SAMPLE_RATE, other=ex.dry if model.conditioning == "dry" else None)
    hard = chain.hard()
    c, est = _closed_form(hard, _f64(ex.dry), _f64(ex.wet))
    return Outcome(est.numpy(), _decisions(c), time.perf_counter() - t0)


def late_wet(ex: Example) -> np.ndarray:
    """``ex``'s wet file made late on its dry one by a seeded draw from :data:`LATE_MS` (the start
    padded with silence, the end cut): as a re-amped or separately recorded file arrives."""
    rng = realbench._seed("late", ex.recording, ex.family, sorted(ex.change_db.items()), ex.wet.shape[0])
    n = max(1, int(round(rng.uniform(*LATE_MS) * 1e-3 * SAMPLE_RATE)))
    return np.concatenate([np.zeros(n, ex.wet.dtype), ex.wet[:-n]])


def refined(model: LoadedEstimator, ex: Example, config: RefineConfig = RefineConfig(), late: bool = False) -> Outcome:
    """``pimodule estimate --dry``'s path: the files lined up, the network, refine; with ``late``
    the wet file arrives late (:func:`late_wet`). Rendered on the dry file, scored against the wet."""
    t0 = time.perf_counter()
    y, x, _ = lined_up(late_wet(ex) if late else ex.wet, SAMPLE_RATE, ex.dry, SAMPLE_RATE, model.sample_rate)
    chain = model.estimate(y, model.sample_rate, other=x)
    r = refine_estimate(model, chain, y, x, config)
    est = render(_f64(ex.dry), SAMPLE_RATE, r.chain.to(torch.float64))[0]
    return Outcome(est.numpy(), _decisions(r.chain), time.perf_counter() - t0)


def module_check(model: LoadedEstimator, ex: Example, config: CheckConfig = CheckConfig()) -> Outcome:
    """As fx mode runs it: the network and the check on one analysis window (the loudest)."""
    t0 = time.perf_counter()
    part = loudest(torch.from_numpy(ex.wet), model.window)
    dry, wet = ex.dry[part], ex.wet[part]
    chain = model.estimate(wet, SAMPLE_RATE, other=dry)
    out = SubsetCheck(SAMPLE_RATE, config)(dry, wet, describe(chain, 0))
    c, est = _closed_form(_checked_chain(chain, out), _f64(ex.dry), _f64(ex.wet))
    return Outcome(est.numpy(), _decisions(c), time.perf_counter() - t0)


def _checked_chain(chain: Chain, out: dict) -> Chain:
    """The network's ``chain`` with a module check's decisions and values (``out``, physical units)."""
    active = chain.hard().active.clone()
    unit = chain.unit.clone()
    for name in EFFECT_NAMES:
        if name in SELECTABLE:
            active[0, EFFECT_NAMES.index(name)] = float(out[name]["active"])
        for j, spec in enumerate(SPECS[name]):
            unit[0, PARAM_SLICES[name].start + j] = float(spec.to_unit(out[name]["params"][spec.name]))
    return Chain(active, unit, chain.hard().mode_weights)


def blind(model: LoadedEstimator, ex: Example, kept: bool, style: bool = False) -> Outcome:
    """A blind estimate of the wet file (or, in style examples, of the reference) rendered on the
    dry signal (input b); with ``kept`` only the effects above the model's keep thresholds."""
    t0 = time.perf_counter()
    heard = ex.reference if style else ex.wet
    chain = model.estimate(heard, SAMPLE_RATE)
    hard = chain.hard()
    if kept:
        desc = keep_confident(describe(chain, 0), model.keep, model.strength)
        active = hard.active.clone()
        for e in SELECTABLE:
            active[0, EFFECT_NAMES.index(e)] = float(desc[e]["active"])
        strength = {e: desc[e]["strength"] for e in SELECTABLE if "strength" in desc[e]}
        hard = with_strength(Chain(active, hard.unit, hard.mode_weights), strength)
    x, y = _f64(ex.dry), _f64(heard)
    c, est = _closed_form(hard, x, y)
    if style:  # the level of the reference is what there is to match
        est = at_level_of(est, y)
    return Outcome(est.numpy(), _decisions(c), time.perf_counter() - t0)


def run_rows(rows: dict[str, Callable[[Example], Outcome]], examples: list[Example]) -> dict:
    """Every row on every example: {row: summary} plus the per-example ratios."""
    out = {}
    for name, fn in rows.items():
        log.info("real benchmark: %s (%d examples)", name, len(examples))
        scores = []
        for ex in examples:
            scores.append(example_scores(ex, fn(ex)))
        summary = summarise(scores, examples)
        summary["ratios_lm"] = [round(s["mrstft_ratio_lm"], 4) for s in scores]
        out[name] = summary
    return out


def reference_model(model: LoadedEstimator, ex: Example) -> Outcome:
    """A reference-conditioned model: the chain heard in the reference, for the input b."""
    t0 = time.perf_counter()
    chain = model.estimate(ex.reference, SAMPLE_RATE, other=ex.dry)
    c, est = _closed_form(chain.hard(), _f64(ex.dry), _f64(ex.reference))
    y = _f64(ex.reference)
    est = at_level_of(est, y)
    return Outcome(est.numpy(), _decisions(c), time.perf_counter() - t0)


def reference_checked(model: LoadedEstimator, ex: Example) -> Outcome:
    """A reference-conditioned model's chain checked on the audio as the CLI checks it
    (:func:`pimodule.laptop.fx.infer.styled_estimate`), played on the input b."""
    t0 = time.perf_counter()
    r = styled_estimate(model, ex.dry, SAMPLE_RATE, ex.reference, SAMPLE_RATE)
    est = render(_f64(ex.dry), SAMPLE_RATE, r.chain.to(torch.float64))[0]
    return Outcome(est.numpy(), _decisions(r.chain), time.perf_counter() - t0)


def reference_module_check(model: LoadedEstimator, ex: Example) -> Outcome:
    """A reference-conditioned model as fx mode runs it: the network and the module's check
    (:class:`pimodule.device.fx.style_check.ReferenceCheck`) on one analysis window of each input
    (the loudest; they need not line up), the chain played on the whole input b at the
    reference's level."""
    t0 = time.perf_counter()
    ref = ex.reference[loudest(torch.from_numpy(ex.reference), model.window)]
    x = ex.dry[loudest(torch.from_numpy(ex.dry), model.window)]
    chain = model.estimate(ref, SAMPLE_RATE, other=x)
    out = ReferenceCheck(SAMPLE_RATE)(x, ref, describe(chain, 0))
    c = _checked_chain(chain, out)
    est = at_level_of(render(_f64(ex.dry), SAMPLE_RATE, _neutral_gain(c.to(torch.float64)))[0], _f64(ex.reference))
    return Outcome(est.numpy(), _decisions(c), time.perf_counter() - t0)


def benchmark_rows(models: dict[str, LoadedEstimator], check: CheckConfig, refine: RefineConfig):
    """(rows for the dry-conditioned and blind examples, rows for the style examples)."""
    rows: dict[str, Callable[[Example], Outcome]] = {"level only": level_only}
    style: dict[str, Callable[[Example], Outcome]] = {"level only (the reference's)": lambda e: level_only(e, e.dry)}
    for name, m in models.items():
        if m.conditioning == "dry":
            rows[f"{name} network"] = lambda e, m=m: network(m, e)
            rows[f"{name} module check"] = lambda e, m=m: module_check(m, e, check)
            rows[f"{name} refine"] = lambda e, m=m: refined(m, e, refine)
            rows[f"{name} refine, input late"] = lambda e, m=m: refined(m, e, refine, late=True)
        elif m.conditioning == "blind":
            rows[f"{name} network"] = lambda e, m=m: blind(m, e, kept=False)
            rows[f"{name} kept"] = lambda e, m=m: blind(m, e, kept=True)
            style[f"{name} from the reference"] = lambda e, m=m: blind(m, e, kept=True, style=True)
            style[f"{name} + reference match"] = lambda e, m=m: reference_match(m, e, refine)
        else:
            style[f"{name} network"] = lambda e, m=m: reference_model(m, e)
            style[f"{name} checked"] = lambda e, m=m: reference_checked(m, e)
            style[f"{name} module check"] = lambda e, m=m: reference_module_check(m, e)
    return rows, style


def reference_match(model: LoadedEstimator, ex: Example, config: RefineConfig = RefineConfig()) -> Outcome:
    """Style transfer without a dry file: the blind estimate of the reference, fitted on the input b
    to the reference's features (:func:`pimodule.laptop.fx.style.match_reference`)."""

    t0 = time.perf_counter()
    chain = model.estimate(ex.reference, SAMPLE_RATE)
    x = torch.from_numpy(ex.dry).float()
    r = match_reference(x, torch.from_numpy(ex.reference).float(), SAMPLE_RATE, chain, config)
    est = render(_f64(ex.dry), SAMPLE_RATE, r.chain.to(torch.float64))[0]
    return Outcome(est.numpy(), _decisions(r.chain), time.perf_counter() - t0)


#: the benchmark's parts and the cases of ``pimodule eval fx --cases`` that select each
PARTS = {"estimate": ("chain", "pedalboard"), "style": ("style",)}


def parts_for(cases) -> tuple[str, ...]:
    """The benchmark's parts that ``cases`` select: style the style-transfer examples, chain or
    pedalboard the wet files' examples."""
    return tuple(p for p, selecting in PARTS.items() if set(selecting) & set(cases))


def real_benchmark(paths, seed: int, draws: int, parts: tuple[str, ...] = tuple(PARTS)) -> dict:
    """The models (exported files or run folders) on the real-recording benchmark: every row of
    its ``parts`` (``estimate``: the wet files' examples, ``style``: the style-transfer ones)."""
    models = {Path(p).name: LoadedEstimator(p) for p in paths}
    check, refine_config = CheckConfig(), RefineConfig()
    rows, style_rows = benchmark_rows(models, check, refine_config)
    out = {
        "seed": seed,
        "draws": draws,
        "check": dataclasses.asdict(check),
        "refine": dataclasses.asdict(refine_config),
        "models": {
            n: {"conditioning": m.conditioning, "keep": m.keep, "strength": m.strength} for n, m in models.items()
        },
    }
    if "estimate" in parts:
        examples = realbench.build(seed=seed, draws=draws)
        out.update(benchmark=realbench.describe_benchmark(examples), rows=run_rows(rows, examples))
    if "style" in parts:
        style = realbench.build_style(seed=seed, draws=draws)
        out.update(style_benchmark=realbench.describe_benchmark(style), style_rows=run_rows(style_rows, style))
    return out


def write_real(out: Path, paths, seed: int, draws: int, parts: tuple[str, ...] = tuple(PARTS)) -> Path:
    """:func:`real_benchmark` into ``out/real.json`` (the folder made if needed); returns its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "real.json"
    path.write_text(json.dumps(real_benchmark(paths, seed, draws, parts), indent=1))
    return path
