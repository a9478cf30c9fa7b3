"""``pimodule eval fx`` on a tiny run: all cases, metrics present and sane, files written."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest
import torch

from pimodule.device.fx.check import CheckConfig
from pimodule.laptop.fx import evaluate
from pimodule.laptop.fx.chain import N_EFFECTS, N_MODES, N_PARAMS, PARAM_SLICES, Chain
from pimodule.laptop.fx.effects import gain
from pimodule.laptop.fx.refine import RefineConfig


def test_eval_writes_json_and_markdown(tiny_run, tiny_reference_run, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    evaluate.configure(parser)
    out = tmp_path / "eval"
    code = evaluate.main(
        parser.parse_args(
            [str(tiny_run), str(tiny_reference_run), "--out", str(out), "--n-examples", "3", "--max-files", "2"]
        )
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {tiny_run.name, tiny_reference_run.name}
    for cases in results["models"].values():
        assert set(cases) == set(evaluate.CASES)
        for r in cases.values():
            assert r["mrstft_corrupt"] > 0 and np.isfinite(r["mrstft_ratio"])
            assert 0 <= r["selection_accuracy"] <= 1 and 0 <= r["n_clear"] <= r["n"]
            assert r["n_clear"] == 0 or 0 <= r["selection_accuracy_clear"] <= 1
        for case in ("chain", "pedalboard"):  # also scored against the removal labels
            assert 0 <= cases[case]["selection_accuracy_removal"] <= 1
        assert "selection_accuracy_removal" not in cases["style"]
        assert 0 <= cases["chain"]["param_mae_unit"] <= 1
    assert "| chain |" in (out / "results.md").read_text()


def test_eval_of_an_exported_file_scores_as_its_run(tiny_paired_run, tmp_path):
    """The shipped .onnx is evaluated by onnxruntime and scores what its training run scores."""
    from pimodule.laptop.fx.export import export_onnx
    from pimodule.laptop.fx.run import load_run

    onnx_path = export_onnx(load_run(tiny_paired_run)[0], tmp_path / "paired.onnx", provenance={"test": 1})
    parser = argparse.ArgumentParser()
    evaluate.configure(parser)
    out = tmp_path / "eval"
    assert (
        evaluate.main(
            parser.parse_args(
                [str(tiny_paired_run), str(onnx_path), "--out", str(out), "--n-examples", "4", "--max-files", "2"]
            )
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["training"]["paired.onnx"]["conditioning"] == "dry"
    torch_scores, onnx_scores = results["models"][tiny_paired_run.name], results["models"]["paired.onnx"]
    for case in evaluate.CASES:
        for key in ("mrstft", "mel_db", "mrstft_corrupt"):
            assert np.isclose(onnx_scores[case][key], torch_scores[case][key], rtol=1e-3), (case, key)
        assert onnx_scores[case]["selection_accuracy"] == torch_scores[case]["selection_accuracy"]


def _chain(active: list[int], **unit_values) -> Chain:
    unit = torch.full((1, N_PARAMS), 0.5)
    for key, v in unit_values.items():
        unit[0, PARAM_SLICES[key].start] = v
    return Chain(torch.tensor([active], dtype=torch.float32), unit, torch.eye(N_MODES)[:1])


def test_pedalboard_mapping_bypass_and_gain():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((1, 4000)) * 0.1).astype(np.float32)
    same = evaluate.pedalboard_render(x, 16000, _chain([0] * N_EFFECTS))
    assert np.allclose(same, x)
    loud = evaluate.pedalboard_render(x, 16000, _chain([0, 0, 0, 0, 1], gain=0.75))  # +12 dB
    ours = gain(torch.from_numpy(x)[:, None], 16000, gain_db=12.0)[:, 0].numpy()
    assert np.allclose(loud, ours, rtol=1e-4, atol=1e-6)


def test_pedalboard_case_is_labelled_by_removal_on_pedalboards_own_audio():
    """A flat EQ before heavy clipping: removing the EQ changes nothing, removing the clipper a lot,
    measured between pedalboard renders (what the model hears in that case)."""
    from pimodule.laptop.fx.batch import LABEL_DB, _unit_rms, removal_change, removal_labels
    from pimodule.laptop.fx.losses import mel_distance

    t = np.arange(8000) / 16000
    x = (0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)[None]
    chain = _chain([1, 0, 1, 0, 1], distortion=1.0)  # EQ gains 0 dB, drive 36 dB
    render = evaluate._pedalboard_torch
    y = render(torch.from_numpy(x), 16000, chain)
    change = removal_change(torch.from_numpy(x), 16000, chain, y, render)
    eq_only = _chain([1, 0, 0, 0, 1])
    expect = mel_distance(_unit_rms(render(torch.from_numpy(x), 16000, eq_only)), _unit_rms(y), 16000)
    assert torch.allclose(change[0, 2], expect[0], atol=1e-5) and change[0, 2] > 3 * LABEL_DB
    assert change[0, 0] < LABEL_DB / 3
    labels = removal_labels(torch.from_numpy(x), 16000, chain, y, render)
    assert labels[0].tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("flag, config", [("--refine", RefineConfig()), ("--check", CheckConfig())])
def test_eval_scores_refined_or_checked_estimates_of_a_dry_model(tiny_paired_run, tiny_run, tmp_path, flag, config):
    """Laptop refinement and the module's check: extra rows for the dry model only, cases with a dry signal."""
    parser = argparse.ArgumentParser()
    evaluate.configure(parser)
    out = tmp_path / "eval"
    assert (
        evaluate.main(
            parser.parse_args(
                [
                    str(tiny_paired_run),
                    str(tiny_run),
                    "--out",
                    str(out),
                    "--n-examples",
                    "2",
                    "--max-files",
                    "2",
                    "--cases",
                    "chain",
                    "style",
                    flag,
                ]
            )
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    name = f"{tiny_paired_run.name} +{flag[2:]}"
    assert set(results["models"]) == {tiny_paired_run.name, tiny_run.name, name}  # blind: no extra row
    assert set(results["models"][name]) == {"chain"}  # no dry for the style case's reference
    r = results["models"][name]["chain"]
    assert 0 <= r["selection_accuracy"] <= 1 and np.isfinite(r["mrstft_ratio"]) and np.isfinite(r["param_mae_unit"])
    assert results["training"][name][flag[2:]] == json.loads(json.dumps(dataclasses.asdict(config)))


def test_a_dry_models_level_is_scored_in_closed_form():
    """Whatever gain the network said, the scored chain plays each dry example at its wet one's
    level (effects on or off), as pimodule estimate and the module set it."""
    from pimodule.core.fx_specs import EFFECT_NAMES, SPECS
    from pimodule.laptop.fx.refine import render

    sr, g = 16000, torch.Generator().manual_seed(0)
    dry = 0.1 * torch.randn(3, sr, generator=g)
    active = torch.zeros(3, N_EFFECTS)
    active[1, EFFECT_NAMES.index("distortion")] = 1.0  # a louder chain: the closed form turns it down
    unit = torch.rand(3, N_PARAMS, generator=g)  # whatever gain the network said
    chain = Chain(active, unit, torch.eye(N_MODES)[[0, 0, 1]])
    wet = dry * torch.tensor([[0.25], [1.0], [2.0]])
    leveled = evaluate.with_level(chain, dry, wet, sr)
    assert torch.equal(leveled.active[:, EFFECT_NAMES.index("gain")], torch.ones(3))
    spec = SPECS["gain"]["gain_db"]
    gains = [float(spec.from_unit(float(leveled.unit[i, PARAM_SLICES["gain"]][0]))) for i in range(3)]
    assert gains[0] == pytest.approx(-12.04, abs=0.1) and gains[2] == pytest.approx(6.02, abs=0.1)
    out = render(dry, sr, leveled)
    rms = out.square().mean(-1).sqrt() / wet.square().mean(-1).sqrt()
    assert torch.allclose(20 * rms.log10(), torch.zeros(3), atol=1.0)  # each at its wet one's level


def test_a_reference_models_scores_do_not_depend_on_its_gain_output():
    """A reference model plays at the reference's level in the product (its gain output is not
    trained): two estimates that differ only in that output score the same, on every case."""
    from pimodule.core.fx_specs import SPECS
    from pimodule.laptop.fx.batch import from_dry

    sr, g = 16000, torch.Generator().manual_seed(1)
    dry = 0.1 * torch.randn(4, 2, sr, generator=g)
    truth = Chain(torch.ones(4, N_EFFECTS), torch.rand(4, N_PARAMS, generator=g), torch.eye(N_MODES)[[0, 1, 2, 0]])
    data = {
        "chain": from_dry(dry[:, :1], truth, sr, "dry", render_labelled=False),
        "style": from_dry(dry, truth, sr, "reference", render_labelled=False),
    }

    class Fixed:
        """A reference model that always says: everything off but the gain stage, at ``gain_unit``."""

        config = argparse.Namespace(conditioning="reference")

        def __init__(self, gain_unit: float):
            self.gain_unit = gain_unit

        def __call__(self, wet, other):
            n = wet.shape[0]
            unit = torch.full((n, N_PARAMS), 0.5)
            unit[:, PARAM_SLICES["gain"]] = self.gain_unit
            active = torch.zeros(n, N_EFFECTS)
            active[:, list(SPECS).index("gain")] = 1.0
            return Chain(active, unit, torch.eye(N_MODES)[[0] * n]), None

    quiet, loud = (evaluate.evaluate_model(Fixed(u), data, sr) for u in (0.1, 0.9))
    for case in data:
        assert quiet[case]["mrstft"] == pytest.approx(loud[case]["mrstft"], rel=1e-4)
        assert quiet[case]["mel_db"] == pytest.approx(loud[case]["mel_db"], rel=1e-4)
