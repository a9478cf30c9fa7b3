"""The analysis network: log-mel frontend + small 1-D CNN encoder, shared for the wet signal and
the optional dry/reference signal, with heads for chain selection, distortion curve and parameters.

``forward(wet, other)`` takes ``(batch, samples)`` mono windows (``other`` None when blind) and
returns a :class:`pimodule.laptop.fx.chain.Chain` of probabilities and [0, 1] parameters, plus the logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from pimodule.laptop.fx.chain import N_EFFECTS, N_MODES, N_PARAMS, Chain
from pimodule.laptop.fx.pairfeat import BandGainCurve, CrossSpectral
from pimodule.laptop.fx.spectral import Stft, mel_filterbank, soft_histogram

CONDITIONING = ("blind", "dry", "reference")
WINDOW_S = 1.0  # seconds of audio per analysis window (the exported file fixes it in samples)


@dataclass(frozen=True)
class ModelConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 64
    channels: int = 96
    n_layers: int = 4
    conditioning: str = "blind"
    # waveform statistics next to the log-mel encoder (clipping and dynamics cues the mel loses);
    # off in the runs trained before they existed, so those still load
    waveform_stats: bool = False
    # dry conditioning only: compare wet and dry frame by frame (they are time-aligned), not just
    # their pooled summaries; off in the runs trained before it existed
    paired: bool = False
    # paired only: per-band wet/dry transfer function and coherence (pimodule/fx/pairfeat.py)
    cross_spectral: bool = False
    # paired only: frame gain vs absolute dry level per band, and its course after onsets/offsets
    band_gain: bool = False

    def __post_init__(self) -> None:
        if self.conditioning not in CONDITIONING:
            raise ValueError(f"conditioning must be one of {CONDITIONING}")
        if self.paired and self.conditioning != "dry":
            raise ValueError('paired needs conditioning = "dry" (a reference is not time-aligned)')
        if (self.cross_spectral or self.band_gain) and not self.paired:
            raise ValueError("cross_spectral and band_gain need paired = true")


class LogMel(nn.Module):
    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.stft = Stft(n_fft, hop)
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels)), persistent=False)

    def use_matmul_dft(self, on: bool = True) -> None:
        """Compute the power spectrum as a matmul with cos/sin (for ONNX export: no complex)."""
        self.stft.use_matmul_dft(on)

    def from_spectrum(self, re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
        mel = (re.square() + im.square()) @ self.fb.T
        return torch.log10(mel + 1e-8).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` -> ``(batch, n_mels, frames)`` log power (dB / 10 scale)."""
        return self.from_spectrum(*self.stft(x))


class Encoder(nn.Module):
    """Dilated residual 1-D convolutions over mel frames, mean + std pooling over time."""

    def __init__(self, n_mels: int, channels: int, n_layers: int):
        super().__init__()
        self.inp = nn.Conv1d(n_mels, channels, 1)
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(channels, channels, 3, padding=2**i, dilation=2**i),
                nn.GELU(),
                nn.Conv1d(channels, channels, 1),
            )
            for i in range(n_layers)
        )
        self.out_dim = 2 * channels + 2 * n_mels

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.inp(mel)
        for layer in self.layers:
            h = h + layer(h)
        # pooled features plus the mean and spread of the raw log-mel (level and dynamics cues)
        return torch.cat([h.mean(-1), h.std(-1), mel.mean(-1), mel.std(-1)], -1)


