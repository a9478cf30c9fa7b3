"""Analysis by synthesis (pimodule.laptop.fx.refine): a wrong estimate is corrected, fitting never makes
an estimate worse, a chain worse than doing nothing loses to the level alone, the time budget holds,
the CLI uses it by default (the evaluation: tests/fx/test_evaluate.py), bad input is refused."""

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
from pimodule.laptop.fx.refine import (
    RefineConfig,
    distance,
    fit,
    level_columns,
    polish,
    refine,
    refine_one,
    subset_log_likelihood,
)

FAST = RefineConfig(steps=8, n_candidates=3, budget_s=120.0)  # steps, not time, end it


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
    x = _dry(sr)[0]
    truth = _chain(
        {"eq": 1.0, "compressor": 1.0, "gain": 1.0},
        {"eq": {"peak2_gain_db": 9.0}, "compressor": {"threshold_db": -30.0, "ratio": 6.0}},
    )
    y, _ = render_stages(x[None], sr, truth)
    start_unit = truth.unit.clone()
    col = PARAM_SLICES["eq"].start + [s.name for s in SPECS["eq"]].index("peak2_gain_db")
    start_unit[:, col] = float(SPECS["eq"]["peak2_gain_db"].to_unit(2.0))
    start = Chain(truth.active, start_unit, truth.mode_weights).rows(torch.tensor([0, 0]))
    fitted, steps = fit(x, y[0], sr, start, steps=25, learning_rate=0.1)
    assert steps == 25
    hard = Chain(fitted.active, fitted.unit, truth.mode_weights.expand(2, -1))
    xx, yy = x.expand(2, -1), y.expand(2, -1)
    assert torch.all(distance(xx, yy, sr, hard) < distance(xx, yy, sr, start))
    exact, _ = fit(x, y[0], sr, truth, steps=3, learning_rate=0.1)  # already right: kept or as good
    assert float(distance(x[None], y, sr, Chain(truth.active, exact.unit, truth.mode_weights))[0]) <= 1e-3 + float(
        distance(x[None], y, sr, truth)[0]
    )
    same, taken = fit(x, y[0], sr, start, steps=0, learning_rate=0.1)
    assert taken == 0 and torch.allclose(same.unit, start.unit, atol=1e-6)


def test_the_reverbs_polish_finds_a_weak_reverb_the_fit_turned_down():
    sr = 16000
    x = _dry(sr, seconds=1.0)  # decaying notes: the tails are where a reverb is heard
    truth = _chain({"reverb": 1.0, "gain": 1.0}, {"reverb": {"decay_s": 0.8, "mix_pct": 15.0}})
    y = render_stages(x, sr, truth)[0][0].double()
    turned_down = _chain({"reverb": 1.0, "gain": 1.0}, {"reverb": {"decay_s": 0.4, "mix_pct": 2.0}}).to(torch.float64)
    polished = polish(x[0].double(), y, sr, turned_down, "reverb")
    col = {n: PARAM_SLICES["reverb"].start + [s.name for s in SPECS["reverb"]].index(n) for n in ("decay_s", "mix_pct")}
    mix = float(SPECS["reverb"]["mix_pct"].from_unit(polished.unit[0, col["mix_pct"]]))
    decay = float(SPECS["reverb"]["decay_s"].from_unit(polished.unit[0, col["decay_s"]]))
    assert 6.0 <= mix <= 25.0 and 0.4 <= decay <= 1.0  # towards 15 % and 0.8 s, on the grid
    xx = x.double()
    assert float(distance(xx, y[None], sr, polished)[0]) < float(distance(xx, y[None], sr, turned_down)[0])
    # only the reverb's two values move; a chain without a reverb, or at the truth, is left as it is
    moved = (polished.unit != turned_down.unit).nonzero()[:, 1].tolist()
    assert set(moved) <= set(col.values()) and torch.equal(polished.active, turned_down.active)
    dry_chain = _chain({"eq": 1.0, "gain": 1.0}, {"eq": {"peak2_gain_db": 6.0}}).to(torch.float64)
    assert polish(x[0].double(), y, sr, dry_chain, "reverb") is dry_chain
    exact = truth.to(torch.float64)
    assert float(distance(xx, y[None], sr, polish(x[0].double(), y, sr, exact, "reverb"))[0]) <= float(
        distance(xx, y[None], sr, exact)[0]
    )


