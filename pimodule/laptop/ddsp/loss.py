"""Multi-scale spectral loss (DDSP): L1 of linear and of log magnitudes over several FFT sizes."""

from __future__ import annotations

import auraloss
import torch

FFT_SIZES = (2048, 1024, 512, 256, 128, 64)


def multiscale_spectral_loss(fft_sizes: tuple[int, ...] = FFT_SIZES) -> torch.nn.Module:
    """auraloss's multi-resolution STFT loss set up as DDSP's: 75 % overlap Hann windows, linear
    + log magnitude L1 terms (no spectral convergence), averaged over resolutions.
    Call it on audio shaped ``(batch, channels, samples)``."""
    return auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=list(fft_sizes),
        hop_sizes=[n // 4 for n in fft_sizes],
        win_lengths=list(fft_sizes),
        w_sc=0.0,
        w_log_mag=1.0,
        w_lin_mag=1.0,
    )
