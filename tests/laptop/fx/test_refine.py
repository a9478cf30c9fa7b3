"""Analysis by synthesis (pimodule.laptop.fx.refine): a wrong estimate is corrected, fitting never makes
an estimate worse, the CLI uses it (the evaluation: tests/fx/test_evaluate.py), bad input is refused."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from pimodule.core.fx_specs import DISTORTION_MODES, EFFECT_NAMES, SELECTABLE, SPECS
from pimodule.laptop.fx import estimate
from pimodule.laptop.fx.batch import render_stages
from pimodule.laptop.fx.chain import N_MODES, N_PARAMS, PARAM_SLICES, Chain
from pimodule.laptop.fx.refine import RefineConfig, distance, fit_parameters, refine, subset_log_likelihood

FAST = RefineConfig(steps=8, n_candidates=3)


def _dry(sample_rate: int, seconds: float = 0.5, batch: int = 1) -> torch.Tensor:
    """A plucked two-note tone with a little noise: level changes for the compressor, harmonics for
    the EQ and the clipper."""
    gen = torch.Generator().manual_seed(3)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    env = torch.exp(-6 * (t % 0.25))
    tone = sum(torch.sin(2 * torch.pi * f * k * t) / k for f in (220.0, 330.0) for k in (1, 2, 3))
    x = 0.25 * env * tone + 0.01 * torch.randn(t.shape, generator=gen)
    return x.expand(batch, -1).clone()


def _chain(on: dict[str, float], values: dict[str, dict[str, float]], mode: str = "hard") -> Chain:
    """One example: ``on`` effect -> probability, ``values`` effect -> {param: physical value}."""
    unit = torch.full((1, N_PARAMS), 0.5)
    for name, params in values.items():
        for i, spec in enumerate(SPECS[name]):
            if spec.name in params:
                unit[0, PARAM_SLICES[name].start + i] = float(spec.to_unit(params[spec.name]))
    for i, spec in enumerate(SPECS["eq"]):  # flat EQ unless set
        if spec.name.endswith("gain_db") and spec.name not in values.get("eq", {}):
            unit[0, PARAM_SLICES["eq"].start + i] = float(spec.to_unit(0.0))
    unit[0, PARAM_SLICES["gain"]] = float(SPECS["gain"]["gain_db"].to_unit(0.0))
    active = torch.tensor([[on.get(n, 0.0) for n in EFFECT_NAMES]])
    mode_weights = torch.eye(N_MODES)[DISTORTION_MODES.index(mode)][None]
    return Chain(active, unit, mode_weights)


@pytest.mark.parametrize("sample_rate", [16000, 22050])
def test_a_missed_effect_is_found_and_an_imagined_one_dropped(sample_rate):
    x = _dry(sample_rate)
    truth = _chain({"distortion": 1.0, "gain": 1.0}, {"distortion": {"drive_db": 24.0, "output_gain_db": -12.0}})
    y, change = render_stages(x, sample_rate, truth)
    assert change[0, EFFECT_NAMES.index("distortion")] > 3.0  # clearly heard
    # the network missed the clipper (p 0.4) and imagined a flat EQ (p 0.7); its drive is 6 dB off
    guess = _chain(
        {"eq": 0.7, "distortion": 0.4, "gain": 1.0}, {"distortion": {"drive_db": 18.0, "output_gain_db": -12.0}}
    )
    refined, d = refine(x, y, sample_rate, guess, FAST)
    on = {n: bool(refined.active[0, EFFECT_NAMES.index(n)] >= 0.5) for n in SELECTABLE}
    assert on == {"eq": False, "compressor": False, "distortion": True, "reverb": False}
    assert set(refined.active.flatten().tolist()) <= {0.0, 1.0} and refined.active[0, -1] == 1.0
    before = distance(x, y, sample_rate, Chain(truth.active, guess.unit, guess.mode_weights))
    assert torch.isfinite(d).all() and float(d[0]) < float(before[0])


def test_fitting_brings_the_parameters_closer_and_never_makes_them_worse():
    sr = 16000
    x = _dry(sr, batch=2)
    truth = _chain(
        {"eq": 1.0, "compressor": 1.0, "gain": 1.0},
        {"eq": {"peak2_gain_db": 9.0}, "compressor": {"threshold_db": -30.0, "ratio": 6.0}},
    )
    truth = truth.rows(torch.tensor([0, 0]))
    y, _ = render_stages(x, sr, truth)
    start_unit = truth.unit.clone()
    col = PARAM_SLICES["eq"].start + [s.name for s in SPECS["eq"]].index("peak2_gain_db")
    start_unit[:, col] = float(SPECS["eq"]["peak2_gain_db"].to_unit(2.0))
    start = Chain(truth.active, start_unit, truth.mode_weights)
    fitted = fit_parameters(x, y, sr, start, steps=25, learning_rate=0.1)
    assert torch.all(distance(x, y, sr, Chain(truth.active, fitted, truth.mode_weights)) < distance(x, y, sr, start))
    exact = fit_parameters(x, y, sr, truth, steps=3, learning_rate=0.1)  # already right: kept or as good
    assert torch.all(
        distance(x, y, sr, Chain(truth.active, exact, truth.mode_weights)) <= 1e-3 + distance(x, y, sr, truth)
    )
    assert torch.equal(fit_parameters(x, y, sr, start, steps=0, learning_rate=0.1), start.unit)


def test_subset_log_likelihood_is_exact():
    p = torch.tensor([[0.9, 0.2, 0.5, 0.5, 1.0]])
    ll = subset_log_likelihood(p)
    assert ll.shape == (1, 16)
    assert np.isclose(float(ll[0, 0]), np.log(0.1 * 0.8 * 0.5 * 0.5), atol=1e-5)  # all off
    assert np.isclose(float(ll[0, 8 + 4]), np.log(0.9 * 0.2 * 0.5 * 0.5), atol=1e-5)  # eq + compressor
    assert np.isclose(float(torch.logsumexp(ll, 1)), 0.0, atol=1e-5)


def test_bad_input_is_refused():
    x = _dry(16000)
    guess = _chain({"gain": 1.0}, {})
    with pytest.raises(ValueError, match="do not match"):
        refine(x, x[:, :-1], 16000, guess, FAST)
    with pytest.raises(ValueError, match="do not match"):
        refine(_dry(16000, batch=2), _dry(16000, batch=2), 16000, guess, FAST)
    with pytest.raises(ValueError, match="labels"):
        RefineConfig(labels="loudness")
    with pytest.raises(ValueError, match="n_candidates"):
        RefineConfig(n_candidates=17)


def _run_estimate(argv, capsys):
    parser = argparse.ArgumentParser()
    estimate.configure(parser)
    code = estimate.main(parser.parse_args(argv))
    return code, capsys.readouterr().out


def test_estimate_cli_refines_with_the_dry_file(tiny_paired_run, tmp_path, capsys):
    sr = 22050
    x = _dry(sr, seconds=1.2)
    y, _ = render_stages(x, sr, _chain({"distortion": 1.0, "gain": 1.0}, {"distortion": {"drive_db": 24.0}}))
    sf.write(str(tmp_path / "dry.wav"), x[0].numpy(), sr)
    sf.write(str(tmp_path / "wet.wav"), y[0].numpy(), sr)
    code, out = _run_estimate(
        [
            str(tiny_paired_run),
            "--input",
            str(tmp_path / "wet.wav"),
            "--dry",
            str(tmp_path / "dry.wav"),
            "--refine",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    desc = json.loads(out)
    assert all(e["probability"] in (0.0, 1.0) for e in desc.values()) and desc["gain"]["active"]
    code, out = _run_estimate([str(tiny_paired_run), "--input", str(tmp_path / "wet.wav"), "--refine"], capsys)
    assert code == 2 and "--refine needs --dry" in out
    sf.write(str(tmp_path / "short.wav"), x[0, : sr // 20].numpy(), sr)  # 50 ms
    code, out = _run_estimate(
        [str(tiny_paired_run), "--input", str(tmp_path / "wet.wav"), "--dry", str(tmp_path / "short.wav"), "--refine"],
        capsys,
    )
    assert code == 2 and "at least 0.1 s" in out
