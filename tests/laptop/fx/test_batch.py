"""Examples and their labels: an effect is "in the chain" when it is audible."""

from __future__ import annotations

import numpy as np
import torch

from pimodule.core.fx_specs import EFFECT_NAMES, SELECTABLE, SPECS
from pimodule.laptop.fx.batch import (
    AUDIBLE_DB,
    INAUDIBLE_DB,
    audible_chain,
    from_dry,
    removal_change,
    removal_labels,
    render_stages,
    selection_correct,
)
from pimodule.laptop.fx.chain import N_EFFECTS, N_MODES, N_PARAMS, PARAM_SLICES, Chain, apply_chain, sample_chain

SR = 16000


def _dry(batch: int, n: int = 8000, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    env = np.where((t * 4) % 1 < 0.5, 1.0, 0.05)  # bursts: dynamics for the compressor
    x = env * (np.sin(2 * np.pi * 220 * t) + 0.3 * rng.standard_normal((batch, n)))
    return torch.tensor(0.05 * x, dtype=torch.float32)


def _chain(on: dict[str, bool], values: dict[str, dict[str, float]], mode: int = 0) -> Chain:
    active = torch.tensor([[float(on.get(n, False)) for n in EFFECT_NAMES]])
    unit = torch.full((1, N_PARAMS), 0.5)
    for name, params in values.items():
        for k, v in params.items():
            unit[0, PARAM_SLICES[name].start + SPECS[name].index(k)] = float(SPECS[name][k].to_unit(v))
    return Chain(active, unit, torch.nn.functional.one_hot(torch.tensor([mode]), N_MODES).float())


def test_inaudible_effects_count_as_off_and_audible_ones_as_on():
    x = _dry(1)
    chain = _chain(
        {"compressor": True, "distortion": True},
        {
            "compressor": {"threshold_db": 0.0, "ratio": 1.0, "makeup_db": 12.0},  # only a level change
            "distortion": {"drive_db": 36.0},
        },
    )  # hard clipping, driven far
    labelled, y, rendered = audible_chain(x, SR, chain)
    on = dict(zip(EFFECT_NAMES, labelled.active[0].tolist()))
    assert on["compressor"] == 0.0 and on["distortion"] == 1.0 and on["eq"] == 0.0
    assert torch.allclose(y, apply_chain(x[:, None], SR, labelled)[:, 0], atol=1e-6)
    assert torch.equal(rendered.active, labelled.active)
    # evaluation keeps the drawn audio: the inaudible compressor's +12 dB makeup stays in it
    kept, y_drawn, drawn = audible_chain(x, SR, chain, render_labelled=False)
    assert torch.equal(kept.active, labelled.active) and drawn.active[0, EFFECT_NAMES.index("compressor")] == 1
    assert torch.allclose(y_drawn, apply_chain(x[:, None], SR, drawn)[:, 0], atol=1e-6)
    only = _chain({"compressor": True}, {"compressor": {"threshold_db": 0.0, "ratio": 1.0, "makeup_db": 12.0}})
    _, y_off, _ = audible_chain(x, SR, only)
    _, y_kept, _ = audible_chain(x, SR, only, render_labelled=False)
    assert torch.allclose(y_off, x)
    assert torch.allclose(y_kept, x * 10 ** (12 / 20), atol=1e-5)


def test_gain_is_the_always_on_level_stage_at_0_db_when_it_was_off():
    x = _dry(1)
    labelled, y, _ = audible_chain(x, SR, _chain({"gain": False}, {"gain": {"gain_db": 18.0}}))
    assert labelled.active[0, EFFECT_NAMES.index("gain")] == 1.0
    assert float(SPECS["gain"]["gain_db"].from_unit(labelled.unit[0, PARAM_SLICES["gain"]])) == 0.0
    assert torch.allclose(y, x)


def test_redrawn_chains_have_no_effect_between_inaudible_and_audible():
    x = _dry(24, seed=1)
    gen = torch.Generator().manual_seed(0)
    labelled, y, _ = audible_chain(x, SR, sample_chain(24, gen), gen)
    _, change = render_stages(x, SR, labelled)
    on = labelled.active >= 0.5
    sel = [EFFECT_NAMES.index(n) for n in SELECTABLE]
    assert torch.all(labelled.active[:, EFFECT_NAMES.index("gain")] == 1)
    on_sel = on[:, sel]
    assert torch.all(change[:, sel][on_sel] >= 0.5 * (INAUDIBLE_DB + AUDIBLE_DB))
    unclear = (change[:, sel] > INAUDIBLE_DB) & (change[:, sel] < AUDIBLE_DB)
    assert unclear.float().mean() <= 0.05  # a few may remain after the last redraw
    assert torch.all(torch.isfinite(y))


def test_reference_mode_renders_both_parts_with_the_labelled_chain():
    dry = torch.stack([_dry(3, seed=2), _dry(3, seed=3)], 1)
    gen = torch.Generator().manual_seed(5)
    batch = from_dry(dry, sample_chain(3, gen), SR, "reference", gen)
    assert torch.allclose(batch.target, apply_chain(dry[:, 1:2], SR, batch.chain)[:, 0], atol=1e-6)
    assert batch.chain.active.shape == (3, N_EFFECTS)


def test_selection_counts_the_four_selectable_effects_only():
    truth = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0]])
    pred = torch.tensor([[0.9, 0.2, 0.7, 0.1, 0.0]])  # gain decided wrong: not counted
    correct = selection_correct(pred, truth)
    assert correct.shape == (1, len(SELECTABLE)) and bool(correct.all())
    assert not bool(selection_correct(torch.tensor([[0.1, 0.2, 0.7, 0.1, 1.0]]), truth).all())


