"""Spectral building blocks of the estimator's features, each with an export form that ONNX
runs without complex numbers or scatter ops:

- :func:`mel_filterbank` triangular mel filters;
- :class:`Stft` Hann-windowed frames -> real and imaginary parts (``torch.fft.rfft`` in training,
  a matmul with a cos/sin matrix after :meth:`Stft.use_matmul_dft`);
- :func:`soft_histogram` triangular soft-binning on evenly spaced centres: a scatter of each value
  into its two neighbouring bins in training (O(values)), the same sum as a dense
  values x centres weight matrix for export (``dense=True``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pimodule.core.melscale import mel_filterbank

__all__ = ["Stft", "mel_filterbank", "soft_histogram"]


class Stft(nn.Module):
    """``(batch, samples)`` -> ``(re, im)``, each ``(batch, frames, n_fft // 2 + 1)``; frames of
    ``n_fft`` samples every ``hop``, no padding (``1 + (samples - n_fft) // hop`` frames)."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.n_bins = n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.dft: torch.Tensor | None = None

    def use_matmul_dft(self, on: bool = True) -> None:
        """Compute the DFT as a matmul with cos/sin (for ONNX export: no complex ops)."""
        if not on:
            self.dft = None
            return
        k = torch.arange(self.n_bins, dtype=torch.float64)
        n = torch.arange(self.n_fft, dtype=torch.float64)
        phase = 2 * math.pi * n[:, None] * k[None] / self.n_fft
        self.dft = torch.cat([torch.cos(phase), -torch.sin(phase)], 1).float()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_frames = 1 + (x.shape[-1] - self.n_fft) // self.hop
        if self.dft is None:
            frames = x.unfold(-1, self.n_fft, self.hop)[:, :n_frames] * self.window
            re_im = torch.view_as_real(torch.fft.rfft(frames))
            return re_im[..., 0], re_im[..., 1]
        # export: frames by a constant gather index (batch stays dynamic in ONNX)
        idx = torch.arange(n_frames)[:, None] * self.hop + torch.arange(self.n_fft)[None]
        re_im = (x[:, idx] * self.window) @ self.dft
        return re_im[..., : self.n_bins], re_im[..., self.n_bins :]


def soft_histogram(values: torch.Tensor, centres: torch.Tensor, dense: bool = False) -> torch.Tensor:
    """``(batch, n)`` values -> ``(batch, bins)``: the mean over values of the triangular weights
    ``relu(1 - |v - c| / width)`` on evenly spaced ``centres`` (a value outside the centres by more
    than one width counts nowhere)."""
    width = centres[1] - centres[0]
    if dense:
        weight = torch.relu(1.0 - (values[..., None] - centres).abs() / width)
        return weight.mean(1)
    n_bins = centres.shape[0]
    u = (values - centres[0]) / width
    lo = torch.floor(u)
    frac = u - lo
    lo = lo.long()
    out = torch.zeros(values.shape[0], n_bins + 2, dtype=values.dtype, device=values.device)
    # bins -1 and n_bins collect what falls outside (dropped); the rest clamp there too
    for index, weight in ((lo, 1.0 - frac), (lo + 1, frac)):
        out.scatter_add_(1, (index.clamp(-1, n_bins) + 1), weight)
    return out[:, 1:-1] / values.shape[1]
