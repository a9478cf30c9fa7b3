"""The effects' neutral points and ``toward_neutral``: tied to the spec tables, bounded, exact at the ends."""

from __future__ import annotations

import numpy as np
import pytest

from pimodule.core.fx_specs import NEUTRAL, SELECTABLE, SPECS, toward_neutral


def test_every_neutral_point_is_a_parameter_in_its_range():
    assert set(NEUTRAL) == set(SELECTABLE)
    for effect, table in NEUTRAL.items():
        for name, value in table.items():
            spec = SPECS[effect][name]  # KeyError if the name drifted from the table
            assert spec.min <= value <= spec.max


@pytest.mark.parametrize("effect", SELECTABLE)
def test_strength_one_keeps_zero_neutralises_and_between_stays_in_range(effect):
    rng = np.random.default_rng(0)
    for _ in range(20):
        params = {s.name: float(s.from_unit(rng.uniform())) for s in SPECS[effect]}
        assert toward_neutral(effect, params, 1.0) == pytest.approx(params)
        zero = toward_neutral(effect, params, 0.0)
        for name in SPECS[effect].names:
            want = NEUTRAL[effect].get(name, params[name])
            assert zero[name] == pytest.approx(want, abs=1e-9)
        half = toward_neutral(effect, params, 0.5)
        for spec in SPECS[effect]:
            assert spec.min - 1e-9 <= half[spec.name] <= spec.max + 1e-9
            lo, hi = sorted((params[spec.name], zero[spec.name]))
            assert lo - 1e-9 <= half[spec.name] <= hi + 1e-9  # between the estimate and nothing


def test_a_ratio_moves_along_its_log_scale_and_a_bad_strength_is_refused():
    out = toward_neutral("compressor", {"ratio": 4.0, "threshold_db": -30.0, "attack_ms": 5.0}, 0.5)
    assert out["ratio"] == pytest.approx(2.0) and out["threshold_db"] == pytest.approx(-15.0)
    assert out["attack_ms"] == 5.0  # not an amount
    with pytest.raises(ValueError, match="strength"):
        toward_neutral("eq", {}, 1.5)
