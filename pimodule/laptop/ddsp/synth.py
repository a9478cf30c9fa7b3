"""DDSP synthesizers in torch: harmonic oscillator bank and filtered noise, streaming by design.

Every function takes frame-rate controls plus explicit state and returns audio plus the next
state, so the same code trains on whole phrases, renders files and runs one frame at a time in
the exported ONNX graph. Frame values are linearly ramped from the previous frame's value to the
current one over each hop (a one-hop control delay that makes block-by-block equal to
whole-signal rendering exactly).

Shapes: frame controls ``(batch, n_frames[, n])``; audio ``(batch, n_frames * hop_size)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

TWO_PI = 2.0 * math.pi


def ramp_frames(prev: torch.Tensor, frames: torch.Tensor, hop_size: int) -> torch.Tensor:
    """Per-sample values ramping linearly from the previous frame to each frame.

    prev ``(B, 1, *rest)``, frames ``(B, F, *rest)`` → ``(B, F * hop_size, *rest)``.
    """
    start = torch.cat([prev, frames[:, :-1]], dim=1)
    w = torch.arange(1, hop_size + 1, dtype=frames.dtype, device=frames.device) / hop_size
    w = w.reshape((1, 1, hop_size) + (1,) * (frames.dim() - 2))
    ramp = start.unsqueeze(2) + (frames - start).unsqueeze(2) * w
    return ramp.reshape((frames.shape[0], -1) + tuple(frames.shape[2:]))


def harmonic_frame_amplitudes(
    amplitude: torch.Tensor, distribution: torch.Tensor, f0_hz: torch.Tensor, sample_rate: int
) -> torch.Tensor:
    """Per-frame harmonic amplitudes: the distribution without harmonics at or above Nyquist,
    renormalised, times the overall amplitude. amplitude ``(B, F)``, distribution ``(B, F, K)``."""
    k = torch.arange(1, distribution.shape[-1] + 1, dtype=f0_hz.dtype, device=f0_hz.device)
    audible = (f0_hz.unsqueeze(-1) * k < sample_rate / 2).to(distribution.dtype)
    dist = distribution * audible
    dist = dist / (dist.sum(-1, keepdim=True) + 1e-7)
    return dist * amplitude.unsqueeze(-1)


def harmonic_synth(
    f0_hz: torch.Tensor,
    amplitudes: torch.Tensor,
    sample_rate: int,
    *,
    hop_size: int,
    phase: torch.Tensor,
    prev_f0_hz: torch.Tensor,
    prev_amplitudes: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive synthesis of harmonics k * f0 (k = 1..K), phase-continuous across calls.

    f0_hz ``(B, F)``, amplitudes ``(B, F, K)``; state: phase ``(B, 1)`` float64 in [0, 2π),
    prev_f0_hz ``(B, 1)``, prev_amplitudes ``(B, 1, K)``. Returns audio ``(B, F*hop)`` and the
    next phase. Any harmonic at or above Nyquist is silent sample by sample.
    """
    f0_s = ramp_frames(prev_f0_hz, f0_hz, hop_size)  # (B, T)
    amps_s = ramp_frames(prev_amplitudes, amplitudes, hop_size)  # (B, T, K)
    # Phase in float64, wrapped: whole phrases and single frames give the same phase to ~1e-9.
    # Constants as float64 tensors: the ONNX exporter rounds Python scalars to float32.
    two_pi = torch.tensor(TWO_PI, dtype=torch.float64, device=f0_hz.device)
    step = torch.tensor(TWO_PI / sample_rate, dtype=torch.float64, device=f0_hz.device)
    unwrapped = phase + torch.cumsum(f0_s.to(torch.float64) * step, dim=1)
    wrapped = unwrapped - two_pi * torch.floor(unwrapped / two_pi)
    k = torch.arange(1, amplitudes.shape[-1] + 1, dtype=f0_hz.dtype, device=f0_hz.device)
    audible = (f0_s.unsqueeze(-1) * k < sample_rate / 2).to(amps_s.dtype)
    theta = wrapped.to(f0_hz.dtype).unsqueeze(-1) * k
    audio = (torch.sin(theta) * amps_s * audible).sum(-1)
    return audio, wrapped[:, -1:]