def test_clear_marks_exactly_the_effects_between_inaudible_and_audible():
    x = _dry(32, seed=2)
    chain = sample_chain(32, torch.Generator().manual_seed(5))
    batch = from_dry(x[:, None], chain, SR, "dry", render_labelled=False)  # kept as drawn: no redraws
    _, change = render_stages(x, SR, batch.rendered)
    sel = [EFFECT_NAMES.index(n) for n in SELECTABLE]
    drawn_on = batch.rendered.active[:, sel] >= 0.5
    between = drawn_on & (change[:, sel] > INAUDIBLE_DB) & (change[:, sel] < AUDIBLE_DB)
    assert batch.clear.shape == (32, len(SELECTABLE))
    assert torch.equal(batch.clear, ~between)
    assert bool(between.any()) and bool((~between).any())  # this draw has both kinds
    # training batches are redrawn until every effect is clear
    trained = from_dry(x[:, None], chain, SR, "dry", torch.Generator().manual_seed(0))
    assert float(trained.clear.float().mean()) > float(batch.clear.float().mean())


def test_change_is_the_labelled_stage_change_the_labels_threshold():
    x = _dry(32, seed=3)
    chain = sample_chain(32, torch.Generator().manual_seed(6))
    for batch in (
        from_dry(x[:, None], chain, SR, "dry", render_labelled=False),
        from_dry(x[:, None], chain, SR, "dry", torch.Generator().manual_seed(1)),
    ):
        sel = [EFFECT_NAMES.index(n) for n in SELECTABLE]
        on = batch.chain.active[:, sel] >= 0.5
        change = batch.change[:, sel]
        assert batch.change.shape == (32, N_EFFECTS)
        assert torch.all(change[~on] == 0)
        assert torch.all(change[on] >= 0.5 * (INAUDIBLE_DB + AUDIBLE_DB))
        assert bool(on.any()) and bool((~on).any())
    # kept as drawn, the change is render_stages' own for every effect heard
    kept = from_dry(x[:, None], chain, SR, "dry", render_labelled=False)
    _, drawn_change = render_stages(x, SR, kept.rendered)
    on = kept.chain.active >= 0.5
    assert torch.allclose(kept.change[on], drawn_change[on])


def test_removal_labels_threshold_what_removing_each_effect_changes_in_the_output():
    """Kept as drawn, the removal labels are the drawn effects whose removal changes the output by
    the labelling threshold; on this draw a reverb with a high mix hides a mild distortion, which
    its own stage's change counts on."""
    x = _dry(64, seed=5)
    chain = sample_chain(64, torch.Generator().manual_seed(3))
    stage = from_dry(x[:, None], chain, SR, "dry", render_labelled=False)
    removal = from_dry(x[:, None], chain, SR, "dry", render_labelled=False, labels="removal")
    assert torch.equal(stage.rendered.active, removal.rendered.active)  # the same audio
    assert torch.equal(stage.target, removal.target)
    change = removal_change(x, SR, removal.rendered, removal.target)
    drawn = removal.rendered.active >= 0.5
    sel = [EFFECT_NAMES.index(n) for n in SELECTABLE]
    expect = drawn[:, sel] & (change[:, sel] >= 0.5 * (INAUDIBLE_DB + AUDIBLE_DB))
    assert torch.equal(removal.chain.active[:, sel] >= 0.5, expect)
    assert torch.all(removal.chain.active[:, EFFECT_NAMES.index("gain")] == 1.0)
    assert torch.equal(removal_labels(x, SR, stage.rendered, stage.target), removal.chain.active)
    differ = (stage.chain.active[:, sel] >= 0.5) != expect
    assert 0 < int(differ.sum()) < 16  # the two definitions mostly agree, not always
    dist = EFFECT_NAMES.index("distortion")
    masked = (
        (stage.chain.active[:, dist] == 1)
        & (removal.chain.active[:, dist] == 0)
        & (removal.rendered.active[:, EFFECT_NAMES.index("reverb")] == 1)
    )
    assert bool(masked.any())


def test_a_single_effect_changes_the_same_either_way():
    x = _dry(16, seed=4)
    active = torch.zeros(16, N_EFFECTS)
    active[:, EFFECT_NAMES.index("eq")] = 1.0
    active[:, EFFECT_NAMES.index("gain")] = 1.0
    unit = torch.rand(16, N_PARAMS, generator=torch.Generator().manual_seed(2))
    unit[:, PARAM_SLICES["gain"]] = float(SPECS["gain"]["gain_db"].to_unit(0.0))
    chain = Chain(active, unit, torch.nn.functional.one_hot(torch.zeros(16, dtype=torch.long), N_MODES).float())
    y, stage = render_stages(x, SR, chain)
    assert torch.allclose(removal_change(x, SR, chain, y), stage, atol=1e-4)


def test_unknown_label_definition_is_refused():
    import pytest

    with pytest.raises(ValueError, match="labels must be one of"):
        from_dry(_dry(1)[:, None], sample_chain(1, torch.Generator().manual_seed(0)), SR, "dry", labels="loudness")
