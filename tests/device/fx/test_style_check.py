"""The module's check of a reference model's estimate (pimodule.device.fx.style_check): the numpy
features are the torch ones, the decisions are the laptop's (choose_for_reference), never further
from the reference's sound than the input as it is, bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pimodule.core.fx_specs import DISTORTION_MODES, EFFECT_NAMES, SELECTABLE, SPECS
from pimodule.device.fx.style_check import ReferenceCheck, style_features
from pimodule.laptop.fx.batch import render_stages
from pimodule.laptop.fx.chain import N_MODES, PARAM_SLICES, Chain, describe, sample_chain
from pimodule.laptop.fx.style import choose_for_reference
from pimodule.laptop.fx.style import style_features as torch_style_features


def _content(sample_rate: int, seed: int, seconds: float = 1.0) -> torch.Tensor:
    """A plucked two-note tone with a little noise: different notes and rhythm per seed."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    f = 150.0 + 200.0 * float(torch.rand(1, generator=gen))
    period = 0.15 + 0.2 * float(torch.rand(1, generator=gen))
    env = torch.exp(-8 * (t % period))
    tone = sum(torch.sin(2 * torch.pi * f * r * k * t) / k for r in (1.0, 1.5) for k in (1, 2, 3))
    return 0.2 * env * tone + 0.01 * torch.randn(t.shape, generator=gen)


@pytest.mark.parametrize("sample_rate", [16000, 22050])
def test_numpy_features_are_the_torch_ones(sample_rate):
    x = _content(sample_rate, 1)
    y = torch.tanh(6 * x)
    for a in (x, y):
        np.testing.assert_allclose(
            style_features(a.numpy(), sample_rate), torch_style_features(a[None], sample_rate)[0].numpy(), atol=2e-3
        )
    assert np.abs(style_features(y.numpy(), sample_rate) - style_features(x.numpy(), sample_rate)).mean() > 0.5


@pytest.mark.parametrize("sample_rate", [16000, 22050])
def test_decisions_are_the_laptops_and_never_further_than_the_input(sample_rate):
    n = 10
    gen = torch.Generator().manual_seed(sample_rate + 1)
    truth = sample_chain(n, gen).hard()
    check = ReferenceCheck(sample_rate)
    cols = [EFFECT_NAMES.index(e) for e in SELECTABLE]
    differ, kept = 0, 0
    for i in range(n):
        a, b = _content(sample_rate, 2 * i), _content(sample_rate, 2 * i + 1)  # other notes, other rhythm
        reference, _ = render_stages(
            a[None], sample_rate, Chain(truth.active[i : i + 1], truth.unit[i : i + 1], truth.mode_weights[i : i + 1])
        )
        unit = (truth.unit[i : i + 1] + 0.08 * torch.randn(truth.unit[i : i + 1].shape, generator=gen)).clamp(0, 1)
        prob = (0.6 * truth.active[i : i + 1] + 0.4 * torch.rand(1, len(EFFECT_NAMES), generator=gen)).clamp(0, 1)
        guess = Chain(prob, unit, truth.mode_weights[i : i + 1])
        laptop = choose_for_reference(b, reference[0], sample_rate, guess.hard(), guess.active)
        out = check(b.numpy(), reference[0].numpy(), describe(guess, 0))
        mine = np.array([out[e]["active"] for e in SELECTABLE])
        differ += int(np.any(mine != (laptop.chain.active[0, cols].numpy() >= 0.5)))
        kept += int(mine.any())
        scores = check.last["candidates"]
        picked = tuple(e for e in SELECTABLE if out[e]["active"])
        assert scores[picked][0] <= scores[()][0] + 1e-12  # never further than the input as it is
        assert set(out) == set(EFFECT_NAMES) and all(out[e]["confidence"] for e in SELECTABLE)
        laptop_gain = SPECS["gain"]["gain_db"].from_unit(float(laptop.chain.unit[0, PARAM_SLICES["gain"]][0]))
        assert out["gain"]["params"]["gain_db"] == pytest.approx(laptop_gain, abs=0.1)
    assert differ == 0 and kept >= 3


def test_a_heard_clipper_stays_and_a_flat_eq_goes():
    sr = 16000
    a, b = _content(sr, 10), _content(sr, 11)
    active = torch.zeros(1, len(EFFECT_NAMES))
    active[0, EFFECT_NAMES.index("distortion")] = active[0, EFFECT_NAMES.index("gain")] = 1.0
    unit = sample_chain(1, torch.Generator().manual_seed(0)).hard().unit.clone()
    for name, value in (("drive_db", 24.0), ("output_gain_db", -12.0)):
        unit[0, PARAM_SLICES["distortion"].start + SPECS["distortion"].index(name)] = float(
            SPECS["distortion"][name].to_unit(value)
        )
    for j, spec in enumerate(SPECS["eq"]):  # a flat EQ: it changes nothing when switched on
        if spec.name.endswith("gain_db"):
            unit[0, PARAM_SLICES["eq"].start + j] = float(spec.to_unit(0.0))
    clipped = Chain(active, unit, torch.eye(N_MODES)[DISTORTION_MODES.index("hard")][None])
    reference, _ = render_stages(a[None], sr, clipped)
    guess = describe(clipped, 0)
    guess["eq"].update(active=True, probability=0.7)
    out = ReferenceCheck(sr)(b.numpy(), reference[0].numpy(), guess)
    assert {e: out[e]["active"] for e in SELECTABLE} == {
        "eq": False,
        "compressor": False,
        "distortion": True,
        "reverb": False,
    }
    assert out["distortion"]["confidence"].startswith("on") and out["eq"]["confidence"].startswith("off")
    assert guess["eq"]["active"] is True  # the caller's estimate is not changed
    ref_rms = float(reference.square().mean().sqrt())
    assert 20 * np.log10(ref_rms) == pytest.approx(
        20
        * np.log10(
            float(
                np.sqrt(
                    np.mean(ReferenceCheck(sr)._twins.chain(b.numpy().astype(np.float64), out, ["distortion"]) ** 2)
                )
            )
        )
        + out["gain"]["params"]["gain_db"],
        abs=0.05,
    )  # the level is the reference's


def test_bad_input_is_refused():
    sr = 16000
    check = ReferenceCheck(sr)
    est = describe(sample_chain(1, torch.Generator().manual_seed(2)).hard(), 0)
    x = _content(sr, 3).numpy()
    with pytest.raises(ValueError, match="1024"):
        check(x[:100], x, est)
    bad = x.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match="finite"):
        check(x, bad, est)
    with pytest.raises(KeyError, match="reverb"):
        check(x, x, {k: v for k, v in est.items() if k != "reverb"})
