"""Style transfer's decision (pimodule.laptop.fx.style.choose_for_reference): what reaches the user
is never further from the reference's sound than the input left as it is, the reference's own
chain is found on the same content, and nothing is added when the reference sounds as the input."""

from __future__ import annotations

import pytest
import torch

from pimodule.core.fx_specs import EFFECT_NAMES, SELECTABLE
from pimodule.laptop.fx.chain import Chain, sample_chain
from pimodule.laptop.fx.refine import render
from pimodule.laptop.fx.style import choose_for_reference

RATE = 16000


def _source(seed: int, seconds: float = 1.5) -> torch.Tensor:
    """Notes with an attack and decay over a little noise: something each effect changes."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * RATE)) / RATE
    x = torch.zeros_like(t)
    for k in range(6):
        start = k * seconds / 6
        f = 110.0 * 2 ** (float(torch.randint(0, 24, (1,), generator=g)) / 12)
        env = torch.where(t >= start, torch.exp(-(t - start) * 6.0), torch.zeros_like(t))
        x = x + 0.3 * env * torch.sin(2 * torch.pi * f * t) * (t >= start)
    return x + 0.01 * torch.randn(t.shape, generator=g)


def _on(chain: Chain, effects) -> Chain:
    active = torch.zeros_like(chain.active)
    for e in (*effects, "gain"):
        active[0, EFFECT_NAMES.index(e)] = 1.0
    return Chain(active, chain.unit, chain.mode_weights)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_never_further_from_the_reference_than_the_input_as_it_is(seed):
    g = torch.Generator().manual_seed(seed)
    x, a = _source(10 + seed), _source(20 + seed)
    truth, guess = sample_chain(1, g, min_active=2), sample_chain(1, g, p_active=0.8)
    reference = render(a, RATE, truth)[0]
    reference = reference * (0.05 / reference.square().mean().sqrt())  # within the gain stage's reach
    r = choose_for_reference(x, reference, RATE, guess)
    assert r.distance[0] <= r.level_only[0] + 1e-9
    played = render(x, RATE, r.chain)[0]  # at the reference's level, whatever gain the estimate had
    level_db = 20 * torch.log10(played.square().mean().sqrt() / reference.square().mean().sqrt())
    assert abs(float(level_db)) < 0.1
    assert set(r.confidence) == set(SELECTABLE) and torch.isfinite(r.chain.unit).all()
    for e in SELECTABLE:  # nothing the estimate left off is switched on
        if guess.active[0, EFFECT_NAMES.index(e)] < 0.5:
            assert r.chain.active[0, EFFECT_NAMES.index(e)] == 0


def test_a_reference_that_sounds_as_the_input_gets_nothing_added():
    x = _source(5)
    chain = _on(sample_chain(1, torch.Generator().manual_seed(5)), SELECTABLE)
    r = choose_for_reference(x, x.clone(), RATE, chain)
    assert r.choice == "level only"
    assert all(r.chain.active[0, EFFECT_NAMES.index(e)] == 0 for e in SELECTABLE)


def test_the_references_own_chain_is_kept_on_the_same_content():
    x = _source(7)
    unit = torch.full((1, sample_chain(1, torch.Generator().manual_seed(0)).unit.shape[1]), 0.5)
    mode = torch.tensor([[0.0, 0.0, 1.0]])
    truth = _on(Chain(torch.zeros(1, len(EFFECT_NAMES)), unit, mode), ("distortion", "reverb"))
    truth.unit[0, :] = 0.9  # strong settings: clearly heard
    reference = render(x, RATE, truth)[0]
    r = choose_for_reference(x, reference, RATE, truth)
    assert r.distance[0] < 0.5 * r.level_only[0]
    kept = {e for e in SELECTABLE if r.chain.active[0, EFFECT_NAMES.index(e)] > 0.5}
    assert kept and kept <= {"distortion", "reverb"}
