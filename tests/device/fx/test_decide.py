"""The decision rules the module's check, refine and the reference match share."""

import math

import pytest

from pimodule.core.fx_specs import LABEL_DB, SELECTABLE
from pimodule.device.fx.decide import (
    EFFECT_PENALTY,
    PRUNE_DB,
    confidence,
    effect_costs,
    heard,
    label,
    margin,
    simplest_closest,
)


def test_confidence_words():
    assert confidence(True, 6.0, 0.5, 0.9, True) == "on, sure"
    assert confidence(True, 6.0, 0.01, 0.9, True) == "on, probably"  # barely helps
    assert confidence(True, 1.8, 0.5, 0.9, True) == "on, probably"  # barely heard
    assert confidence(False, 0.0, 0.0, 0.05, False) == "off, sure"
    assert confidence(False, 0.0, 0.0, 0.7, True) == "off, probably"


def test_simplest_closest_drops_what_does_not_earn_its_place():
    d = {(): (1.0, 10.0), ("eq",): (0.5, 5.0), ("eq", "reverb"): (0.49, 4.9), ("reverb",): (0.9, 9.0)}
    chosen, seen = simplest_closest(("eq", "reverb"), lambda s: d[s])
    assert chosen == ("eq",)  # the reverb brings 0.02, less than it costs
    chosen, _ = simplest_closest(("eq", "reverb"), lambda s: d[s], {"eq": 0.04, "reverb": -0.05})
    assert chosen == ("eq", "reverb")  # ... unless the network is sure of it
    worse = {(): (1.0, 10.0), ("eq",): (0.5, 11.0)}
    assert simplest_closest(("eq",), lambda s: worse[s])[0] == ()  # farther on the log-mel: out


def test_prune_thresholds_only_lower_the_label_one():
    assert set(PRUNE_DB) <= set(SELECTABLE) and all(0 < v < LABEL_DB for v in PRUNE_DB.values())
    with pytest.raises(TypeError):
        PRUNE_DB["eq"] = 0.1  # a table, not a setting
    assert heard("reverb", 1.0) and not heard("eq", 1.0) and heard("eq", LABEL_DB)


def test_costs_follow_the_networks_belief():
    costs = effect_costs({"eq": 0.5, "reverb": 0.99, "compressor": 0.01, "distortion": 1.0})
    assert costs["eq"] == pytest.approx(EFFECT_PENALTY)  # even odds: the plain cost
    assert costs["reverb"] < costs["eq"] < costs["compressor"]  # sure: cheaper; unbelieved: dearer
    assert all(math.isfinite(v) for v in costs.values())  # a probability of 1 is clipped


def test_margins_and_labels():
    dist = {(): (1.0, 10.0), ("eq",): (0.5, 5.0), ("eq", "reverb"): (0.4, 4.0)}
    assert margin(dist, ("eq", "reverb"), "reverb") == pytest.approx(0.2)  # 1.0 -> 0.8 normalised
    assert margin(dist, ("eq", "reverb"), "eq") == math.inf  # the chain without it never measured
    assert label((), ("eq",)) == "level only"
    assert label(("eq",), ("eq",)) == "chain"
    assert label(("eq",), ("eq", "reverb")) == "without reverb"