class WaveformStats(nn.Module):
    """Cues that a log-mel spectrogram smooths away, as fixed-size histograms (soft-binned, so
    the same in torch and ONNX):

    - sample amplitudes relative to the window's peak (hard clipping piles samples up at the
      ceiling, soft clipping flattens the top of the distribution);
    - frame RMS relative to the loudest frame, in dB (compression narrows this spread);
    - per-frame crest factor (peak over RMS, dB): clipping and fast compression lower it.
    """

    def __init__(self, frame: int = 256, n_amp_bins: int = 24, n_level_bins: int = 16, n_crest_bins: int = 12):
        super().__init__()
        self.frame = frame
        self.dense = False  # the export form of the histograms (no scatter), same values
        self.register_buffer("amp_centres", torch.linspace(0.0, 1.0, n_amp_bins), persistent=False)
        self.register_buffer("level_centres", torch.linspace(-60.0, 0.0, n_level_bins), persistent=False)
        self.register_buffer("crest_centres", torch.linspace(0.0, 22.0, n_crest_bins), persistent=False)
        self.out_dim = n_amp_bins + n_level_bins + n_crest_bins

    def _histogram(self, values: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """``(batch, n)`` values → ``(batch, bins)`` log share per triangular bin."""
        return torch.log10(soft_histogram(values, centres, dense=self.dense) + 1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mag = x.abs()
        amp = mag / (mag.amax(-1, keepdim=True) + 1e-8)
        n_frames = x.shape[-1] // self.frame
        frames = mag[:, : n_frames * self.frame].reshape(x.shape[0], n_frames, self.frame)
        rms_db = 10.0 * torch.log10(frames.square().mean(-1) + 1e-10)
        peak_db = 20.0 * torch.log10(frames.amax(-1) + 1e-5)
        level = (rms_db - rms_db.amax(-1, keepdim=True)).clamp_min(-60.0)
        loud = (level > -40.0).to(x.dtype)  # crest factor of frames that are not near silence
        crest = (peak_db - rms_db).clamp(0.0, 22.0) * loud - 30.0 * (1.0 - loud)
        return torch.cat(
            [
                self._histogram(amp, self.amp_centres),
                self._histogram(level, self.level_centres),
                self._histogram(crest, self.crest_centres),
            ],
            -1,
        )


class GainCurve(nn.Module):
    """Frame gain (wet level − dry level, dB) as a function of the dry frame's level relative to
    its loudest frame, soft-binned: an EQ or gain shifts the curve, a compressor bends it down
    above its threshold, a reverb lifts it where the dry signal is quiet. Returns the mean gain per
    bin and the bin's log occupancy."""

    def __init__(self, frame: int = 256, n_bins: int = 16):
        super().__init__()
        self.frame = frame
        self.register_buffer("centres", torch.linspace(-60.0, 0.0, n_bins), persistent=False)
        self.out_dim = 2 * n_bins

    def _level_db(self, x: torch.Tensor) -> torch.Tensor:
        n_frames = x.shape[-1] // self.frame
        frames = x[:, : n_frames * self.frame].reshape(x.shape[0], n_frames, self.frame)
        return 10.0 * torch.log10(frames.square().mean(-1) + 1e-10)

    def forward(self, wet: torch.Tensor, dry: torch.Tensor) -> torch.Tensor:
        dry_db, wet_db = self._level_db(dry), self._level_db(wet)
        level = (dry_db - dry_db.amax(-1, keepdim=True)).clamp_min(-60.0)
        gain = (wet_db - dry_db).clamp(-40.0, 40.0)
        width = self.centres[1] - self.centres[0]
        weight = torch.relu(1.0 - (level[..., None] - self.centres).abs() / width)  # (B, T, bins)
        total = weight.sum(1)
        mean_gain = (weight * gain[..., None]).sum(1) / (total + 1e-3)
        return torch.cat([mean_gain / 10.0, torch.log10(total / weight.shape[1] + 1e-4)], -1)


class Estimator(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.frontend = LogMel(config.sample_rate, config.n_fft, config.hop, config.n_mels)
        self.encoder = Encoder(config.n_mels, config.channels, config.n_layers)
        self.stats = WaveformStats() if config.waveform_stats else None
        n_embed = self.encoder.out_dim + (self.stats.out_dim if self.stats is not None else 0)
        n_in = n_embed * (1 if config.conditioning == "blind" else 3)
        if config.paired:  # wet, dry and their difference as frame-aligned channels, + gain curve
            self.pair = Encoder(3 * config.n_mels, config.channels, config.n_layers)
            self.gain_curve = GainCurve()
            n_in += self.pair.out_dim + self.gain_curve.out_dim
        self.cross = CrossSpectral(config.sample_rate) if config.cross_spectral else None
        self.band_gain = BandGainCurve(config.sample_rate) if config.band_gain else None
        n_in += sum(m.out_dim for m in (self.cross, self.band_gain) if m is not None)
        hidden = 2 * config.channels
        self.trunk = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.active_head = nn.Linear(hidden, N_EFFECTS)
        self.mode_head = nn.Linear(hidden, N_MODES)
        self.param_head = nn.Linear(hidden, N_PARAMS)

    def embed(self, x: torch.Tensor, mel: torch.Tensor | None = None) -> torch.Tensor:
        e = self.encoder(self.frontend(x) if mel is None else mel)
        return e if self.stats is None else torch.cat([e, self.stats(x)], -1)

    def export_form(self, on: bool = True) -> None:
        """Switch to (or back from) the ONNX-exportable forms: DFTs as matmuls, dense histograms."""
        for m in (self.frontend, self.cross, self.band_gain):
            if m is not None:
                m.use_matmul_dft(on)
        if self.stats is not None:
            self.stats.dense = on

    def _paired(self, wet: torch.Tensor, dry: torch.Tensor) -> torch.Tensor:
        spec_w, spec_d = self.frontend.stft(wet), self.frontend.stft(dry)
        mel_w, mel_d = self.frontend.from_spectrum(*spec_w), self.frontend.from_spectrum(*spec_d)
        e, o = self.embed(wet, mel_w), self.embed(dry, mel_d)
        pair = self.pair(torch.cat([mel_w, mel_d, mel_w - mel_d], 1))
        feats = [e, o, e - o, pair, self.gain_curve(wet, dry)]
        if self.cross is not None:  # the frontend's spectra serve the cross-spectra at its size
            given = {(self.frontend.n_fft, self.frontend.hop): (spec_w, spec_d)}
            feats.append(self.cross(wet, dry, given))
        if self.band_gain is not None:
            feats.append(self.band_gain(wet, dry))
        return torch.cat(feats, -1)

    def forward(self, wet: torch.Tensor, other: torch.Tensor | None = None):
        e = self.embed(wet)
        if self.config.conditioning != "blind":
            if other is None:
                raise ValueError(f"a {self.config.conditioning} model needs the second signal")
            if self.config.paired:
                e = self._paired(wet, other)
            else:
                o = self.embed(other)
                e = torch.cat([e, o, e - o], -1)
        h = self.trunk(e)
        active_logits = self.active_head(h)
        mode_logits = self.mode_head(h)
        unit = torch.sigmoid(self.param_head(h))
        chain = Chain(torch.sigmoid(active_logits), unit, torch.softmax(mode_logits, -1))
        return chain, active_logits, mode_logits

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def analysis_samples(config: ModelConfig, seconds: float) -> int:
    """Window length in samples that gives whole hops."""
    n = int(round(seconds * config.sample_rate))
    return config.n_fft + config.hop * max(1, math.ceil((n - config.n_fft) / config.hop))
