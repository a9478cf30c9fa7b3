"""What a blind estimate keeps (pimodule.laptop.fx.calibrate): the confidence bound, the thresholds'
choice, and the report on how far any keep rule could take the network."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from pimodule.core.fx_specs import SELECTABLE
from pimodule.laptop.fx.calibrate import (
    GRID,
    choose_thresholds,
    detection_auc,
    perfect_detector,
    subset_index,
    worse_bound,
)
from pimodule.laptop.fx.refine import SUBSETS


def test_subset_index_names_the_refine_subsets_row():
    for row, bits in enumerate(SUBSETS.numpy()):
        assert subset_index(bits[None] > 0.5)[0] == row


@pytest.mark.parametrize("n", [20, 160])
def test_worse_bound_is_the_clopper_pearson_upper_bound(n):
    bounds = [worse_bound(k, n) for k in range(n + 1)]
    assert all(a < b for a, b in zip(bounds, bounds[1:-1]))  # more made worse: a higher bound
    assert bounds[0] == pytest.approx(1 - 0.05 ** (1 / n))  # none of n: the closed form
    assert bounds[3] > 3 / n  # above the point estimate
    assert bounds[n] == 1.0 and worse_bound(0, 0) == 1.0
    assert bounds[5] == pytest.approx(scipy.stats.binomtest(5, n).proportion_ci(0.90, "exact").high)


def _ratios(n: int, effect_helps: np.ndarray, effect: int) -> np.ndarray:
    """(n, 16): 1 for doing nothing; combinations holding ``effect`` 0.8 where it helps, 1.2 where
    not; the others 1."""
    r = np.ones((n, 16))
    holds = SUBSETS.numpy()[:, effect] > 0.5
    r[:, holds] = np.where(effect_helps[:, None], 0.8, 1.2)
    return r


def test_thresholds_keep_what_helps_and_stay_within_the_bound():
    rng = np.random.default_rng(0)
    n, dist = 200, SELECTABLE.index("distortion")
    probs = rng.uniform(0, 1, (n, 4))
    helps = probs[:, dist] > 0.75  # the network is right from 0.75 on, wrong below
    keep, stats = choose_thresholds(probs, _ratios(n, helps, dist), target=0.95)
    assert keep["distortion"] in GRID and 0.75 <= keep["distortion"] <= 0.85
    assert stats["worse"] <= 0.05 and stats["worse_bound"] <= 0.05 and stats["better"] > 0.1
    # where nothing helps, keeping nothing (1.01: never) is all that qualifies
    keep, stats = choose_thresholds(probs, _ratios(n, np.zeros(n, bool), dist), target=0.95)
    assert keep["distortion"] == GRID[-1] and stats["better"] == 0.0 and stats["worse"] == 0.0


def test_detection_auc_and_the_perfect_detector():
    rng = np.random.default_rng(1)
    n = 100
    audible = rng.uniform(0, 1, (n, 4)) < 0.5
    probs = np.where(audible, 0.9, 0.1)
    probs[:, 1] = 1 - probs[:, 1]  # the compressor's probabilities the wrong way round
    probs[:, 2] = 0.5  # the distortion's say nothing
    audible[:, 3] = False  # no audible reverb among the examples
    auc = detection_auc(probs, audible)
    assert auc == {"eq": 1.0, "compressor": 0.0, "distortion": 0.5, "reverb": None}
    # the ratio of the combination that is exactly the audible effects is the one it reads
    ratios = np.ones((n, 16))
    ratios[np.arange(n), subset_index(audible)] = np.where(audible.any(1), 0.7, 1.0)
    ratios[:, 15] = 1.3  # everything on: farther
    out = perfect_detector(ratios, audible)
    assert out["closer"] == pytest.approx(np.mean(audible.any(1))) and out["farther"] == 0.0
    assert out["median_ratio"] == pytest.approx(np.median(np.where(audible.any(1), 0.7, 1.0)))
