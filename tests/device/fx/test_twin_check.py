"""The module's check of an estimate (pimodule.device.fx.check): the same decisions as the torch
refinement without fitting, a missed effect found and an imagined one dropped, numpy log-mel equal
to the torch one, bad input refused, no torch on the device."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from pimodule.core.fx_specs import DISTORTION_MODES, EFFECT_NAMES, LABEL_DB, SELECTABLE, SPECS
from pimodule.core.melscale import log_mel_db, mel_distance_db
from pimodule.device.fx.check import PRIOR, SEARCHED, SUBSETS, CheckConfig, SubsetCheck, subset_log_likelihood
from pimodule.laptop.fx.batch import render_stages
from pimodule.laptop.fx.chain import N_MODES, PARAM_SLICES, Chain, sample_chain
from pimodule.laptop.fx.losses import log_mel_db as torch_log_mel_db
from pimodule.laptop.fx.refine import RefineConfig, refine


def _dry(sample_rate: int, seconds: float = 0.6, batch: int = 1, seed: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    env = torch.exp(-6 * (t % 0.25))
    tone = sum(torch.sin(2 * torch.pi * f * k * t) / k for f in (220.0, 330.0) for k in (1, 2, 3))
    x = 0.25 * env * tone + 0.01 * torch.randn(t.shape, generator=gen)
    return x.expand(batch, -1).clone()


def _describe(chain: Chain, i: int) -> dict:
    """Example ``i`` as the estimator describes an estimate (physical units)."""
    out = {}
    for k, name in enumerate(EFFECT_NAMES):
        unit = chain.unit[i, PARAM_SLICES[name]].numpy()
        p = float(chain.active[i, k])
        out[name] = {
            "active": p >= 0.5,
            "probability": p,
            "params": {s.name: float(s.from_unit(float(u))) for s, u in zip(SPECS[name], unit)},
        }
    out["distortion"]["mode"] = DISTORTION_MODES[int(chain.mode_weights[i].argmax())]
    return out


@pytest.mark.parametrize("sample_rate", [16000, 22050])
def test_numpy_log_mel_is_the_torch_one(sample_rate):
    x = _dry(sample_rate, batch=2).numpy()
    y = np.tanh(4 * x)
    np.testing.assert_allclose(
        log_mel_db(x, sample_rate), torch_log_mel_db(torch.from_numpy(x), sample_rate).numpy(), atol=1e-3
    )
    assert mel_distance_db(x, x, sample_rate).max() == 0 and mel_distance_db(x, y, sample_rate).min() > 1.0


def test_subset_log_likelihood_is_exact():
    p = np.array([0.9, 0.2, 0.5, 0.7])
    ll = subset_log_likelihood(p)
    for s, bits in enumerate(SUBSETS):
        assert ll[s] == pytest.approx(np.sum(np.log(np.where(bits, p, 1 - p))))


@pytest.mark.parametrize("sample_rate", [16000, 22050])
def test_decisions_equal_the_torch_refinement_without_fitting(sample_rate):
    n = 12
    gen = torch.Generator().manual_seed(sample_rate)
    truth = sample_chain(n, gen).hard()
    x = _dry(sample_rate, batch=n)
    y, _ = render_stages(x, sample_rate, truth)
    # a network's guess: the true parameters nudged, probabilities that are sometimes wrong
    unit = (truth.unit + 0.08 * torch.randn(truth.unit.shape, generator=gen)).clamp(0, 1)
    prob = (0.6 * truth.active + 0.4 * torch.rand(truth.active.shape, generator=gen)).clamp(0, 1)
    guess = Chain(prob, unit, truth.mode_weights)
    # no fitting and no polish (the laptop's searches after the fit): the decisions alone
    config = RefineConfig(steps=0, n_candidates=1, full_chain=False, search_prior=PRIOR, search_first=False, polish=())
    torch_chain, _ = refine(x, y, sample_rate, guess, config)
    check = SubsetCheck(sample_rate, CheckConfig(n_candidates=0))
    cols = [EFFECT_NAMES.index(e) for e in SELECTABLE]
    differ = 0
    for i in range(n):
        out = check(x[i].numpy(), y[i].numpy(), _describe(guess, i))
        mine = np.array([out[e]["active"] for e in SELECTABLE])
        differ += int(np.any(mine != (torch_chain.active[i, cols].numpy() >= 0.5)))
        assert set(out) == set(EFFECT_NAMES)
        gain = out["gain"]["params"]["gain_db"]  # the level in closed form, as the laptop sets it
        laptop_gain = SPECS["gain"]["gain_db"].from_unit(float(torch_chain.unit[i, PARAM_SLICES["gain"]][0]))
        assert gain == pytest.approx(laptop_gain, abs=0.05)
    assert differ == 0


def test_the_module_check_decides_as_the_laptop_on_a_fixed_example():
    """The laptop's default refinement (gradient fit, about 10 s) and the module's check at its own
    budget (coordinate search on one window) reach the same decisions on a clipped, reverberant tone
    that the network half missed."""
    sr = 16000
    x = _dry(sr, seconds=1.0)
    truth = sample_chain(1, torch.Generator().manual_seed(0)).hard()
    active = torch.zeros(1, len(EFFECT_NAMES))
    for name in ("distortion", "reverb", "gain"):
        active[0, EFFECT_NAMES.index(name)] = 1.0
    unit = truth.unit.clone()
    for name, param, value in (
        ("distortion", "drive_db", 24.0),
        ("distortion", "output_gain_db", -12.0),
        ("reverb", "mix_pct", 40.0),
        ("reverb", "decay_s", 0.8),
    ):
        unit[0, PARAM_SLICES[name].start + SPECS[name].index(param)] = float(SPECS[name][param].to_unit(value))
    made = Chain(active, unit, torch.eye(N_MODES)[DISTORTION_MODES.index("hard")][None])
    y, _ = render_stages(x, sr, made)
    guess = _describe(made, 0)  # the network: the reverb right, the clipper missed, an EQ imagined
    guess["distortion"].update(active=False, probability=0.3)
    guess["eq"].update(active=True, probability=0.7)
    guess_chain = Chain(
        torch.tensor([[0.7, 0.0, 0.3, 1.0, 1.0]]), unit, torch.eye(N_MODES)[DISTORTION_MODES.index("hard")][None]
    )
    from pimodule.laptop.fx.refine import refine_one

    laptop = refine_one(x[0], y[0], sr, guess_chain, RefineConfig())
    module = SubsetCheck(sr, CheckConfig())(x[0].numpy(), y[0].numpy(), guess)
    expected = {"eq": False, "compressor": False, "distortion": True, "reverb": True}
    assert {e: bool(laptop.chain.active[0, EFFECT_NAMES.index(e)]) for e in SELECTABLE} == expected
    assert {e: module[e]["active"] for e in SELECTABLE} == expected
    assert {e: module[e]["confidence"].split(",")[0] for e in SELECTABLE} == {
        e: laptop.confidence[e].split(",")[0] for e in SELECTABLE
    }


@pytest.mark.parametrize("sample_rate", [16000, 22050])
def test_the_search_never_moves_away_from_the_wet_signal(sample_rate):
    n = 4
    gen = torch.Generator().manual_seed(7)
    truth = sample_chain(n, gen).hard()
    x = _dry(sample_rate, batch=n, seed=5)
    y, _ = render_stages(x, sample_rate, truth)
    guess = Chain(
        truth.active, (truth.unit + 0.15 * torch.randn(truth.unit.shape, generator=gen)).clamp(0, 1), truth.mode_weights
    )
    check = SubsetCheck(sample_rate, CheckConfig(n_candidates=2))
    improved = 0
    for i in range(n):
        est = _describe(guess, i)
        out = check(x[i].numpy(), y[i].numpy(), est)
        fitted, start = check.last["fitted_db"], check.last["distance_db"]
        assert len(fitted) == 2 and all(fitted[c] <= start[c] + 1e-9 for c in fitted)
        improved += sum(fitted[c] < start[c] - 0.05 for c in fitted)
        for name in SELECTABLE:  # searched values stay in range; the others are the estimate's
            for spec in SPECS[name]:
                v = out[name]["params"][spec.name]
                assert spec.clamp(v) == pytest.approx(v)
                if name == "gain" or spec.name not in dict(SEARCHED)[name]:
                    assert v == est[name]["params"][spec.name]
    assert improved >= 4


@pytest.mark.parametrize("sample_rate", [16000, 22050])
@pytest.mark.parametrize("n_candidates", [0, 3])
def test_a_missed_clipper_is_found_and_an_imagined_eq_dropped(sample_rate, n_candidates):
    x = _dry(sample_rate)
    truth = sample_chain(1, torch.Generator().manual_seed(0)).hard()
    active = torch.zeros(1, len(EFFECT_NAMES))
    active[0, EFFECT_NAMES.index("distortion")] = active[0, EFFECT_NAMES.index("gain")] = 1.0
    unit = truth.unit.clone()
    for name, value in (("drive_db", 24.0), ("output_gain_db", -12.0)):
        j = PARAM_SLICES["distortion"].start + SPECS["distortion"].index(name)
        unit[0, j] = float(SPECS["distortion"][name].to_unit(value))
    for j, spec in enumerate(SPECS["eq"]):  # a flat EQ: inaudible even when switched on
        if spec.name.endswith("gain_db"):
            unit[0, PARAM_SLICES["eq"].start + j] = float(spec.to_unit(0.0))
    clipped = Chain(active, unit, torch.eye(N_MODES)[DISTORTION_MODES.index("hard")][None])
    y, _ = render_stages(x, sample_rate, clipped)
    guess = _describe(clipped, 0)
    guess["distortion"].update(active=False, probability=0.4)
    guess["eq"].update(active=True, probability=0.7)
    out = SubsetCheck(sample_rate, CheckConfig(n_candidates=n_candidates))(x[0].numpy(), y[0].numpy(), guess)
    assert {e: out[e]["active"] for e in SELECTABLE} == {
        "eq": False,
        "compressor": False,
        "distortion": True,
        "reverb": False,
    }
    assert guess["distortion"]["active"] is False  # the caller's estimate is not changed


def test_the_decision_weighs_each_effect_by_the_networks_belief(monkeypatch):
    """The check's last step charges each effect by the network's probability of it, as refine
    does (it used to charge every effect the same: its probabilities never reached the rule)."""
    from pimodule.device.fx import check as check_module

    seen = []
    real = check_module.effect_costs
    monkeypatch.setattr(check_module, "effect_costs", lambda p, *a, **k: seen.append(dict(p)) or real(p, *a, **k))
    sample_rate = 16000
    x = _dry(sample_rate)
    chain = sample_chain(1, torch.Generator().manual_seed(1)).hard()
    y, _ = render_stages(x, sample_rate, chain)
    guess = _describe(chain, 0)
    for name, p in zip(SELECTABLE, (0.9, 0.2, 0.6, 0.05)):
        guess[name]["probability"] = p
    SubsetCheck(sample_rate, CheckConfig(n_candidates=0))(x[0].numpy(), y[0].numpy(), guess)
    assert seen == [dict(zip(SELECTABLE, (0.9, 0.2, 0.6, 0.05)))]


def test_a_fitted_reverb_is_kept_below_the_label_threshold(monkeypatch):
    """A fitted reverb stands for a stronger third-party one (PRUNE_DB): a reverb that changes the
    chain by about 1 dB, under the 1.5 dB that labels an effect heard, stays on; with the label
    threshold alone it is pruned and the level alone wins."""
    from pimodule.device.fx import decide

    sample_rate = 16000
    x = _dry(sample_rate)
    chain = sample_chain(1, torch.Generator().manual_seed(0)).hard()
    active = torch.zeros(1, len(EFFECT_NAMES))
    active[0, EFFECT_NAMES.index("reverb")] = active[0, EFFECT_NAMES.index("gain")] = 1.0
    unit = chain.unit.clone()
    for name, value in (("decay_s", 0.8), ("mix_pct", 20.0)):
        unit[0, PARAM_SLICES["reverb"].start + SPECS["reverb"].index(name)] = float(
            SPECS["reverb"][name].to_unit(value)
        )
    wet = Chain(active, unit, torch.eye(N_MODES)[0][None])
    y, _ = render_stages(x, sample_rate, wet)
    guess = _describe(wet, 0)
    guess["reverb"]["probability"] = 0.9
    check = SubsetCheck(sample_rate, CheckConfig(n_candidates=0))
    out = check(x[0].numpy(), y[0].numpy(), guess)
    reverb_alone = int(np.flatnonzero((np.asarray(SUBSETS) == (0, 0, 0, 1)).all(1))[0])
    change = check.last["change_db"][reverb_alone][3]  # what removing the reverb changes
    assert decide.PRUNE_DB["reverb"] <= change < LABEL_DB
    assert out["reverb"]["active"] and out["reverb"]["confidence"] == "on, probably"
    monkeypatch.setattr(decide, "PRUNE_DB", {})
    out = check(x[0].numpy(), y[0].numpy(), guess)
    assert not out["reverb"]["active"] and check.last["choice"] == "level only"


def test_bad_input_is_refused():
    check = SubsetCheck(16000)
    x = _dry(16000)[0].numpy()
    est = _describe(sample_chain(1, torch.Generator().manual_seed(1)), 0)
    for dry, wet, error in (
        (x, x[:-1], ValueError),
        (x[:512], x[:512], ValueError),
        (x, np.where(np.arange(x.size) == 9, np.nan, x), ValueError),
    ):
        with pytest.raises(error):
            check(dry, wet, est)
    with pytest.raises(KeyError, match="reverb"):
        check(x, x, {k: v for k, v in est.items() if k != "reverb"})
    for bad in ({"prior": -1.0}, {"prior": float("nan")}, {"steps": (0.1, -0.1)}, {"n_candidates": 17}):
        with pytest.raises(ValueError):
            CheckConfig(**bad)


def test_the_check_imports_no_torch():
    code = (
        "import sys, numpy as np; from pimodule.device.fx.check import SubsetCheck; "
        "from pimodule.core.fx_specs import SPECS; "
        "e = {n: {'active': True, 'probability': 0.5, 'params': {s.name: s.default for s in t}} "
        "for n, t in SPECS.items()}; "
        "x = 0.1 * np.random.default_rng(0).standard_normal(16000); SubsetCheck(16000)(x, np.tanh(3 * x), e); "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bench_times_the_check_of_a_dry_model_only():
    from pathlib import Path

    from pimodule.device.fx.cost import bench_check

    export = Path(__file__).resolve().parents[3] / "export"
    r = bench_check(export / "fx-dry.onnx", n_runs=1)
    assert r is not None and 0 < r["median_ms"] <= r["max_ms"]
    assert bench_check(export / "fx.onnx") is None  # blind: nothing to check against
