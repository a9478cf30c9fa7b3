import math

import numpy as np
import pytest
import torch

from pimodule.laptop.ddsp import synth

SR = 16000
HOP = 64


def _harmonic(f0, amps, state=None):
    b = f0.shape[0]
    state = state or (torch.zeros(b, 1, dtype=torch.float64), f0[:, :1], amps[:, :1])
    return synth.harmonic_synth(
        f0, amps, SR, hop_size=HOP, phase=state[0], prev_f0_hz=state[1], prev_amplitudes=state[2]
    )


def test_ramp_frames_reaches_each_frame_value_at_the_hop_end():
    frames = torch.tensor([[1.0, 3.0, -1.0]])
    out = synth.ramp_frames(torch.zeros(1, 1), frames, 4)
    assert out.shape == (1, 12)
    assert torch.allclose(out[0, 3::4], frames[0])
    assert torch.allclose(out[0, :4], torch.tensor([0.25, 0.5, 0.75, 1.0]))


def test_harmonics_at_or_above_nyquist_are_silent():
    n_frames, k = 100, 64
    f0 = torch.full((1, n_frames), 3000.0)  # only 3 kHz and 6 kHz are below 8 kHz
    amps = torch.ones(1, n_frames, k)
    audio, _ = _harmonic(f0, amps)
    spec = np.abs(np.fft.rfft(audio[0].numpy() * np.hanning(audio.shape[1])))
    freqs = np.fft.rfftfreq(audio.shape[1], 1 / SR)
    allowed = (np.abs(freqs - 3000) < 30) | (np.abs(freqs - 6000) < 30)
    leak_db = 20 * np.log10(spec[~allowed].max() / spec[allowed].max())
    assert leak_db < -60, leak_db
    assert abs(audio.pow(2).mean().sqrt().item() - 1.0) < 0.02  # two unit harmonics: RMS 1


@pytest.mark.parametrize("block_frames", [1, 3, 7])
def test_harmonic_synth_is_phase_continuous_across_blocks(block_frames):
    gen = torch.Generator().manual_seed(0)
    n_frames = 42
    f0 = 100 + 900 * torch.rand(1, n_frames, generator=gen)
    amps = torch.rand(1, n_frames, 16, generator=gen)
    whole, _ = _harmonic(f0, amps)
    state, parts = (torch.zeros(1, 1, dtype=torch.float64), f0[:, :1], amps[:, :1]), []
    for s in range(0, n_frames, block_frames):
        a, phase = _harmonic(f0[:, s : s + block_frames], amps[:, s : s + block_frames], state)
        state = (
            phase,
            f0[:, s + block_frames - 1 : s + block_frames],
            amps[:, s + block_frames - 1 : s + block_frames],
        )
        parts.append(a)
    streamed = torch.cat(parts, dim=1)
    assert torch.max(torch.abs(whole - streamed)) < 1e-4


def test_harmonic_frequency_matches_f0():
    f0 = torch.full((1, 250), 440.0)
    amps = torch.zeros(1, 250, 8)
    amps[..., 0] = 1.0
    audio, _ = _harmonic(f0, amps)
    x = audio[0].numpy()
    peak = np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(np.abs(np.fft.rfft(x)))]
    assert abs(peak - 440.0) <= 1.0


def test_noise_fir_follows_the_band_magnitudes():
    n_bands = 65
    basis = synth.noise_fir_basis(n_bands)
    mags = torch.zeros(n_bands)
    mags[:16] = 1.0  # pass 0..~1.9 kHz, stop above
    fir = (basis @ mags).numpy()
    assert fir.shape == (2 * (n_bands - 1),)
    response = np.abs(np.fft.rfft(fir, 4096))
    freqs = np.fft.rfftfreq(4096, 1 / SR)
    assert np.all(np.abs(20 * np.log10(response[freqs < 1000])) < 1.0)
    assert 20 * np.log10(response[freqs > 3500].max()) < -30


def test_table_noise_is_identical_whole_or_in_blocks_and_white():
    a, b = synth.noise_tables((8191, 8179), seed=3)
    pos = torch.tensor([[12345]])
    whole, _ = synth.table_noise(a, b, pos, 1000)
    p, parts = pos, []
    for n in (1, 64, 65, 128, 742):
        chunk, p = synth.table_noise(a, b, p, n)
        parts.append(chunk)
    assert torch.equal(torch.cat(parts, 1), whole)
    long, _ = synth.table_noise(a, b, torch.zeros(1, 1, dtype=torch.int64), 50000)
    x = long[0].numpy()
    r1 = np.corrcoef(x[:-1], x[1:])[0, 1]
    assert abs(r1) < 0.02 and abs(x.std() - math.sqrt(1 / 3)) < 0.01


@pytest.mark.parametrize("block_frames", [1, 2, 5])
def test_filtered_noise_overlap_add_matches_whole(block_frames):
    gen = torch.Generator().manual_seed(1)
    n_frames, n_bands = 20, 65
    basis = synth.noise_fir_basis(n_bands)
    mags = torch.rand(1, n_frames, n_bands, generator=gen)
    noise = torch.randn(1, n_frames * HOP, generator=gen)
    n_seg = synth.n_noise_segments(HOP, n_bands)
    whole, _ = synth.filtered_noise(mags, noise, basis, hop_size=HOP, tail=torch.zeros(1, n_seg - 1, HOP))
    tail, parts = torch.zeros(1, n_seg - 1, HOP), []
    for s in range(0, n_frames, block_frames):
        out, tail = synth.filtered_noise(
            mags[:, s : s + block_frames], noise[:, s * HOP : (s + block_frames) * HOP], basis, hop_size=HOP, tail=tail
        )
        parts.append(out)
    assert torch.max(torch.abs(torch.cat(parts, 1) - whole)) < 1e-5
    # and it equals a direct full convolution, frame by frame
    fir = (mags @ basis.t())[0].numpy()
    ref = np.zeros(n_frames * HOP + basis.shape[0])
    for f in range(n_frames):
        seg = np.convolve(noise[0, f * HOP : (f + 1) * HOP].numpy(), fir[f])
        ref[f * HOP : f * HOP + len(seg)] += seg
    assert np.max(np.abs(whole[0].numpy() - ref[: n_frames * HOP])) < 1e-4
