"""Calibrate what a blind estimate keeps: per effect, the probability from which it stays on.

A blind estimator cannot check its estimate against the dry signal, so it keeps only the effects it
is sure enough of. The thresholds are chosen on tuning examples made as the real-recording benchmark
makes its examples, but from the *training* recordings and the families training sees
(:func:`pimodule.laptop.fx.realbench.build_tuning`; SoX and dasp-pytorch never): every on/off
combination of the network's estimate is rendered on the dry signal, and of the thresholds on a
grid the ones that leave the estimate farther from the wet file than doing nothing (level-matched
MRSTFT) on at most ``1 - target`` of the examples and closer on as many as possible are written
into the model file's metadata (``pimodule.fx.keep``), where ``pimodule estimate`` and fx mode
read them (:func:`pimodule.device.fx.estimator.keep_confident`).

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
import torch

from pimodule.core.fx_specs import EFFECT_NAMES, SELECTABLE
from pimodule.device.fx.estimator import KEY_KEEP
from pimodule.laptop.fx import realbench
from pimodule.laptop.fx.chain import Chain
from pimodule.laptop.fx.infer import KEEP_FILE, LoadedEstimator
from pimodule.laptop.fx.losses import mrstft
from pimodule.laptop.fx.refine import SUBSETS, render, with_subset

log = logging.getLogger(__name__)
GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.01)  # 1.01: never kept
_COLS = [EFFECT_NAMES.index(e) for e in SELECTABLE]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / (x.square().mean(-1, keepdim=True).sqrt() + 1e-9)


def subset_ratios(model: LoadedEstimator, examples) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities ``(n, 4)``, level-matched MRSTFT ratio of each of the 16 combinations of the
    network's estimate to doing nothing ``(n, 16)``) on the examples."""
    probs, ratios = [], []
    for ex in examples:
        chain = model.estimate(ex.wet, realbench.SAMPLE_RATE)
        hard = chain.hard()
        every = Chain(
            with_subset(hard.active.expand(16, -1), SUBSETS), hard.unit.expand(16, -1), hard.mode_weights.expand(16, -1)
        )
        x, y = torch.from_numpy(ex.dry).float(), torch.from_numpy(ex.wet).float()
        est = render(x, realbench.SAMPLE_RATE, every)
        d = mrstft(_unit(est), _unit(y).expand_as(est))
        ratios.append((d / d[0]).numpy())  # subset 0: nothing on = the level alone
        probs.append(chain.active[0, _COLS].numpy())
    return np.array(probs), np.array(ratios)


def choose_thresholds(probs: np.ndarray, ratios: np.ndarray, target: float = 0.95) -> tuple[dict, dict]:
    """The grid's thresholds that keep "not worse" on at least ``target`` of the examples and make
    the most of them closer (ties: the fewest worse, then the highest thresholds)."""
    weights = 2 ** np.arange(len(SELECTABLE))[::-1]  # SUBSETS index of a combination of bits
    best, best_key, best_stats = None, None, None
    for t in itertools.product(GRID, repeat=len(SELECTABLE)):
        kept = probs >= np.array(t)
        idx = (kept * weights).sum(1)
        r = ratios[np.arange(len(idx)), idx]
        worse, better = float(np.mean(r > 1 + 1e-4)), float(np.mean(r < 1 - 1e-4))
        if worse > 1 - target:
            continue
        key = (better, -worse, sum(t))
        if best_key is None or key > best_key:
            best, best_key = t, key
            best_stats = {"better": better, "worse": worse, "median_ratio": float(np.median(r))}
    return dict(zip(SELECTABLE, best)), best_stats


def write_keep(path: Path, keep: dict) -> None:
    """``keep`` into an exported file's metadata (in place) or a run folder's keep.json."""
    path = Path(path)
    if path.suffix != ".onnx":
        (path / KEEP_FILE).write_text(json.dumps(keep, indent=1) + "\n")
        return
    import onnx

    proto = onnx.load(str(path))
    props = [p for p in proto.metadata_props if p.key != KEY_KEEP]
    del proto.metadata_props[:]
    proto.metadata_props.extend(props)
    proto.metadata_props.add(key=KEY_KEEP, value=json.dumps(keep))
    onnx.save_model(proto, str(path), save_as_external_data=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pimodule.laptop.fx.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="a blind estimator: exported .onnx (written in place) or run folder")
    parser.add_argument("--n", type=int, default=160, help="tuning examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.95, help="share of tuning examples not made worse")
    parser.add_argument("--dry-run", action="store_true", dest="dry_run", help="print, do not write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    model = LoadedEstimator(args.model)
    if model.conditioning != "blind":
        print(f"{args.model}: a {model.conditioning}-conditioned model checks its estimates against the audio")
        return 2
    examples = realbench.build_tuning(seed=args.seed, n=args.n)
    probs, ratios = subset_ratios(model, examples)
    keep, stats = choose_thresholds(probs, ratios, args.target)
    print(json.dumps({"keep": keep, "tuning": stats, "n": len(examples)}, indent=1))
    if not args.dry_run:
        write_keep(args.model, keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
