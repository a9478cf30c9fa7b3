"""Scoring on the real-recording benchmark: the level alone scores 1, refined estimates are never worse
than it, every row reports what the results page shows; blind keep thresholds follow their target."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pimodule.core.fx_specs import EFFECT_NAMES, SPECS
from pimodule.device.fx.check import CheckConfig
from pimodule.laptop.fx import realbench, realeval
from pimodule.laptop.fx.calibrate import STRENGTHS, choose_strength, choose_thresholds, worse_bound, write_keep
from pimodule.laptop.fx.chain import N_EFFECTS, N_PARAMS, PARAM_SLICES, Chain, physical, with_strength
from pimodule.laptop.fx.infer import LoadedEstimator
from pimodule.laptop.fx.refine import RefineConfig, render


@pytest.fixture(scope="module")
def examples():
    recs = [r for r in realbench.RECORDINGS if r.name == "alsa_voice"]
    try:
        return realbench.build(seed=1, draws=2, families=("pedalboard",), recordings=recs)
    except realbench.BenchmarkError as err:
        pytest.skip(str(err))


def test_rows_of_a_dry_and_a_blind_model(tiny_paired_run, tiny_run, examples):
    if LoadedEstimator(tiny_paired_run).sample_rate != realbench.SAMPLE_RATE:
        pytest.skip("the tiny runs are not at the benchmark's rate")
    models = {"dry": LoadedEstimator(tiny_paired_run), "blind": LoadedEstimator(tiny_run)}
    rows, style = realeval.benchmark_rows(models, CheckConfig(n_candidates=1, steps=(0.1,)), RefineConfig(steps=2))
    assert set(rows) == {
        "level only",
        "dry network",
        "dry module check",
        "dry refine",
        "dry refine, input late",
        "blind network",
        "blind kept",
    }
    assert any(k.startswith("blind") for k in style)
    picked = {
        k: rows[k] for k in ("level only", "dry refine", "dry refine, input late", "dry module check", "blind kept")
    }
    out = realeval.run_rows(picked, examples)
    level = out["level only"]
    assert level["median_ratio_lm"] == pytest.approx(1.0, abs=1e-3) and level["share_not_worse_lm"] == 1.0
    assert out["dry refine"]["share_not_worse_lm"] == 1.0  # never worse than doing nothing
    assert out["dry refine, input late"]["share_not_worse_lm"] == 1.0  # ... when the file comes late too
    for r in out.values():
        assert set(r["by_family"]) == {"pedalboard"} and len(r["ratios_lm"]) == len(examples)
        assert 0 <= r["whole_chain_right"] <= 1 and r["seconds_per_example"] >= 0


def test_keep_thresholds_follow_their_target():
    rng = np.random.default_rng(0)
    n = 200
    probs = rng.uniform(0, 1, (n, 4))
    ratios = np.ones((n, 16))
    weights = 2 ** np.arange(4)[::-1]
    for s in range(16):  # an effect the network is sure of helps, an unsure one hurts
        bits = np.array([(s >> (3 - k)) & 1 for k in range(4)], bool)
        ratios[:, s] = np.prod(np.where(bits, np.where(probs > 0.8, 0.8, 1.3), 1.0), 1)
    keep, stats = choose_thresholds(probs, ratios, target=0.95)
    assert stats["worse"] <= 0.05 and stats["better"] > 0.3
    assert all(0.8 <= v <= 1.01 for v in keep.values())
    assert weights.sum() == 15


def _chain_with(effect: str, **physical_values) -> Chain:
    active = torch.zeros(1, N_EFFECTS)
    active[0, EFFECT_NAMES.index(effect)] = 0.9
    active[0, EFFECT_NAMES.index("gain")] = 1.0
    unit = torch.full((1, N_PARAMS), 0.5)
    for name, value in physical_values.items():
        j = SPECS[effect].names.index(name)
        unit[0, PARAM_SLICES[effect].start + j] = float(SPECS[effect][name].to_unit(value))
    unit[0, PARAM_SLICES["gain"]] = float(SPECS["gain"]["gain_db"].to_unit(0.0))
    return Chain(active, unit, torch.tensor([[1.0, 0.0, 0.0]]))


def test_with_strength_moves_each_example_as_toward_neutral_does():
    chain = _chain_with("reverb", mix_pct=80.0, decay_s=1.0)
    half = with_strength(chain, {"reverb": 0.5, "eq": 1.0})
    got = physical("reverb", half.unit)
    assert float(got["mix_pct"][0]) == pytest.approx(40.0, abs=1e-3)
    assert float(got["decay_s"][0]) == pytest.approx(1.0, rel=1e-4)
    assert torch.equal(half.active, chain.active) and float(chain.unit[0, PARAM_SLICES["reverb"]][2]) > 0.79


def test_an_overstated_reverb_is_calibrated_down_to_what_the_recording_has(examples):
    dry = examples[0].dry
    truth = _chain_with("reverb", mix_pct=20.0, decay_s=0.8, damping_pct=30.0)
    wet = render(torch.from_numpy(dry).float(), realbench.SAMPLE_RATE, truth.hard())[0].numpy()
    heard = _chain_with("reverb", mix_pct=80.0, decay_s=0.8, damping_pct=30.0)  # the size overstated 4x
    strength, stats = choose_strength([heard], [SimpleNamespace(dry=dry, wet=wet)])
    assert strength["reverb"] in STRENGTHS and strength["reverb"] <= 0.35
    assert stats["reverb"]["n"] == 1 and set(strength) == {"eq", "compressor", "distortion", "reverb"}


def test_keep_and_strength_round_trip_through_a_run_folder(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    write_keep(run, {"eq": 0.9, "reverb": 1.01}, {"reverb": 0.25})
    model = LoadedEstimator(run)
    assert model.keep == {"eq": 0.9, "reverb": 1.01} and model.strength == {"reverb": 0.25}


def test_the_dry_signal_at_any_level_scores_exactly_as_doing_nothing(examples):
    """Levels matched, a scaled copy of the dry signal is the level alone: ratio 1 to float64 noise
    (scored in float32 a quiet example's ratio moved by several per cent and read as worse)."""
    for ex in examples:
        for scale in (0.05, 3.7):
            out = realeval.Outcome(
                ex.dry * scale, dict.fromkeys(("eq", "compressor", "distortion", "reverb"), False), 0.0
            )
            r = realeval.example_scores(ex, out)
            assert r["mrstft_ratio_lm"] == pytest.approx(1.0, abs=1e-6)
            assert r["mel_ratio_lm"] == pytest.approx(1.0, abs=1e-5)


def test_keep_thresholds_bound_the_share_made_worse_with_confidence():
    # one effect; 200 examples where it is kept from p >= t: the lower the threshold the more it keeps,
    # each keep brings the example closer, except one in 25 (4 %), which it takes farther
    n = 200
    probs = np.zeros((n, 4))
    probs[:, 2] = np.linspace(0.5, 1, n, endpoint=False)
    ratios = np.ones((n, 16))
    ratios[:, 2] = np.where(np.arange(n) % 25 == 0, 1.5, 0.8)  # subset 2: the third effect alone
    point, stats_point = choose_thresholds(probs, ratios, target=0.95, confidence=0.5)
    sure, stats_sure = choose_thresholds(probs, ratios, target=0.95)
    assert stats_point["worse"] > 0.03  # the point estimate (median bound) accepts about 4 %
    assert worse_bound(round(stats_sure["worse"] * n), n) <= 0.05 < worse_bound(round(stats_point["worse"] * n), n)
    assert sure["distortion"] > point["distortion"] and stats_sure["better"] < stats_point["better"]
    assert worse_bound(0, 160) == pytest.approx(0.0185, abs=1e-3) and worse_bound(5, 5) == 1.0


def test_rows_of_a_reference_model(tiny_reference_run):
    model = LoadedEstimator(tiny_reference_run)
    if model.sample_rate != realbench.SAMPLE_RATE:
        pytest.skip("the tiny runs are not at the benchmark's rate")
    recs = [r for r in realbench.RECORDINGS if r.name in ("apollo11", "bell")]  # Debian packages: CI has them
    try:
        style_examples = realbench.build_style(seed=1, draws=1, families=("pedalboard",), recordings=recs)
    except realbench.BenchmarkError as err:
        pytest.skip(str(err))
    assert len(style_examples) == 2
    rows, style = realeval.benchmark_rows({"ref": model}, CheckConfig(), RefineConfig(steps=2))
    assert set(rows) == {"level only"}
    assert set(style) == {"level only (the reference's)", "ref network", "ref checked", "ref module check"}
    out = realeval.run_rows(style, style_examples)
    for r in out.values():
        assert len(r["ratios_lm"]) == len(style_examples) and all(np.isfinite(r["ratios_lm"]))
        assert 0 <= r["share_not_worse_lm"] <= 1 and r["seconds_per_example"] >= 0


def test_the_eval_cli_scores_the_style_part_alone(tiny_reference_run, tmp_path, monkeypatch):
    """``pimodule eval fx --only-real --cases style``: the style-transfer examples only (a few
    minutes, where the whole benchmark takes half an hour)."""
    import argparse

    from pimodule.laptop.fx import evaluate

    built = []
    monkeypatch.setattr(realbench, "build", lambda **k: built.append("estimate") or [])
    monkeypatch.setattr(realbench, "build_style", lambda **k: built.append("style") or [])
    monkeypatch.setattr(realbench, "describe_benchmark", lambda examples: {"n": len(examples)})
    parser = argparse.ArgumentParser()
    evaluate.configure(parser)
    args = parser.parse_args([str(tiny_reference_run), "--out", str(tmp_path), "--only-real", "--cases", "style"])
    assert evaluate.main(args) == 0
    out = json.loads((tmp_path / "real.json").read_text())
    assert built == ["style"] and "style_rows" in out and "rows" not in out
    args = parser.parse_args([str(tiny_reference_run), "--out", str(tmp_path), "--only-real"])
    assert evaluate.main(args) == 0
    out = json.loads((tmp_path / "real.json").read_text())
    assert built == ["style", "estimate", "style"] and {"rows", "style_rows"} <= set(out)
