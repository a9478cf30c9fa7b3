import math

import torch

from pimodule.laptop.ddsp.loss import multiscale_spectral_loss


def test_loss_of_identical_signals_is_zero():
    x = torch.randn(2, 1, 8000, generator=torch.Generator().manual_seed(0))
    assert multiscale_spectral_loss()(x, x).item() < 1e-6


def test_loss_of_a_doubled_signal_has_the_exact_value():
    # |2X| - |X| = |X| per bin and log|2X| - log|X| = log 2, so the loss is the mean over
    # resolutions of mean|X| + log 2.
    gen = torch.Generator().manual_seed(1)
    x = 0.1 * torch.randn(1, 1, 8000, generator=gen)
    sizes = (512, 128)
    loss = multiscale_spectral_loss(sizes)(2 * x, x).item()
    mags = []
    for n in sizes:
        spec = torch.stft(x[0], n, n // 4, n, torch.hann_window(n), return_complex=True)
        mags.append(spec.abs().mean().item())
    expected = sum(mags) / len(mags) + math.log(2.0)
    assert abs(loss - expected) < 1e-3 * expected


def test_loss_grows_with_distance():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 1, 8000, generator=gen)
    n = torch.randn(1, 1, 8000, generator=gen)
    f = multiscale_spectral_loss()
    assert f(x + 0.01 * n, x) < f(x + 0.1 * n, x) < f(x + 1.0 * n, x)
