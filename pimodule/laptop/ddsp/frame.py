"""The one-frame streaming graph that ``pimodule export`` writes: the voice's forward pass for one
example and one frame, rewritten for onnxruntime on a small CPU.

:class:`DDSPVoice` is written for training (batches of whole phrases). Exported as it is, one
frame costs about 150 nodes, and onnxruntime spends about 0.4 µs of dispatch on each, on top of the
arithmetic. :class:`FrameVoice` computes the same function (same inputs, state and outputs, equal to
float32 rounding; ``tests/ddsp/test_frame.py``) with fewer and cheaper nodes:

- the two input MLPs run as one batched MLP, and every matrix that reads the same vector is one
  matmul (the GRU's input gates and ``out_mlp``'s first layer both read ``[a, b]``; the GRU's
  recurrent gates read ``h``);
- the GRU step is written out as matmuls and gates, so that its input matmul can be shared;
- constants (ramps, harmonic numbers, FIR basis with the flip, log-domain scalings) are
  precomputed, gathers are plain Gathers (fancy indexing exports as a slow GatherND), and the
  overlap-add of the noise FIR is one padded add.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pimodule.laptop.ddsp import synth
from pimodule.laptop.ddsp.model import LOUDNESS_FLOOR_DB, DDSPVoice

LN2, LN10 = math.log(2.0), math.log(10.0)


def _const(module: nn.Module, name: str, value: torch.Tensor) -> None:
    module.register_buffer(name, value.detach().clone().contiguous(), persistent=False)


class FrameVoice(nn.Module):
    """``DDSPVoice.forward`` for batch 1 and one frame, with the weights regrouped (no training)."""

    def __init__(self, voice: DDSPVoice):
        super().__init__()
        c = voice.config
        self.config = c
        h = c.hidden_size
        self.hidden = h
        self.n_harmonics = c.n_harmonics
        self.hop_size = c.hop_size
        self.has_reverb = voice.n_reverb_taps > 1
        with torch.no_grad():
            # controls → multipliers: [2^(shift/12), -, 10^(harm/20), 10^(noise/20)] = exp(c * k)
            _const(self, "control_scale", torch.tensor([[LN2 / 12.0, 0.0, LN10 / 20.0, LN10 / 20.0]]))
            # decoder inputs: f0 → unit MIDI = a * ln(f0) + b; loudness → (ld - floor) / -floor
            a = 12.0 / LN2 / 127.0
            b = (69.0 - 12.0 * math.log2(440.0)) / 127.0
            _const(self, "in_scale", torch.tensor([[a], [1.0 / -LOUDNESS_FLOOR_DB]]).reshape(2, 1, 1))
            _const(self, "in_shift", torch.tensor([[b], [1.0]]).reshape(2, 1, 1))
            mlps = (voice.f0_mlp, voice.loudness_mlp)
            _const(self, "w1", torch.stack([m[0].weight.t() for m in mlps]))  # (2, 1, H)
            _const(self, "b1", torch.stack([m[0].bias.reshape(1, h) for m in mlps]))
            _const(self, "g1", torch.stack([m[1].weight.reshape(1, h) for m in mlps]))
            _const(self, "be1", torch.stack([m[1].bias.reshape(1, h) for m in mlps]))
            _const(self, "w2", torch.stack([m[3].weight.t() for m in mlps]))  # (2, H, H)
            _const(self, "b2", torch.stack([m[3].bias.reshape(1, h) for m in mlps]))
            _const(self, "g2", torch.stack([m[4].weight.reshape(1, h) for m in mlps]))
            _const(self, "be2", torch.stack([m[4].bias.reshape(1, h) for m in mlps]))
            self.slope = float(voice.f0_mlp[2].negative_slope)
            gru = voice.gru
            w_ih, w_hh = gru.weight_ih_l0, gru.weight_hh_l0  # (3H, 2H), (3H, H); gates r, z, n
            b_ih, b_hh = gru.bias_ih_l0, gru.bias_hh_l0
            out1 = voice.out_mlp[0]  # Linear(3H, H) reading [x, a, b]
            # [a, b] feeds the GRU's input gates and out_mlp's first layer: one (2H, 4H) matmul
            _const(self, "w_ab", torch.cat([w_ih.t(), out1.weight[:, h:].t()], dim=1))
            rz_bias = b_ih[: 2 * h] + b_hh[: 2 * h]
            _const(self, "b_ab", torch.cat([rz_bias, b_ih[2 * h :], out1.bias]).reshape(1, 4 * h))
            _const(self, "w_hh", w_hh.t())  # (H, 3H)
            _const(self, "b_hn", b_hh[2 * h :].reshape(1, h))
            _const(self, "w_x", out1.weight[:, :h].t())  # (H, H)
            om = voice.out_mlp
            self.ln_out1 = om[1]
            self.ln_out2 = om[4]
            self.lin_out2 = om[3]
            self.proj = voice.proj
            # harmonic synth constants
            hop = c.hop_size
            _const(self, "k", torch.arange(1, c.n_harmonics + 1, dtype=torch.float32).reshape(1, -1))
            _const(self, "k_col", self.k.reshape(-1, 1))
            _const(self, "ramp", (torch.arange(1, hop + 1, dtype=torch.float32) / hop).reshape(1, hop))
            _const(self, "ramp_pair", torch.stack([torch.ones(hop), self.ramp[0]]))  # (2, hop)
            _const(self, "phase_step", torch.tensor(2.0 * math.pi / c.sample_rate, dtype=torch.float64))
            _const(self, "two_pi", torch.tensor(2.0 * math.pi, dtype=torch.float64))
            # noise: tables pre-scaled by 1/sqrt(2); FIR basis transposed and flipped (correlation)
            _const(self, "noise_a", voice.noise_a / math.sqrt(2.0))
            _const(self, "noise_b", voice.noise_b / math.sqrt(2.0))
            _const(self, "hop_index", torch.arange(hop, dtype=torch.int64).reshape(1, hop))
            _const(self, "fir_basis", voice.noise_basis.t().flip(-1))  # (bands, taps)
            n_taps = voice.noise_basis.shape[0]
            n_seg = voice.n_noise_seg
            # the frame's noise, zero-padded so that a valid correlation with the FIR gives the
            # whole convolution (hop + taps - 1 samples) and at least n_seg * hop outputs
            self.n_pad = (n_taps - 1, n_seg * hop - hop + 1)
            self.n_taps, self.n_seg = n_taps, n_seg
            self.period = voice.noise_a.shape[0] * voice.noise_b.shape[0]
            if self.has_reverb:
                _const(self, "reverb_ir", torch.cat([torch.zeros(1), voice.reverb_ir]))

    def _leaky(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.slope)

    def forward(
        self,
        f0_hz,
        loudness_db,
        controls,
        gru_h,
        phase,
        prev_f0_hz,
        prev_amplitudes,
        noise_tail,
        noise_position,
        reverb_history=None,
    ):
        c, h, hop = self.config, self.hidden, self.hop_size
        shift_gain, _, harm_gain, noise_gain = torch.split(torch.exp(controls * self.control_scale), 1, 1)
        f0 = (f0_hz * shift_gain).clamp(1.0, c.sample_rate / 2)
        loudness = (loudness_db + controls[:, 1:2]).clamp(LOUDNESS_FLOOR_DB, 20.0)
        # -- decoder: both input MLPs as one batch of two
        x_in = torch.cat([torch.log(f0), loudness], 1).reshape(2, 1, 1) * self.in_scale + self.in_shift
        y = x_in * self.w1 + self.b1  # (2, 1, H)
        y = self._leaky(F.layer_norm(y, (h,)) * self.g1 + self.be1)
        y = torch.matmul(y, self.w2) + self.b2
        ab = self._leaky(F.layer_norm(y, (h,)) * self.g2 + self.be2).reshape(1, 2 * h)
        # GRU step (torch's gate order r, z, n; the reset gate scales the recurrent n term)
        h_prev = gru_h.reshape(1, h)
        # (1, 4H): [r and z (both biases), n from the input, out_mlp's first layer on [a, b]]
        gi_rz, gi_n, out_ab = torch.split(torch.matmul(ab, self.w_ab) + self.b_ab, [2 * h, h, h], 1)
        gh_rz, gh_n = torch.split(torch.matmul(h_prev, self.w_hh), [2 * h, h], 1)  # (1, 3H)
        r, z = torch.split(torch.sigmoid(gi_rz + gh_rz), h, 1)
        n = torch.tanh(gi_n + r * (gh_n + self.b_hn))
        h_next = n + z * (h_prev - n)
        # out_mlp on [x, a, b]: its [a, b] part came with the GRU's input matmul
        o = torch.matmul(h_next, self.w_x) + out_ab
        o = self._leaky(self.ln_out1(o))
        o = self._leaky(self.ln_out2(self.lin_out2(o)))
        out = 2.0 * torch.pow(torch.sigmoid(self.proj(o)), LN10) + 1e-7  # scaled_sigmoid
        k = self.n_harmonics
        amplitude, distribution, noise_mags = torch.split(out, [1, k, out.shape[1] - 1 - k], 1)
        # -- harmonic amplitudes: no harmonic at or above Nyquist, renormalised, with the user gain
        zero = torch.zeros((), dtype=out.dtype)
        dist = torch.where(f0 * self.k < c.sample_rate / 2, distribution, zero)
        amps = dist * (amplitude * harm_gain / (dist.sum(-1, keepdim=True) + 1e-7))  # (1, K)
        # -- harmonic synth: f0 ramps over the hop, phase in float64, per-sample Nyquist mask
        f0_s = prev_f0_hz + (f0 - prev_f0_hz) * self.ramp  # (1, hop)
        unwrapped = phase + torch.cumsum(f0_s.to(torch.float64) * self.phase_step, dim=1)
        wrapped = torch.fmod(unwrapped, self.two_pi)  # the phase never decreases: fmod = wrap
        # (K, hop): harmonic k at sample n, silent where k * f0 has reached Nyquist
        sines = torch.sin(self.k_col * wrapped.to(torch.float32))
        sines = torch.where(self.k_col * f0_s < c.sample_rate / 2, sines, zero)
        prev_amps = prev_amplitudes.reshape(1, k)
        pair = torch.cat([prev_amps, amps - prev_amps])  # (2, K): start and slope of the ramp
        harmonic = (torch.matmul(pair, sines) * self.ramp_pair).sum(0, keepdim=True)  # (1, hop)
        # -- filtered noise: table noise, FIR from the band magnitudes, overlap-add
        idx = noise_position + self.hop_index
        idx = idx.reshape(hop)  # index_select exports as Gather (fancy indexing: slow GatherND)
        white = torch.index_select(self.noise_a, 0, torch.remainder(idx, self.noise_a.shape[0])) + torch.index_select(
            self.noise_b, 0, torch.remainder(idx, self.noise_b.shape[0])
        )
        fir = torch.matmul(noise_mags * noise_gain, self.fir_basis)  # (1, taps)
        padded = F.pad(white, self.n_pad).reshape(1, 1, -1)
        segs = F.conv1d(padded, fir.reshape(1, 1, -1))[..., : self.n_seg * hop].reshape(self.n_seg, hop)
        total = segs + F.pad(noise_tail.reshape(self.n_seg - 1, hop), (0, 0, 0, 1))
        audio = harmonic + total[:1]
        state = (
            h_next.reshape(1, 1, h),
            wrapped[:, -1:],
            f0,
            amps.reshape(1, 1, k),
            total[1:].reshape(1, self.n_seg - 1, hop),
            torch.remainder(noise_position + hop, self.period),
        )
        if self.has_reverb:
            wet, history = synth.fir_reverb(audio, self.reverb_ir, history=reverb_history)
            return (audio + wet,) + state + (history,)
        return (audio,) + state
