"""The DDSP voice: a recurrent decoder from (f0, loudness) to synth controls, and the synths.

One forward pass serves training (whole phrases, zero state), offline rendering and streaming
(one frame at a time in ONNX): ``forward(f0_hz, loudness_db, controls, *state) -> (audio, *state)``.
User controls (physical units, one :class:`ParamTable`) enter the graph as a vector.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from pimodule.core.controls import DDSP_CONTROLS
from pimodule.core.modelfile import StateSpec
from pimodule.laptop.ddsp import synth

LOUDNESS_FLOOR_DB = -100.0
NOISE_TABLE_LENGTHS = (8191, 8179)  # coprime (both prime)


@dataclass(frozen=True)
class DDSPConfig:
    sample_rate: int = 16000
    hop_size: int = 64
    n_harmonics: int = 64
    n_noise_bands: int = 65
    hidden_size: int = 128
    noise_seed: int = 1234
    reverb_seconds: float = 0.0  # > 0: a learned impulse response this long (optional, off by default)

    def to_dict(self) -> dict:
        return asdict(self)


def _mlp(n_in: int, n_hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, n_hidden),
        nn.LayerNorm(n_hidden),
        nn.LeakyReLU(0.1),
        nn.Linear(n_hidden, n_hidden),
        nn.LayerNorm(n_hidden),
        nn.LeakyReLU(0.1),
    )


def scaled_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """DDSP's positive nonlinearity: 2·sigmoid(x)^ln(10) + 1e-7 (smooth, range (0, 2])."""
    return 2.0 * torch.sigmoid(x).pow(math.log(10.0)) + 1e-7


def hz_to_unit_midi(f0_hz: torch.Tensor) -> torch.Tensor:
    midi = 69.0 + 12.0 * torch.log2(f0_hz.clamp(min=1.0) / 440.0)
    return midi / 127.0