def noise_fir_basis(n_bands: int) -> torch.Tensor:
    """Matrix mapping ``n_bands`` magnitudes (0..Nyquist) to a Hann-windowed linear-phase FIR of
    ``2 * (n_bands - 1)`` taps: the inverse real DFT of a zero-phase response, centred."""
    n_taps = 2 * (n_bands - 1)
    n = torch.arange(n_taps, dtype=torch.float64) - n_taps // 2
    k = torch.arange(n_bands, dtype=torch.float64)
    weight = torch.full((n_bands,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    weight[-1] = 1.0
    basis = weight * torch.cos(TWO_PI * n.unsqueeze(1) * k / n_taps) / n_taps  # (taps, bands)
    window = torch.hann_window(n_taps, periodic=False, dtype=torch.float64).unsqueeze(1)
    return (basis * window).to(torch.float32)


def noise_tables(lengths: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two uniform white-noise tables of coprime lengths; their sum repeats only after
    lengths[0] * lengths[1] samples (about 70 minutes at 16 kHz for the defaults)."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(n, generator=gen) * 2.0 - 1.0 for n in lengths)  # type: ignore[return-value]


def table_noise(
    table_a: torch.Tensor, table_b: torch.Tensor, position: torch.Tensor, n_samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic white noise from a running int64 position ``(B, 1)``: identical in torch and
    ONNX, and identical whether rendered whole or block by block."""
    len_a, len_b = table_a.shape[0], table_b.shape[0]
    idx = position + torch.arange(n_samples, dtype=torch.int64, device=position.device)
    noise = (table_a[torch.remainder(idx, len_a)] + table_b[torch.remainder(idx, len_b)]) * (1.0 / math.sqrt(2.0))
    return noise, torch.remainder(position + n_samples, len_a * len_b)


def filtered_noise(
    magnitudes: torch.Tensor,
    noise: torch.Tensor,
    basis: torch.Tensor,
    *,
    hop_size: int,
    tail: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise shaped per frame by a linear-phase FIR designed from band magnitudes, overlap-added.

    magnitudes ``(B, F, n_bands)``, noise ``(B, F*hop)``, tail ``(B, n_seg - 1, hop)`` (the part of
    earlier frames' filtered output that is still to come). Returns audio and the next tail.
    """
    b, n_frames = magnitudes.shape[0], magnitudes.shape[1]
    n_taps = basis.shape[0]
    fir = torch.matmul(magnitudes, basis.t()).flip(-1)  # (B, F, taps), flipped for correlation
    frames = noise.reshape(1, b * n_frames, hop_size)
    padded = F.pad(frames, (n_taps - 1, n_taps - 1))
    n_out = hop_size + n_taps - 1
    # One FIR per (example, frame): a grouped correlation (cheaper than materialising windows).
    full = F.conv1d(padded, fir.reshape(b * n_frames, 1, n_taps), groups=b * n_frames)
    full = full.reshape(b, n_frames, n_out)
    n_seg = -(-n_out // hop_size)
    segs = F.pad(full, (0, n_seg * hop_size - n_out)).reshape(b, n_frames, n_seg, hop_size)
    total = F.pad(tail, (0, 0, 0, n_frames))  # (B, F + n_seg - 1, hop)
    for s in range(n_seg):
        total = total + F.pad(segs[:, :, s], (0, 0, s, n_seg - 1 - s))
    audio = total[:, :n_frames].reshape(b, n_frames * hop_size)
    return audio, total[:, n_frames:]


def n_noise_segments(hop_size: int, n_bands: int) -> int:
    n_out = hop_size + 2 * (n_bands - 1) - 1
    return -(-n_out // hop_size)


def fir_reverb(
    dry: torch.Tensor, impulse_response: torch.Tensor, *, history: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convolution reverb with a (learned) impulse response, streaming.

    dry ``(B, T)``, impulse_response ``(n_taps,)``, history ``(B, n_taps - 1)``: the dry samples
    before this block. Returns the wet signal ``(B, T)`` and the next history.
    """
    n_taps = impulse_response.shape[0]
    x = torch.cat([history, dry], dim=1)
    wet = F.conv1d(x.unsqueeze(1), impulse_response.flip(0).reshape(1, 1, n_taps)).squeeze(1)
    return wet, x[:, x.shape[1] - (n_taps - 1) :]
