"""Wet-versus-dry features for the paired (dry-conditioned) estimator, which sees both signals
time-aligned:

- :class:`CrossSpectral`: per band, the wet/dry transfer function and coherence from frame-averaged
  cross-spectra, at several FFT sizes. An EQ or a gain is linear and time-invariant: coherence about
  1, and the coherent gain is the EQ curve. A compressor's gain varies with time: coherence falls a
  little in every band alike (Cauchy-Schwarz over frames). Distortion adds components that do not
  follow the dry signal: coherence falls where the harmonics land. A reverb smears the signal
  beyond a short frame: coherence falls most at the short FFT.
- :class:`BandGainCurve`: the frame gain (wet - dry level, dB, 64-sample hop) against the dry
  frame's absolute level, broadband and in three bands (a compressor bends every band alike,
  above its threshold; an EQ shifts bands apart), and the gain's time course after onsets and
  offsets of the dry signal (a compressor's attack pulls the gain down after an onset, its release
  lets it back up after an offset).

All are pooled over the window: ``(batch, out_dim)``, finite on silence, exportable to ONNX (call
``use_matmul_dft()`` first).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pimodule.laptop.fx.spectral import Stft, mel_filterbank

Spectrum = tuple[torch.Tensor, torch.Tensor]  # (re, im), each (batch, frames, bins)


def cross_features(wet: Spectrum, dry: Spectrum, fb: torch.Tensor) -> torch.Tensor:
    """Per band (rows of ``fb``): coherent gain ``log10(|S_wd| / S_dd)``, power gain
    ``0.5 log10(S_ww / S_dd)`` (both log amplitude ratios) and ``log10(1 - coherence + 1e-3)``,
    where the band's coherence ``(sum |S_wd|)^2 / (sum S_ww * sum S_dd)`` is at most 1. Spectra are
    averaged over frames; every band sum is floored at 1e-6 of the dry signal's mean band power.
    Returns ``(batch, 3 * bands)``."""
    (wr, wi), (dr, di) = wet, dry
    cross_re = (wr * dr + wi * di).mean(1)
    cross_im = (wi * dr - wr * di).mean(1)
    s_ww = (wr.square() + wi.square()).mean(1)
    s_dd = (dr.square() + di.square()).mean(1)
    cross = (cross_re.square() + cross_im.square() + 1e-20).sqrt()
    a, p_w, p_d = cross @ fb.T, s_ww @ fb.T, s_dd @ fb.T
    floor = 1e-6 * p_d.mean(-1, keepdim=True) + 1e-12
    coherent = torch.log10((a + floor) / (p_d + floor))
    power = 0.5 * torch.log10((p_w + floor) / (p_d + floor))
    # floored alike (still <= 1): a band silent in both reads 1, wet-only energy reads near 0
    coherence = ((a + floor).square() / ((p_w + floor) * (p_d + floor))).clamp(0.0, 1.0)
    return torch.cat([coherent, power, torch.log10(1.0 - coherence + 1e-3)], -1)


class CrossSpectral(nn.Module):
    """:func:`cross_features` at each ``(n_fft, hop, n_bands)`` of ``sizes`` (mel-spaced bands)."""

    def __init__(self, sample_rate: int, sizes=((256, 128, 16), (1024, 256, 32))):
        super().__init__()
        self.sizes = tuple(tuple(s) for s in sizes)
        self.stfts = nn.ModuleList(Stft(n_fft, hop) for n_fft, hop, _ in self.sizes)
        for i, (n_fft, _, n_bands) in enumerate(self.sizes):
            fb = torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_bands))
            if torch.any(fb.sum(1) <= 0):
                raise ValueError(f"{n_bands} bands leave some empty at n_fft {n_fft}")
            self.register_buffer(f"fb{i}", fb, persistent=False)
        self.out_dim = 3 * sum(n for _, _, n in self.sizes)

    def use_matmul_dft(self, on: bool = True) -> None:
        for stft in self.stfts:
            stft.use_matmul_dft(on)

    def forward(
        self,
        wet: torch.Tensor,
        dry: torch.Tensor,
        given: dict[tuple[int, int], tuple[Spectrum, Spectrum]] | None = None,
    ) -> torch.Tensor:
        """``given`` maps ``(n_fft, hop)`` to already computed (wet, dry) spectra (the frontend's)."""
        out = []
        for i, (stft, (n_fft, hop, _)) in enumerate(zip(self.stfts, self.sizes)):
            pair = (given or {}).get((n_fft, hop))
            w, d = pair if pair is not None else (stft(wet), stft(dry))
            out.append(cross_features(w, d, getattr(self, f"fb{i}")))
        return torch.cat(out, -1)


def band_matrix(sample_rate: int, n_fft: int, edges_hz=(500.0, 3000.0)) -> np.ndarray:
    """``(1 + len(edges) + 1, bins)`` 0/1 rows: all bins, then the bands between the edges."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    bounds = [0.0, *edges_hz, sample_rate / 2 + 1.0]
    rows = [np.ones_like(freqs)] + [(freqs >= lo) & (freqs < hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    return np.stack(rows).astype(np.float32)


class BandGainCurve(nn.Module):
    """Frame gain against absolute dry level per band, soft-binned over ``level_range_db``
    (mean gain / 10 and log occupancy per bin), plus the broadband gain's response to dry onsets
    and offsets (see the module doc): ``(batch, out_dim)``."""

    def __init__(
        self,
        sample_rate: int,
        n_fft: int = 256,
        hop: int = 64,
        n_bins: int = 16,
        level_range_db=(-75.0, 0.0),
        lags=(0, 1, 2, 4, 8, 16, 32),
        step_db: float = 6.0,
    ):
        super().__init__()
        self.stft = Stft(n_fft, hop)
        bands = torch.from_numpy(band_matrix(sample_rate, n_fft))
        # one-sided power -> mean square of the signal (white noise of variance s2 reads s2 broadband)
        self.register_buffer(
            "bands", bands / float(torch.hann_window(n_fft).square().sum() * n_fft / 2), persistent=False
        )
        self.register_buffer("centres", torch.linspace(*level_range_db, n_bins), persistent=False)
        self.lags, self.step_db = tuple(lags), step_db
        self.n_bands = bands.shape[0]
        self.out_dim = 2 * n_bins * self.n_bands + 2 * (len(self.lags) + 1)

    def use_matmul_dft(self, on: bool = True) -> None:
        self.stft.use_matmul_dft(on)

    def _level_db(self, x: torch.Tensor) -> torch.Tensor:
        re, im = self.stft(x)
        return 10.0 * torch.log10((re.square() + im.square()) @ self.bands.T + 1e-10)  # (B, T, bands)

    def _onset_response(self, dry_db: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """Mean gain change ``gain[t + lag] - gain[t - 1]`` after frames where the dry level rises
        (falls) by more than ``step_db``, weighted by how much; and the log share of such frames."""
        rise = dry_db[:, 1:] - dry_db[:, :-1]  # frame t (>= 1) against t - 1
        before = gain[:, :-1]
        n = rise.shape[1]
        out = []
        for sign in (1.0, -1.0):
            w = torch.relu(sign * rise - self.step_db)[:, : n - max(self.lags)]
            total = w.sum(1)
            for lag in self.lags:
                after = gain[:, 1 + lag : 1 + lag + w.shape[1]]
                change = after - before[:, : w.shape[1]]
                out.append((w * change).sum(1) / (total + 1e-3) / 10.0)
            out.append(torch.log10(total / w.shape[1] + 1e-4))
        return torch.stack(out, -1)

    def forward(self, wet: torch.Tensor, dry: torch.Tensor) -> torch.Tensor:
        wet_db, dry_db = self._level_db(wet), self._level_db(dry)
        gain = (wet_db - dry_db).clamp(-40.0, 40.0)
        level = dry_db.clamp(-90.0, 10.0)
        width = self.centres[1] - self.centres[0]
        weight = torch.relu(1.0 - (level[..., None] - self.centres).abs() / width)  # (B, T, bands, bins)
        total = weight.sum(1)
        mean_gain = (weight * gain[..., None]).sum(1) / (total + 1e-3)
        curve = torch.cat([mean_gain / 10.0, torch.log10(total / weight.shape[1] + 1e-4)], -1)
        return torch.cat([curve.flatten(1), self._onset_response(dry_db[..., 0], gain[..., 0])], -1)
