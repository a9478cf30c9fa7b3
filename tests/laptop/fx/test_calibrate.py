"""Selection thresholds: fitted to get the most chains right, baked into the head's bias."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pimodule.laptop.fx.calibrate import apply_thresholds, calibrate, chain_accuracy, fit_thresholds
from pimodule.laptop.fx.chain import N_EFFECTS
from pimodule.laptop.fx.run import load_run
from pimodule.core.fx_specs import EFFECT_NAMES, SELECTABLE

COLS = [EFFECT_NAMES.index(n) for n in SELECTABLE]


def _scores(n: int = 400, seed: int = 0):
    """Labels and probabilities whose best thresholds are known: the compressor's scores are
    shifted down (on-compressors score 0.3-0.5, off ones below 0.25), the others are separable
    at 0.5."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, N_EFFECTS)) < 0.5).astype(np.float32)
    prob = np.where(labels > 0, rng.uniform(0.6, 1.0, labels.shape), rng.uniform(0.0, 0.4, labels.shape))
    comp = EFFECT_NAMES.index("compressor")
    prob[:, comp] = np.where(labels[:, comp] > 0, rng.uniform(0.3, 0.5, n), rng.uniform(0.0, 0.25, n))
    return prob.astype(np.float32), labels


def test_fit_finds_the_threshold_that_separates_each_effect():
    prob, labels = _scores()
    assert chain_accuracy(prob, labels, np.full(4, 0.5)) < 0.7
    t = fit_thresholds(prob, labels)
    assert chain_accuracy(prob, labels, t) == 1.0
    assert 0.25 < t[SELECTABLE.index("compressor")] <= 0.3
    others = [k for k, n in enumerate(SELECTABLE) if n != "compressor"]
    assert np.all(t[others] == 0.5)  # already right: ties keep 0.5


def test_fit_never_scores_below_the_plain_half():
    rng = np.random.default_rng(3)
    prob = rng.random((200, N_EFFECTS)).astype(np.float32)
    labels = (rng.random((200, N_EFFECTS)) < 0.4).astype(np.float32)
    t = fit_thresholds(prob, labels)
    assert chain_accuracy(prob, labels, t) >= chain_accuracy(prob, labels, np.full(4, 0.5))


def test_fit_refuses_mismatched_or_empty_input():
    with pytest.raises(ValueError):
        fit_thresholds(np.zeros((3, N_EFFECTS)), np.zeros((4, N_EFFECTS)))
    with pytest.raises(ValueError):
        fit_thresholds(np.zeros((0, N_EFFECTS)), np.zeros((0, N_EFFECTS)))


def test_shifted_head_decides_at_half_what_the_model_decided_at_each_threshold(tiny_paired_run):
    model, _, _ = load_run(tiny_paired_run)
    wet, dry = torch.randn(8, 8000, generator=torch.Generator().manual_seed(1)).mul(0.1).split(4)
    with torch.no_grad():
        before = model(wet, dry)[0].active.numpy()
    t = np.array([0.3, 0.65, 0.9, 0.5])
    apply_thresholds(model, t)
    with torch.no_grad():
        after = model(wet, dry)[0].active.numpy()
    np.testing.assert_array_equal(after[:, COLS] >= 0.5, before[:, COLS] >= t)
    np.testing.assert_allclose(after[:, COLS][:, 3], before[:, COLS][:, 3], atol=1e-6)  # 0.5: unchanged
    gain = EFFECT_NAMES.index("gain")
    np.testing.assert_allclose(after[:, gain], before[:, gain], atol=1e-6)
    with pytest.raises(ValueError, match="inside"):
        apply_thresholds(model, np.array([0.0, 0.5, 0.5, 0.5]))


def test_calibrate_reports_training_source_scores_and_keeps_the_best(tiny_paired_run):
    model, config, _ = load_run(tiny_paired_run)
    found = calibrate(model, config, 24, seed=5)
    assert set(found["thresholds"]) == set(SELECTABLE)
    assert found["selection_after"] >= found["selection_before"]
    assert found["labels"] == "stage" and found["n_examples"] == 24