def test_the_polish_finds_a_compressor_the_fit_turned_down_and_refuses_what_it_does_not_search():
    sr = 16000
    x = _dry(sr, seconds=1.0)
    truth = _chain({"compressor": 1.0, "gain": 1.0}, {"compressor": {"threshold_db": -32.0, "ratio": 8.0}})
    y = render_stages(x, sr, truth)[0][0].double()
    weak = _chain({"compressor": 1.0, "gain": 1.0}, {"compressor": {"threshold_db": -20.0, "ratio": 2.0}})
    weak = weak.to(torch.float64)
    polished = polish(x[0].double(), y, sr, weak, "compressor")
    xx = x.double()
    assert float(distance(xx, y[None], sr, polished)[0]) < 0.5 * float(distance(xx, y[None], sr, weak)[0])
    with pytest.raises(ValueError, match="polish"):
        RefineConfig(polish=("eq",))


def test_the_fit_holds_the_level_parameters_where_only_float_noise_moves_them():
    """A chain that already matches (levels aside): the level-matched loss leaves its output gains
    nothing but float noise, which unheld walked them towards their range's ends."""
    sr = 16000
    x = _dry(sr)[0]
    truth = _chain(
        {"distortion": 1.0, "reverb": 1.0, "gain": 1.0},
        {"distortion": {"drive_db": 12.0, "output_gain_db": -12.0}},
    )
    start = _chain(
        {"distortion": 1.0, "reverb": 1.0, "gain": 1.0},
        {"distortion": {"drive_db": 20.0, "output_gain_db": -12.0}},
    )
    y, _ = render_stages(x[None], sr, truth)
    fitted, _ = fit(x, 0.3 * y[0], sr, start, steps=40, learning_rate=0.1)
    cols = level_columns()
    assert PARAM_SLICES["gain"].start in cols and len(cols) >= 3
    moved = (fitted.unit[0] - start.unit[0]).abs()
    assert float(moved.max()) > 0.05  # the drive was fitted
    assert float(moved[cols].max()) < 0.02  # unheld: 0.12 of their range in this case


def test_a_chain_worse_than_doing_nothing_loses_to_the_level_alone():
    sr = 16000
    x = _dry(sr, seconds=1.0)
    y = 0.5 * x  # no effect at all, only a level change
    # the network is sure of a hard clipper and a wet reverb
    guess = _chain(
        {"distortion": 0.95, "reverb": 0.9, "gain": 1.0},
        {"distortion": {"drive_db": 30.0, "output_gain_db": -12.0}, "reverb": {"mix_pct": 60.0, "decay_s": 1.2}},
    )
    config = RefineConfig(steps=0, n_candidates=1, full_chain=False, search_prior=100.0, search_first=False)
    r = refine_one(x[0], y[0], sr, guess, config)
    assert r.candidates["chain"][0] > r.candidates["level only"][0]  # the network's chain is worse
    assert r.choice == "level only" and r.distance == r.level_only
    assert not any(bool(r.chain.active[0, EFFECT_NAMES.index(e)]) for e in SELECTABLE)
    gain = SPECS["gain"]["gain_db"].from_unit(float(r.chain.unit[0, PARAM_SLICES["gain"]][0]))
    assert gain == pytest.approx(-6.02, abs=0.1)  # the level in closed form
    assert r.confidence["distortion"] == "off, probably"  # the network had it on