class DDSPVoice(nn.Module):
    def __init__(self, config: DDSPConfig = DDSPConfig()):
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.f0_mlp = _mlp(1, h)
        self.loudness_mlp = _mlp(1, h)
        self.gru = nn.GRU(2 * h, h, batch_first=True)
        self.out_mlp = _mlp(3 * h, h)
        self.n_outputs = 1 + config.n_harmonics + config.n_noise_bands
        self.proj = nn.Linear(h, self.n_outputs)
        self.register_buffer("noise_basis", synth.noise_fir_basis(config.n_noise_bands), persistent=False)
        table_a, table_b = synth.noise_tables(NOISE_TABLE_LENGTHS, config.noise_seed)
        self.register_buffer("noise_a", table_a, persistent=False)
        self.register_buffer("noise_b", table_b, persistent=False)
        self.n_noise_seg = synth.n_noise_segments(config.hop_size, config.n_noise_bands)
        with torch.no_grad():  # start with little noise, as DDSP does with its -5 bias
            self.proj.bias[1 + config.n_harmonics :].fill_(-5.0)
        self.n_reverb_taps = int(round(config.reverb_seconds * config.sample_rate))
        if self.n_reverb_taps > 1:  # a quiet decaying-noise start; tap 0 stays the dry path
            gen = torch.Generator().manual_seed(config.noise_seed + 1)
            t = torch.arange(1, self.n_reverb_taps) / config.sample_rate
            init = (
                0.01 * torch.randn(self.n_reverb_taps - 1, generator=gen) * torch.exp(-t / (config.reverb_seconds / 4))
            )
            self.reverb_ir = nn.Parameter(init)

    # -- state ---------------------------------------------------------------------------------
    def state_specs(self) -> tuple[StateSpec, ...]:
        c = self.config
        return (
            StateSpec("gru_h", (1, 1, c.hidden_size), "float32"),
            StateSpec("phase", (1, 1), "float64"),
            StateSpec("prev_f0_hz", (1, 1), "float32"),
            StateSpec("prev_amplitudes", (1, 1, c.n_harmonics), "float32"),
            StateSpec("noise_tail", (1, self.n_noise_seg - 1, c.hop_size), "float32"),
            StateSpec("noise_position", (1, 1), "int64"),
        ) + ((StateSpec("reverb_history", (1, self.n_reverb_taps - 1), "float32"),) if self.n_reverb_taps > 1 else ())

    def initial_state(self, batch_size: int = 1, generator: torch.Generator | None = None):
        """Zero state; with a generator, random noise positions (for training variety)."""
        out = []
        for spec in self.state_specs():
            shape = list(spec.shape)
            shape[1 if spec.name == "gru_h" else 0] = batch_size
            dtype = getattr(torch, spec.dtype)
            out.append(torch.full(shape, spec.init, dtype=dtype))
        if generator is not None:
            period = NOISE_TABLE_LENGTHS[0] * NOISE_TABLE_LENGTHS[1]
            at = [spec.name for spec in self.state_specs()].index("noise_position")
            out[at] = torch.randint(0, period, (batch_size, 1), generator=generator, dtype=torch.int64)
        return tuple(out)

    # -- forward -------------------------------------------------------------------------------
    def controls_tensor(self, batch_size: int = 1, **values: float) -> torch.Tensor:
        vec = torch.from_numpy(DDSP_CONTROLS.from_mapping(values))
        return vec.unsqueeze(0).expand(batch_size, -1).contiguous()

    def decode(self, f0_hz, loudness_db, gru_h):
        f0_in = hz_to_unit_midi(f0_hz).unsqueeze(-1)
        ld_in = ((loudness_db - LOUDNESS_FLOOR_DB) / -LOUDNESS_FLOOR_DB).unsqueeze(-1)
        a, b = self.f0_mlp(f0_in), self.loudness_mlp(ld_in)
        x, gru_h_next = self.gru(torch.cat([a, b], dim=-1), gru_h)
        y = scaled_sigmoid(self.proj(self.out_mlp(torch.cat([x, a, b], dim=-1))))
        k = self.config.n_harmonics
        return y[..., 0], y[..., 1 : 1 + k], y[..., 1 + k :], gru_h_next

    def forward(
        self,
        f0_hz: torch.Tensor,
        loudness_db: torch.Tensor,
        controls: torch.Tensor,
        gru_h: torch.Tensor,
        phase: torch.Tensor,
        prev_f0_hz: torch.Tensor,
        prev_amplitudes: torch.Tensor,
        noise_tail: torch.Tensor,
        noise_position: torch.Tensor,
        reverb_history: torch.Tensor | None = None,
    ):
        c = self.config
        shift, ld_offset, harm_db, noise_db = (controls[:, i : i + 1] for i in range(4))
        f0 = (f0_hz * torch.pow(2.0, shift / 12.0)).clamp(1.0, c.sample_rate / 2)
        loudness = (loudness_db + ld_offset).clamp(LOUDNESS_FLOOR_DB, 20.0)
        amplitude, distribution, noise_mags, gru_h_next = self.decode(f0, loudness, gru_h)
        amps = synth.harmonic_frame_amplitudes(amplitude, distribution, f0, c.sample_rate)
        amps = amps * torch.pow(10.0, harm_db / 20.0).unsqueeze(-1)
        noise_mags = noise_mags * torch.pow(10.0, noise_db / 20.0).unsqueeze(-1)
        harmonic, phase_next = synth.harmonic_synth(
            f0,
            amps,
            c.sample_rate,
            hop_size=c.hop_size,
            phase=phase,
            prev_f0_hz=prev_f0_hz,
            prev_amplitudes=prev_amplitudes,
        )
        white, position_next = synth.table_noise(self.noise_a, self.noise_b, noise_position, f0.shape[1] * c.hop_size)
        noise, tail_next = synth.filtered_noise(
            noise_mags, white, self.noise_basis, hop_size=c.hop_size, tail=noise_tail
        )
        audio = harmonic + noise
        state_next = (gru_h_next, phase_next, f0[:, -1:], amps[:, -1:], tail_next, position_next)
        if reverb_history is not None:
            ir = torch.cat([torch.zeros(1, dtype=audio.dtype), self.reverb_ir])
            wet, history_next = synth.fir_reverb(audio, ir, history=reverb_history)
            return (audio + wet,) + state_next + (history_next,)
        return (audio,) + state_next
