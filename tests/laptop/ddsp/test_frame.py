"""FrameVoice (what ``pimodule export`` writes) equals DDSPVoice, frame after frame, state and all."""

import math

import pytest
import torch

from pimodule.laptop.ddsp.frame import FrameVoice
from pimodule.laptop.ddsp.model import DDSPConfig, DDSPVoice

CONFIGS = [
    DDSPConfig(hidden_size=32),
    DDSPConfig(hidden_size=48, hop_size=80, n_harmonics=20, n_noise_bands=33, sample_rate=22050),
    DDSPConfig(hidden_size=16, hop_size=32, n_harmonics=8, n_noise_bands=17, reverb_seconds=0.01),
]


def _run(model, f0s, lds, controls, state):
    outs = []
    with torch.no_grad():
        for f0, ld in zip(f0s, lds):
            res = model(torch.tensor([[f0]]), torch.tensor([[ld]]), controls, *state)
            outs.append(res[0])
            state = res[1:]
    return torch.cat(outs, dim=1), state


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "odd-sizes", "reverb"])
def test_frame_graph_equals_the_training_model(config):
    torch.manual_seed(3)
    voice = DDSPVoice(config).eval()
    with torch.no_grad():  # untrained biases leave the noise silent; make every part audible
        voice.proj.bias.normal_(0.0, 1.0)
    frame = FrameVoice(voice).eval()
    n = 160
    # f0 sweeps from 40 Hz up past Nyquist / n_harmonics, so harmonics cross Nyquist mid-ramp
    top = config.sample_rate / 2 / max(config.n_harmonics // 3, 1)
    f0s = [float(40.0 * (top / 40.0) ** (i / (n - 1))) for i in range(n)]
    lds = [float(-70.0 + 50.0 * abs(math.sin(i / 9))) for i in range(n)]
    controls = voice.controls_tensor(
        1, pitch_shift_semitones=5.0, loudness_offset_db=-3.0, harmonic_gain_db=2.0, noise_gain_db=6.0
    )
    gen = torch.Generator().manual_seed(1)
    state = voice.initial_state(1, generator=gen)  # a random noise position
    want, want_state = _run(voice, f0s, lds, controls, state)
    got, got_state = _run(frame, f0s, lds, controls, state)
    assert torch.all(torch.isfinite(got))
    assert float(want.abs().max()) > 1e-3  # something to compare
    assert float((got - want).abs().max()) <= 1e-5 * max(1.0, float(want.abs().max()))
    for spec, a, b in zip(voice.state_specs(), want_state, got_state):
        assert a.shape == b.shape and a.dtype == b.dtype, spec.name
        assert torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-6), spec.name
