"""Distances: parity with auraloss, zero on identical signals, per-example shape."""

from __future__ import annotations

import auraloss
import torch

from pimodule.laptop.fx.losses import FFT_SIZES, mel_distance, mrstft


def test_mrstft_matches_auraloss():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(3, 4000, generator=g)
    y_hat = y * 0.5 + 0.1 * torch.randn(3, 4000, generator=g)
    ref = auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=list(FFT_SIZES), hop_sizes=[n // 4 for n in FFT_SIZES], win_lengths=list(FFT_SIZES), eps=1e-7
    )
    ours = torch.stack([mrstft(y_hat[i : i + 1], y[i : i + 1])[0] for i in range(3)])
    want = torch.stack([ref(y_hat[i : i + 1, None], y[i : i + 1, None]) for i in range(3)])
    assert torch.allclose(ours, want, rtol=1e-3, atol=1e-4)


def test_distances_zero_on_identity_and_grow_with_difference():
    y = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(mrstft(y, y), torch.zeros(2), atol=1e-6)
    assert torch.allclose(mel_distance(y, y, 16000), torch.zeros(2), atol=1e-6)
    assert (mel_distance(y * 0.5, y, 16000) - 20 * torch.log10(torch.tensor(2.0))).abs().max() < 0.05
    assert (mrstft(0.9 * y, y) < mrstft(0.5 * y, y)).all()


def test_teacher_forcing_renders_with_the_true_decisions():
    from pimodule.laptop.fx.chain import N_EFFECTS, N_MODES, N_PARAMS, Chain, apply_chain
    from pimodule.laptop.fx.losses import estimator_loss

    g = torch.Generator().manual_seed(2)
    x = 0.1 * torch.randn(2, 4000, generator=g)
    truth = Chain(
        torch.tensor([[0.0, 0.0, 1.0, 0.0, 1.0]] * 2), torch.rand(2, N_PARAMS, generator=g), torch.eye(N_MODES)[[0, 0]]
    )
    wet = apply_chain(x[:, None], 16000, truth)[:, 0]
    # right parameters, wrong decisions (every effect half on, the wrong curve)
    pred = Chain(torch.full((2, N_EFFECTS), 0.5), truth.unit.clone().requires_grad_(), torch.eye(N_MODES)[[2, 2]])
    logits = torch.zeros(2, N_EFFECTS), torch.zeros(2, N_MODES)
    _, forced = estimator_loss("audio", pred, *logits, truth, x, wet, 16000, teacher_forcing=True)
    _, free = estimator_loss("audio", pred, *logits, truth, x, wet, 16000)
    assert forced["audio"] < 1e-3 < free["audio"]


def test_select_weight_scales_only_the_selection_term():
    import math

    from pimodule.laptop.fx.chain import N_EFFECTS, N_MODES, N_PARAMS, Chain
    from pimodule.laptop.fx.losses import estimator_loss

    g = torch.Generator().manual_seed(3)
    x = 0.1 * torch.randn(2, 2000, generator=g)
    truth = Chain(
        torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0]] * 2), torch.rand(2, N_PARAMS, generator=g), torch.eye(N_MODES)[[1, 1]]
    )
    pred = Chain(torch.full((2, N_EFFECTS), 0.5), torch.rand(2, N_PARAMS, generator=g), torch.eye(N_MODES)[[0, 0]])
    logits = torch.zeros(2, N_EFFECTS), torch.zeros(2, N_MODES)
    one, parts = estimator_loss("hybrid", pred, *logits, truth, x, x, 16000)
    three, _ = estimator_loss("hybrid", pred, *logits, truth, x, x, 16000, select_weight=3.0)
    assert math.isclose(parts["select"], math.log(2), rel_tol=1e-6)  # zero logits: BCE = ln 2
    assert math.isclose(float(three - one), 2 * parts["select"], rel_tol=1e-5)


def test_change_logits_are_zero_at_the_threshold_and_clamped():
    from pimodule.laptop.fx.losses import change_logits

    got = change_logits(torch.tensor([0.0, 1.5, 2.5, 1.0, 20.0]), 1.5)
    assert torch.equal(got, torch.tensor([-3.0, 0.0, 2.0, -1.0, 6.0]))


def test_graded_selection_term_is_the_smooth_l1_to_the_change_logits():
    import math

    from pimodule.core.fx_specs import EFFECT_NAMES, SELECTABLE
    from pimodule.laptop.fx.chain import N_EFFECTS, N_MODES, N_PARAMS, Chain
    from pimodule.laptop.fx.losses import estimator_loss

    g = torch.Generator().manual_seed(4)
    x = 0.1 * torch.randn(1, 2000, generator=g)
    truth = Chain(
        torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0]]), torch.rand(1, N_PARAMS, generator=g), torch.eye(N_MODES)[[0]]
    )
    change = torch.zeros(1, N_EFFECTS)
    cols = [EFFECT_NAMES.index(n) for n in SELECTABLE]
    change[0, cols] = torch.tensor([1.5, 2.0, 4.0, 0.0])  # logits asked for: 0, 1, 5, -3
    logits = torch.zeros(1, N_EFFECTS), torch.zeros(1, N_MODES)
    args = (
        "param",
        Chain(*(torch.full_like(t, 0.5) for t in (truth.active, truth.unit, truth.mode_weights))),
        *logits,
        truth,
        x,
        x,
        16000,
    )
    base, parts = estimator_loss(*args)
    graded, graded_parts = estimator_loss(*args, change=change, change_weight=2.0)
    # smooth L1 (beta 1) of 0, 1, 5, 3: 0, 0.5, 4.5, 2.5 -> mean 1.875
    assert "change" not in parts and math.isclose(graded_parts["change"], 1.875, rel_tol=1e-6)
    assert math.isclose(float(graded - base), 2.0 * 1.875, rel_tol=1e-5)
