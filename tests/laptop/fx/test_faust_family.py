"""The Faust family (training's second third-party implementation): Faust's own effects really run,
level changes land where the chain puts them, each effect does what its kind does, and the
benchmark never draws from it."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from pimodule.laptop.fx import faust_family, realbench, thirdparty
from pimodule.laptop.fx.run import TrainConfig

pytest.importorskip("dawdreamer")

SR = 16000


def _sine(f_hz: float = 220.0, seconds: float = 1.0, level: float = 0.3) -> np.ndarray:
    return level * np.sin(2 * np.pi * f_hz * np.arange(int(seconds * SR)) / SR)


def _render(stages, x):
    return thirdparty.render(x, SR, thirdparty.ForeignChain("faust", stages))


def _harmonic(y: np.ndarray, f_hz: float) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(spec[int(round(f_hz * len(y) / SR))])


def test_an_empty_chain_and_level_changes_are_exact():
    x = _sine()
    np.testing.assert_allclose(_render([], x), x, atol=1e-6)
    np.testing.assert_allclose(
        _render([("gain", {"gain_db": -6.0}), ("gain", {"gain_db": -3.0})], x), x * 10 ** (-9 / 20), atol=1e-6
    )


def test_level_changes_stay_where_they_are_when_an_effect_is_taken_out():
    x = _sine()
    rng = np.random.default_rng(0)
    drive = faust_family.draw("distortion", rng, SR / 2)
    chain = thirdparty.ForeignChain(
        "faust", [("gain", {"gain_db": -6.0}), ("distortion", drive), ("gain", {"gain_db": 4.0})]
    )
    np.testing.assert_allclose(thirdparty.render(x, SR, chain.without("distortion")), x * 10 ** (-2 / 20), atol=1e-6)
    # a level change before a nonlinear stage is not one after it
    before = _render([("gain", {"gain_db": 12.0}), ("distortion", drive)], x)
    after = _render([("distortion", drive), ("gain", {"gain_db": 12.0})], x)
    assert np.abs(before - after).max() > 0.1


def test_the_eq_is_linear_so_level_changes_pass_through_it():
    x = np.random.default_rng(1).standard_normal(SR) * 0.1
    eq = faust_family.draw("eq", np.random.default_rng(2), SR / 2)
    plain = _render([("eq", eq)], x)
    around = _render([("gain", {"gain_db": -10.0}), ("eq", eq), ("gain", {"gain_db": 10.0})], x)
    assert np.abs(plain - x).max() > 1e-2
    np.testing.assert_allclose(around, plain, atol=1e-5)


@pytest.mark.parametrize("jpverb", [False, True])
def test_each_reverb_leaves_a_tail(jpverb):
    rng = np.random.default_rng(3)
    while True:  # draw until the kind asked for comes up
        p = faust_family.draw("reverb", rng, SR / 2)
        if p["r_jp"] == float(jpverb):
            break
    x = np.zeros(SR)
    x[:400] = _sine(seconds=0.025)
    y = _render([("reverb", p)], x)
    assert np.all(np.isfinite(y)) and np.sqrt(np.mean(y[SR // 4 : SR // 2] ** 2)) > 1e-4


def test_the_compressor_squeezes_loud_parts_more_than_quiet_ones():
    x = np.concatenate([_sine(level=0.9, seconds=0.5), _sine(level=0.02, seconds=0.5)])
    p = {"c_ratio": 8.0, "c_thr_db": -30.0, "c_att_s": 0.002, "c_rel_s": 0.05, "c_makeup_db": 0.0}
    y = _render([("compressor", p)], x)
    loud, quiet = (np.sqrt(np.mean(v[SR // 4 :] ** 2)) for v in (y[: SR // 2], y[SR // 2 :]))
    assert 20 * np.log10(loud / quiet) < 20 * np.log10(0.9 / 0.02) - 10


def test_an_offset_clipper_makes_even_harmonics():
    x = _sine(f_hz=250.0)
    even = [_harmonic(_render([("distortion", {"d_drive": 0.6, "d_offset": off})], x), 500.0) for off in (0.0, 0.3)]
    assert even[1] > 30 * max(even[0], 1e-9)
    assert (
        _harmonic(_render([("distortion", {"d_drive": 0.6, "d_offset": 0.0})], x), 750.0) > 1.0
    )  # odd ones either way


def test_faust_trains_but_is_not_in_the_benchmark():
    TrainConfig(foreign=("pedalboard", "faust"), foreign_share=0.5)
    assert "faust" not in thirdparty.BENCHMARK and "faust" not in thirdparty.HELD_OUT
    for build in (realbench.build, realbench.build_style):
        assert inspect.signature(build).parameters["families"].default == thirdparty.BENCHMARK
    assert realbench.TUNING_FAMILIES == ("pedalboard",)  # what the shipped thresholds were tuned on
    with pytest.raises(ValueError, match="Faust chain"):
        faust_family.render(np.zeros(10), SR, [("chorus", {})])