def test_the_time_budget_holds_and_steps_are_bounded():
    sr = 16000
    x = _dry(sr, seconds=2.0)
    guess = _chain({"eq": 0.8, "compressor": 0.8, "reverb": 0.8, "gain": 1.0}, {})
    y, _ = render_stages(x, sr, _chain({"reverb": 1.0, "gain": 1.0}, {"reverb": {"mix_pct": 40.0}}))
    refine_one(x[0], y[0], sr, guess, RefineConfig(steps=1))  # compiles the effects' kernels
    r = refine_one(x[0], y[0], sr, guess, RefineConfig(steps=10_000, budget_s=1.5))
    assert r.steps < 10_000 and r.seconds < 1.5 + 10.0  # the fit stops on time (the rest: a busy machine)
    seen = []
    r = refine_one(x[0], y[0], sr, guess, RefineConfig(steps=3, budget_s=100.0), lambda *a: seen.append(a))
    assert r.steps == 3 and [s[0] for s in seen] == [1, 2, 3]


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
    with pytest.raises(ValueError, match="positive"):
        RefineConfig(budget_s=0.0)
    with pytest.raises(ValueError, match="n_candidates"):
        RefineConfig(n_candidates=17)


def _run_estimate(argv, capsys):
    parser = argparse.ArgumentParser()
    estimate.configure(parser)
    code = estimate.main(parser.parse_args(argv))
    return code, capsys.readouterr().out


def test_estimate_cli_refines_with_the_dry_file_by_default(tiny_paired_run, tmp_path, capsys):
    sr = 22050
    x = _dry(sr, seconds=1.2)
    y, _ = render_stages(x, sr, _chain({"distortion": 1.0, "gain": 1.0}, {"distortion": {"drive_db": 24.0}}))
    sf.write(str(tmp_path / "dry.wav"), x[0].numpy(), sr)
    sf.write(str(tmp_path / "wet.wav"), y[0].numpy(), sr)
    wet, dry = str(tmp_path / "wet.wav"), str(tmp_path / "dry.wav")
    code, out = _run_estimate([str(tiny_paired_run), "--input", wet, "--dry", dry, "--json", "--no-progress"], capsys)
    assert code == 0
    desc = json.loads(out)
    assert all(e["probability"] in (0.0, 1.0) for e in desc.values()) and desc["gain"]["active"]
    assert all(desc[e]["confidence"].startswith(("on,", "off,")) for e in SELECTABLE)
    code, out = _run_estimate([str(tiny_paired_run), "--input", wet, "--dry", dry, "--no-refine"], capsys)
    assert code == 0 and "checked in" in out and "closest to the recording" in out
    code, out = _run_estimate([str(tiny_paired_run), "--input", wet], capsys)
    assert code == 2 and "give --dry" in out
    sf.write(str(tmp_path / "short.wav"), x[0, : sr // 20].numpy(), sr)  # 50 ms
    code, out = _run_estimate([str(tiny_paired_run), "--input", wet, "--dry", str(tmp_path / "short.wav")], capsys)
    assert code == 2 and "at least 0.1 s" in out


def test_estimate_cli_lines_up_a_late_input(tiny_paired_run, tmp_path, capsys):
    """A wet file 20 ms late on its dry one (re-amped) is lined up, said so, and refined as closely
    as the same file on time; the time-aligned pair is left alone."""
    import re

    sr = 22050
    x = _dry(sr, seconds=1.2)
    y, _ = render_stages(x, sr, _chain({"distortion": 1.0, "gain": 1.0}, {"distortion": {"drive_db": 24.0}}))
    late = int(0.02 * sr)
    sf.write(str(tmp_path / "dry.wav"), x[0].numpy(), sr)
    sf.write(str(tmp_path / "wet.wav"), y[0].numpy(), sr)
    sf.write(str(tmp_path / "late.wav"), np.concatenate([np.zeros(late), y[0].numpy()]), sr)
    distance = {}
    for name in ("wet", "late"):
        argv = [str(tiny_paired_run), "--input", str(tmp_path / f"{name}.wav"), "--dry", str(tmp_path / "dry.wav")]
        code, out = _run_estimate(argv + ["--no-refine"], capsys)
        assert code == 0
        assert ("ms late on the dry file: lined up" in out) == (name == "late"), out
        assert "may not be the source" not in out
        distance[name] = float(re.search(r"MRSTFT ([0-9.]+)", out).group(1))
    assert distance["late"] == pytest.approx(distance["wet"], rel=0.05)
