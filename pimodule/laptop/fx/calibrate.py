"""Calibrate what a blind estimate keeps: per effect, the probability from which it stays on, and
how much of its estimated size is applied.

A blind estimator cannot check its estimate against the dry signal, so it keeps only the effects it
is sure enough of, and of those only as much as it can stand behind: a network that hears that
there is reverb often overstates how much. Both are chosen on tuning examples made as the
real-recording benchmark makes its examples, but from the *training* recordings and the families
training sees (:func:`pimodule.laptop.fx.realbench.build_tuning`; SoX and dasp-pytorch never):

1. strength: per effect, on the examples where the network hears it (p ≥ 0.5), that effect alone is
   rendered on the dry signal at each strength of a grid (:func:`pimodule.core.fx_specs.toward_neutral`);
   the strength with the most examples brought closer to the wet file than doing nothing
   (level-matched MRSTFT) less twice the examples taken farther wins (ties: the one bringing the
   median example closest);
2. thresholds: every on/off combination of the estimate at those strengths is rendered, and of the
   thresholds on a grid the ones that bring the most examples closer to the wet file than doing
   nothing win, among those whose share of examples taken farther is at most ``1 - target`` *with
   95 % confidence* (:func:`worse_bound`, the Clopper–Pearson upper bound on the tuning count): a
   user's material is not the tuning set, and a share measured as exactly 5 % on 160 examples is as
   likely above 5 % as below it. On the real benchmark the point estimate had kept distortion on
   clean flute and speech (farther than doing nothing on 12 % of its examples).

They are written into the model file's metadata (``pimodule.fx.keep``, ``pimodule.fx.strength``),
where ``pimodule estimate`` and fx mode read them
(:func:`pimodule.device.fx.estimator.keep_confident`). The report also says how far any keep rule
could take the network (:func:`detection_auc`, :func:`perfect_detector`) on the tuning examples.
They are close to training's own material: judge a new network on the real benchmark
(docs/results/experiments.md: 1000 more training steps raised the tuning AUCs a lot and the
benchmark's hardly).

    python -m pimodule.laptop.fx.calibrate export/fx.onnx --dry-run  # the report only
    python -m pimodule.laptop.fx.calibrate export/fx.onnx            # in place
    python -m pimodule.laptop.fx.calibrate runs/fx_blind_world       # a run folder: keep.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from pathlib import Path

import numpy as np
import scipy.stats
import torch

from pimodule.core.fx_specs import EFFECT_NAMES, SELECTABLE
from pimodule.device.fx.estimator import KEY_KEEP, KEY_STRENGTH
from pimodule.laptop.fx import realbench
from pimodule.laptop.fx.chain import Chain, with_strength
from pimodule.laptop.fx.infer import KEEP_FILE, STRENGTH_FILE, LoadedEstimator
from pimodule.laptop.fx.losses import mrstft
from pimodule.laptop.fx.refine import SUBSETS, render, with_subset

log = logging.getLogger(__name__)
GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.01)  # 1.01: never kept
STRENGTHS = (1.0, 0.7, 0.5, 0.35, 0.25)
#: confidence with which the share of tuning examples made worse stays within 1 - target
CONFIDENCE = 0.95
WORSE_WEIGHT = 2.0  # an example taken farther from the recording costs this many brought closer
_COLS = [EFFECT_NAMES.index(e) for e in SELECTABLE]
_TOL = 1e-4


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / (x.square().mean(-1, keepdim=True).sqrt() + 1e-9)


def estimates(model: LoadedEstimator, examples) -> list[Chain]:
    """The network's estimate of each example's wet file (probabilities and parameters)."""
    return [model.estimate(ex.wet, realbench.SAMPLE_RATE) for ex in examples]


def _ratios(ex, chains: Chain) -> np.ndarray:
    """Level-matched MRSTFT of each chain rendered on ``ex``'s dry signal, over that of the level
    alone (float64, as the benchmark scores: in float32 scaling alone moves a quiet example's ratio)."""
    x, y = (torch.from_numpy(np.asarray(a, np.float64)) for a in (ex.dry, ex.wet))
    est = render(x, realbench.SAMPLE_RATE, chains.to(torch.float64))
    d = mrstft(_unit(est), _unit(y).expand_as(est))
    d0 = mrstft(_unit(x)[None], _unit(y)[None])
    return (d / d0).numpy()


def choose_strength(chains: list[Chain], examples) -> tuple[dict, dict]:
    """Per effect, the grid's strength that brings the most examples where it is heard closer to
    the wet file, less ``WORSE_WEIGHT`` times those it takes farther (the effect alone; ties: the
    lowest median ratio, then the larger strength)."""
    strength, stats = {}, {}
    for i, name in enumerate(SELECTABLE):
        bits = torch.zeros(1, len(SELECTABLE))
        bits[0, i] = 1.0
        rows = []
        for chain, ex in zip(chains, examples):
            if float(chain.active[0, _COLS[i]]) < 0.5:
                continue
            hard = chain.hard()
            one = Chain(with_subset(hard.active, bits), hard.unit, hard.mode_weights)
            every = [with_strength(one, {name: s}) for s in STRENGTHS]
            rows.append(
                _ratios(
                    ex,
                    Chain(
                        torch.cat([c.active for c in every]),
                        torch.cat([c.unit for c in every]),
                        torch.cat([c.mode_weights for c in every]),
                    ),
                )
            )
        if not rows:
            strength[name] = 1.0
            continue
        r = np.array(rows)
        score = (r < 1 - _TOL).mean(0) - WORSE_WEIGHT * (r > 1 + _TOL).mean(0)
        median = np.median(r, 0)
        best = max(range(len(STRENGTHS)), key=lambda j: (round(float(score[j]), 9), -float(median[j]), STRENGTHS[j]))
        strength[name] = STRENGTHS[best]
        stats[name] = {"n": len(rows), "score": {str(s): round(float(v), 3) for s, v in zip(STRENGTHS, score)}}
    return strength, stats


def subset_ratios(
    model: LoadedEstimator, examples, strength: dict | None = None, chains: list[Chain] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities ``(n, 4)``, level-matched MRSTFT ratio of each of the 16 combinations of the
    network's estimate (at ``strength``) to doing nothing ``(n, 16)``) on the examples."""
    chains = chains if chains is not None else estimates(model, examples)
    probs, ratios = [], []
    for chain, ex in zip(chains, examples):
        hard = with_strength(chain.hard(), strength or {})
        every = Chain(
            with_subset(hard.active.expand(16, -1), SUBSETS), hard.unit.expand(16, -1), hard.mode_weights.expand(16, -1)
        )
        r = _ratios(ex, every)
        ratios.append(r / r[0])  # subset 0: nothing on = the level alone
        probs.append(chain.active[0, _COLS].numpy())
    return np.array(probs), np.array(ratios)


def worse_bound(n_worse: int, n: int, confidence: float = CONFIDENCE) -> float:
    """The one-sided Clopper–Pearson upper bound on the share of examples made worse, from
    ``n_worse`` of ``n`` tuning examples (1 when all of them, or there are none)."""
    if n_worse >= n:
        return 1.0
    return float(scipy.stats.beta.ppf(confidence, n_worse + 1, n - n_worse))


def subset_index(on: np.ndarray) -> np.ndarray:
    """The :data:`~pimodule.laptop.fx.refine.SUBSETS` row of each on/off combination ``(n, 4)``."""
    return (np.asarray(on, bool) * 2 ** np.arange(len(SELECTABLE))[::-1]).sum(-1)


def detection_auc(probs: np.ndarray, audible: np.ndarray) -> dict:
    """Per effect, the chance that an example where it is heard gets a higher probability than one
    where it is not (ROC AUC, ties half; None when the examples hold only one kind): how well the
    network detects, whatever the thresholds."""
    out = {}
    for i, name in enumerate(SELECTABLE):
        on, off = probs[audible[:, i], i], probs[~audible[:, i], i]
        if not len(on) or not len(off):
            out[name] = None
            continue
        u = scipy.stats.mannwhitneyu(on, off).statistic
        out[name] = round(float(u) / (len(on) * len(off)), 3)
    return out


def perfect_detector(ratios: np.ndarray, audible: np.ndarray) -> dict:
    """What the network's parameters do when exactly the audible effects are kept (a detector no
    keep rule can beat): shares closer and farther than doing nothing, and the median ratio."""
    r = ratios[np.arange(len(ratios)), subset_index(audible)]
    return {
        "closer": float(np.mean(r < 1 - _TOL)),
        "farther": float(np.mean(r > 1 + _TOL)),
        "median_ratio": float(np.median(r)),
    }


def choose_thresholds(
    probs: np.ndarray, ratios: np.ndarray, target: float = 0.95, confidence: float = CONFIDENCE
) -> tuple[dict, dict]:
    """The grid's thresholds that keep "not worse" on at least ``target`` of the examples with
    ``confidence`` (:func:`worse_bound`) and make the most of them closer (ties: the fewest worse,
    then the highest thresholds). Keeping nothing always qualifies."""
    n = len(probs)
    best, best_key, best_stats = None, None, None
    for t in itertools.product(GRID, repeat=len(SELECTABLE)):
        idx = subset_index(probs >= np.array(t))
        r = ratios[np.arange(len(idx)), idx]
        n_worse, better = int(np.sum(r > 1 + 1e-4)), float(np.mean(r < 1 - 1e-4))
        bound = worse_bound(n_worse, n, confidence)
        if n_worse and bound > 1 - target:  # none made worse: as good as the tuning set can show
            continue
        key = (better, -n_worse, sum(t))
        if best_key is None or key > best_key:
            best, best_key = t, key
            best_stats = {
                "better": better,
                "worse": n_worse / n,
                "worse_bound": round(bound, 4),
                "median_ratio": float(np.median(r)),
            }
    return dict(zip(SELECTABLE, best)), best_stats


def write_keep(path: Path, keep: dict, strength: dict | None = None) -> None:
    """``keep`` (and ``strength``) into an exported file's metadata (in place) or a run folder's
    keep.json (strength.json)."""
    path = Path(path)
    entries = {KEY_KEEP: keep, **({KEY_STRENGTH: strength} if strength is not None else {})}
    if path.suffix != ".onnx":
        (path / KEEP_FILE).write_text(json.dumps(keep, indent=1) + "\n")
        if strength is not None:
            (path / STRENGTH_FILE).write_text(json.dumps(strength, indent=1) + "\n")
        return
    import onnx

    proto = onnx.load(str(path))
    props = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(props)
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save_model(proto, str(path), save_as_external_data=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pimodule.laptop.fx.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="a blind estimator: exported .onnx (written in place) or run folder")
    parser.add_argument("--n", type=int, default=160, help="tuning examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--target", type=float, default=0.95, help="share of examples not made worse (with 95 %% confidence)"
    )
    parser.add_argument("--dry-run", action="store_true", dest="dry_run", help="print, do not write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    model = LoadedEstimator(args.model)
    if model.conditioning != "blind":
        print(f"{args.model}: a {model.conditioning}-conditioned model checks its estimates against the audio")
        return 2
    examples = realbench.build_tuning(seed=args.seed, n=args.n)
    chains = estimates(model, examples)
    strength, strength_stats = choose_strength(chains, examples)
    probs, ratios = subset_ratios(model, examples, strength, chains)
    keep, stats = choose_thresholds(probs, ratios, args.target)
    audible = np.array([[ex.audible[e] for e in SELECTABLE] for ex in examples])
    report = {
        "keep": keep,
        "strength": strength,
        "tuning": stats,
        "strength_scores": strength_stats,
        # how far any keep rule could take this network: for whoever trains the next one
        "detection_auc": detection_auc(probs, audible),
        "perfect_detector": perfect_detector(ratios, audible),
    }
    print(json.dumps({**report, "n": len(examples)}, indent=1))
    if not args.dry_run:
        write_keep(args.model, keep, strength)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
