"""Decision thresholds for chain selection, fitted after training and baked into the model.

The selection head is trained with 0.5 as each effect's on/off threshold, but its errors are not
symmetric (a compressor before clipping is missed more often than it is imagined, a mild clipper
is imagined more often than missed), so the threshold that gets the most chains entirely right is
not 0.5. :func:`fit_thresholds` finds one per effect on examples drawn from the *training* split's
sources (the held-out sources stay for ``pimodule eval fx``), and :func:`apply_thresholds` moves
the head's bias by ``-logit(threshold)`` so that ``p >= 0.5`` of the exported model means
``p >= threshold`` of the trained one: the model file, the daemon and ``pimodule estimate`` keep
their 0.5 rule.
"""

from __future__ import annotations

import argparse
import logging
import math

import numpy as np
import torch

from pimodule.core.fx_specs import EFFECT_NAMES, SELECTABLE

log = logging.getLogger(__name__)

GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)  # candidate thresholds
SWEEPS = 3  # coordinate-ascent passes over the effects
_COLS = [EFFECT_NAMES.index(n) for n in SELECTABLE]


def add_args(parser: argparse.ArgumentParser) -> None:
    """``pimodule export``'s options for fitting the thresholds of an fx run."""
    parser.add_argument("--calibrate", type=int, default=0, metavar="N",
                        help="fx runs: fit the selection thresholds on N training-source chains "
                             "and bake them into the file (0: keep 0.5)")
    parser.add_argument("--calibrate-seed", type=int, default=7, dest="calibrate_seed")


def chain_accuracy(prob: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> float:
    """Share of examples whose selectable on/off decisions (``prob[:, SELECTABLE] >= thresholds``)
    all match ``labels``; ``prob`` and ``labels`` are ``(n, N_EFFECTS)``."""
    p, y = prob[:, _COLS], labels[:, _COLS] >= 0.5
    return float(((p >= thresholds) == y).all(-1).mean())


def fit_thresholds(prob: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per selectable effect, the threshold from :data:`GRID` that maximizes chain accuracy, by
    coordinate ascent from 0.5 (a tie keeps the threshold nearer 0.5)."""
    if prob.shape != labels.shape or prob.ndim != 2 or prob.shape[0] == 0:
        raise ValueError("prob and labels must be equal, non-empty (n, N_EFFECTS) arrays")
    thresholds = np.full(len(SELECTABLE), 0.5)
    order = np.argsort(np.abs(GRID - 0.5), kind="stable")  # 0.5 first, then outwards
    for _ in range(SWEEPS):
        changed = False
        for k in range(len(SELECTABLE)):
            best, best_t = -1.0, thresholds[k]
            for t in GRID[order]:
                trial = thresholds.copy()
                trial[k] = t
                acc = chain_accuracy(prob, labels, trial)
                if acc > best + 1e-12:
                    best, best_t = acc, t
            changed |= best_t != thresholds[k]
            thresholds[k] = best_t
        if not changed:
            break
    return thresholds


def apply_thresholds(model, thresholds: np.ndarray) -> None:
    """Shift ``model``'s selection head so that its probability crosses 0.5 where the unshifted one
    crosses each effect's threshold (in place)."""
    bias = model.active_head.bias
    with torch.no_grad():
        for col, t in zip(_COLS, thresholds):
            if not 0.0 < t < 1.0:
                raise ValueError(f"threshold {t} is not inside (0, 1)")
            bias[col] -= math.log(t / (1.0 - t))


def calibrate(model, config, n_examples: int, seed: int) -> dict:
    """Fit thresholds for the torch ``model`` of a run with ``config`` on ``n_examples`` chains
    from the training split (drawn as the evaluation draws them, labelled as the run was trained)
    and apply them. Returns what was found, for the model's provenance."""
    from pimodule.laptop.fx.evaluate import make_cases, predict
    from pimodule.laptop.fx.infer import WINDOW_S
    from pimodule.laptop.fx.model import analysis_samples
    from pimodule.laptop.fx.sources import DryCorpus

    corpus = DryCorpus.load(config.model.sample_rate, "train", config.kinds,
                            max_files=config.max_files or None,
                            instruments=config.instruments)
    batch = make_cases(corpus, n_examples, analysis_samples(config.model, WINDOW_S), seed, ["chain"])["chain"]
    model.eval()
    prob = predict(model, batch).active.numpy()
    labels = (batch.removal if config.labels == "removal" else batch.chain.active).numpy()
    thresholds = fit_thresholds(prob, labels)
    before = chain_accuracy(prob, labels, np.full(len(SELECTABLE), 0.5))
    after = chain_accuracy(prob, labels, thresholds)
    apply_thresholds(model, thresholds)
    log.info("selection thresholds %s: %.3f -> %.3f on %d training-source chains",
             dict(zip(SELECTABLE, thresholds.tolist())), before, after, n_examples)
    return {"thresholds": dict(zip(SELECTABLE, [float(t) for t in thresholds])),
            "n_examples": n_examples, "seed": seed, "labels": config.labels,
            "selection_before": round(before, 4), "selection_after": round(after, 4)}
