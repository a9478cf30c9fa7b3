"""Wet-vs-dry features of the paired estimator and the spectral blocks under them: the export forms
compute what training computes, and the cues move the way the docs say (coherence 1 for a linear
time-invariant EQ, lower under a compressor, much lower under distortion; the gain curve reads a
plain gain and bends for a compressor; the gain drops after onsets under a compressor's attack)."""

import numpy as np
import pytest
import torch

from pimodule.laptop.fx import effects
from pimodule.laptop.fx.pairfeat import BandGainCurve, CrossSpectral
from pimodule.laptop.fx.spectral import Stft, soft_histogram

SR = 16000


def _speechlike(n=16128, seed=0, batch=2):
    """Noise with a syllable-rate envelope (wide level spread, sharp onsets)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    env = (0.02 + np.abs(np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 3, (batch, 1))))) ** 3
    x = rng.standard_normal((batch, n)) * env
    return torch.tensor(0.1 * x / np.sqrt((x**2).mean()), dtype=torch.float32)


def _bursts(n=16128, seed=0, batch=2):
    """Noise bursts switched on abruptly (150 ms on, 100 ms at -40 dB)."""
    rng = np.random.default_rng(seed)
    on = (np.arange(n) % 4000) < 2400
    x = rng.standard_normal((batch, n)) * np.where(on, 1.0, 0.01)
    return torch.tensor(0.1 * x, dtype=torch.float32)


def _coherence(feats: torch.Tensor, sizes) -> list[torch.Tensor]:
    """Per size, the bands' coherence from :func:`cross_features`' last block."""
    out, start = [], 0
    for _, _, n in sizes:
        block = feats[:, start + 2 * n : start + 3 * n]
        out.append(1.0 - (10.0**block - 1e-3))
        start += 3 * n
    return out


def test_soft_histogram_scatter_equals_the_dense_form():
    torch.manual_seed(0)
    centres = torch.linspace(-60.0, 0.0, 16)
    values = torch.cat(
        [
            torch.rand(3, 500) * 80 - 70,
            torch.full((3, 5), -30.0 - 1e-3),
            torch.full((3, 5), 0.0),
            torch.full((3, 5), 2.0),
            torch.full((3, 5), -100.0),
        ],
        1,
    )
    sparse, dense = soft_histogram(values, centres), soft_histogram(values, centres, dense=True)
    assert torch.allclose(sparse, dense, atol=1e-6)
    assert float(dense[:, 1:-1].sum(-1).min()) > 0.5  # most values land somewhere


def test_stft_matmul_form_matches_rfft():
    x = _speechlike(4000)
    stft = Stft(256, 64)
    re, im = stft(x)
    stft.use_matmul_dft()
    re2, im2 = stft(x)
    assert re.shape == re2.shape == (2, 1 + (4000 - 256) // 64, 129)
    assert torch.allclose(re, re2, atol=1e-4) and torch.allclose(im, im2, atol=1e-4)


def test_coherence_is_one_for_gain_and_eq_and_lower_under_compression_and_distortion():
    cs = CrossSpectral(SR)
    dry = _speechlike()
    eq = effects.parametric_eq(
        dry[:, None],
        SR,
        low_shelf_gain_db=6.0,
        low_shelf_freq_hz=200.0,
        peak1_gain_db=-9.0,
        peak1_freq_hz=400.0,
        peak1_q=1.0,
        peak2_gain_db=8.0,
        peak2_freq_hz=1500.0,
        peak2_q=2.0,
        peak3_gain_db=0.0,
        peak3_freq_hz=3000.0,
        peak3_q=1.0,
        high_shelf_gain_db=-6.0,
        high_shelf_freq_hz=4000.0,
    )[:, 0]
    comp = effects.compressor(
        dry[:, None], SR, threshold_db=-35.0, ratio=8.0, attack_ms=2.0, release_ms=50.0, knee_db=3.0, makeup_db=0.0
    )[:, 0]
    dist = effects.distortion(dry[:, None], SR, drive_db=24.0, output_gain_db=-12.0, mode="hard")[:, 0]
    med = {}
    for name, wet in (("gain", dry * 2.0), ("eq", eq), ("comp", comp), ("dist", dist)):
        feats = cs(wet, dry)
        assert feats.shape == (2, cs.out_dim) and torch.all(torch.isfinite(feats))
        med[name] = [float(c.median()) for c in _coherence(feats, cs.sizes)]
        if name == "gain":  # coherent gain and power gain both read +6 dB in every band
            n = cs.sizes[0][2]
            assert torch.allclose(20 * feats[:, : 2 * n], torch.full((2, 2 * n), 20 * np.log10(2.0)), atol=0.05)
    for k in range(len(cs.sizes)):
        assert med["gain"][k] > 0.999 and med["eq"][k] > 0.95
        assert med["comp"][k] < med["eq"][k] - 0.03
        assert med["dist"][k] < 0.8 and med["dist"][k] < med["comp"][k]


def test_eq_reads_as_its_curve_in_the_coherent_gain():
    cs = CrossSpectral(SR, sizes=((1024, 256, 32),))
    dry = _speechlike()
    wet = effects.parametric_eq(
        dry[:, None],
        SR,
        low_shelf_gain_db=0.0,
        low_shelf_freq_hz=100.0,
        peak1_gain_db=0.0,
        peak1_freq_hz=400.0,
        peak1_q=1.0,
        peak2_gain_db=10.0,
        peak2_freq_hz=1500.0,
        peak2_q=1.0,
        peak3_gain_db=0.0,
        peak3_freq_hz=3000.0,
        peak3_q=1.0,
        high_shelf_gain_db=0.0,
        high_shelf_freq_hz=6000.0,
    )[:, 0]
    gain_db = 20 * cs(wet, dry)[0, :32]
    assert 8.5 < float(gain_db.max()) < 10.5 and float(gain_db[:4].abs().max()) < 1.0


def test_band_gain_curve_reads_a_plain_gain_and_bends_under_a_compressor():
    bg = BandGainCurve(SR)
    dry = _speechlike()
    n_bins = len(bg.centres)

    def curve(wet):
        out = bg(wet, dry)
        assert out.shape == (2, bg.out_dim) and torch.all(torch.isfinite(out))
        c = out[0, : 2 * n_bins * bg.n_bands].reshape(bg.n_bands, 2 * n_bins)
        return 10 * c[:, :n_bins], c[:, n_bins:], out[0, 2 * n_bins * bg.n_bands :]

    gain, occupancy, onset = curve(dry * 2.0)
    used = occupancy > -2.0
    assert used[0].sum() >= 4 and torch.allclose(gain[used], torch.full_like(gain[used], 6.02), atol=0.05)
    assert torch.allclose(onset[: len(bg.lags)], torch.zeros(len(bg.lags)), atol=5e-3)  # < 0.05 dB
    comp = effects.compressor(
        dry[:, None], SR, threshold_db=-40.0, ratio=10.0, attack_ms=5.0, release_ms=30.0, knee_db=0.0, makeup_db=0.0
    )[:, 0]
    gain, occupancy, _ = curve(comp)
    used = torch.nonzero(occupancy[0] > -2.0).flatten()
    assert gain[0, used[0]] > gain[0, used[-1]] + 10.0  # loud frames turned down, quiet ones not


def test_onset_response_shows_a_compressors_attack():
    bg = BandGainCurve(SR)
    dry = _bursts()
    start = 2 * len(bg.centres) * bg.n_bands
    plain = bg(dry * 0.5, dry)[0, start:] * 10.0
    assert float(plain[: len(bg.lags)].abs().max()) < 0.05  # a plain gain: no change after onsets
    assert float(plain[len(bg.lags)]) / 10.0 > -2.0  # (the onsets were found: log share)
    comp = effects.compressor(
        dry[:, None], SR, threshold_db=-30.0, ratio=10.0, attack_ms=10.0, release_ms=300.0, knee_db=0.0, makeup_db=0.0
    )[:, 0]
    onset = bg(comp, dry)[0, start:] * 10.0
    # after the dry level jumps, the gain keeps falling while the compressor clamps down (dB);
    # after it drops, the release lets the gain back up
    assert onset[bg.lags.index(16)] < onset[0] - 2.0
    offset = onset[len(bg.lags) + 1 :]
    assert offset[bg.lags.index(16)] > offset[0] + 1.0


def test_features_are_finite_on_silence():
    z = torch.zeros(2, 16128)
    assert torch.all(torch.isfinite(CrossSpectral(SR)(z, z)))
    assert torch.all(torch.isfinite(BandGainCurve(SR)(z, z)))
    assert torch.all(torch.isfinite(CrossSpectral(SR)(_speechlike(), z)))


def test_cross_spectral_needs_the_paired_model():
    from pimodule.laptop.fx.model import ModelConfig

    with pytest.raises(ValueError, match="paired"):
        ModelConfig(conditioning="dry", cross_spectral=True)
