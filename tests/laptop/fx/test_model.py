"""The estimator's waveform statistics and wet-vs-dry gain curve: finite everywhere, and they move the
way the cues should."""

import numpy as np
import pytest
import torch

from pimodule.laptop.fx.model import Estimator, GainCurve, ModelConfig, WaveformStats


def _speechlike(n=16000, seed=0):
    """Noise with a syllable-rate envelope: a wide level spread and a high crest factor."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    env = (0.05 + np.abs(np.sin(2 * np.pi * 3.0 * t))) ** 2
    return torch.tensor((rng.standard_normal(n) * env)[None], dtype=torch.float32)


def _split(stats: WaveformStats, feats: torch.Tensor):
    a, b = len(stats.amp_centres), len(stats.level_centres)
    return feats[0, :a], feats[0, a : a + b], feats[0, a + b :]


def test_finite_on_silence_and_on_full_scale():
    stats = WaveformStats()
    for x in (torch.zeros(2, 16000), torch.ones(2, 16000), _speechlike().repeat(2, 1) * 1e4):
        out = stats(x)
        assert out.shape == (2, stats.out_dim) and torch.all(torch.isfinite(out))


def test_hard_clipping_piles_up_at_the_ceiling():
    stats = WaveformStats()
    x = _speechlike()
    clipped = x.clamp(-0.3 * float(x.abs().max()), 0.3 * float(x.abs().max()))
    amp_dry, _, crest_dry = _split(stats, stats(x))
    amp_wet, _, crest_wet = _split(stats, stats(clipped))
    assert amp_wet[-1] > amp_dry[-1] + 1.0  # ten times the share of samples at the peak
    centres = stats.crest_centres
    mean_crest = lambda h: float((10**h * centres).sum() / (10**h).sum())  # noqa: E731
    assert mean_crest(crest_wet) < mean_crest(crest_dry) - 2.0


def test_levelling_narrows_the_level_spread():
    stats = WaveformStats()
    x = _speechlike(256 * 62)
    frames = x.reshape(1, -1, 256)
    levelled = (frames / frames.square().mean(-1, keepdim=True).sqrt()).reshape(1, -1)
    _, level_dry, _ = _split(stats, stats(x))
    _, level_wet, _ = _split(stats, stats(levelled))
    # all frames at the top level: the 0 dB bin holds (nearly) everything
    assert level_wet[-1] > -0.05 and level_dry[-1] < level_wet[-1] - 0.3


@pytest.mark.parametrize("conditioning", ["blind", "dry"])
def test_estimator_with_stats_takes_and_returns_the_documented_shapes(conditioning):
    torch.manual_seed(0)
    cfg = ModelConfig(
        channels=8, n_layers=1, n_mels=16, n_fft=256, hop=128, waveform_stats=True, conditioning=conditioning
    )
    model = Estimator(cfg)
    wet = _speechlike(8000).repeat(3, 1)
    chain, active_logits, _ = model(wet, None if conditioning == "blind" else wet * 0.5)
    assert active_logits.shape[0] == 3 and torch.all(torch.isfinite(chain.unit))
    assert Estimator(ModelConfig()).stats is None  # runs trained before the statistics still load


def _gain_curve(curve: GainCurve, wet, dry):
    out = curve(wet, dry)[0]
    n = len(curve.centres)
    return out[:n] * 10.0, out[n:]  # mean gain per bin (dB), log occupancy


def test_gain_curve_reads_a_plain_gain_in_every_occupied_bin():
    curve = GainCurve()
    dry = _speechlike()
    gain_db, occupancy = _gain_curve(curve, dry * 10 ** (6.0 / 20), dry)
    used = occupancy > -2.0
    assert used.sum() >= 4 and torch.allclose(gain_db[used], torch.full_like(gain_db[used], 6.0), atol=0.05)


def test_gain_curve_bends_down_for_loud_frames_when_levelled():
    curve = GainCurve()
    dry = _speechlike(256 * 62)
    frames = dry.reshape(1, -1, 256)
    rms = frames.square().mean(-1, keepdim=True).sqrt()
    levelled = (frames * (rms / rms.max()) ** -0.75).reshape(1, -1)  # 4:1 towards the top level
    gain_db, occupancy = _gain_curve(curve, levelled, dry)
    used = torch.nonzero(occupancy > -2.0).flatten()
    assert len(used) >= 4
    assert gain_db[used[0]] > gain_db[used[-1]] + 10.0  # quiet frames raised more than loud ones
    assert torch.all(torch.diff(gain_db[used]) < 0.5)  # (nearly) monotonic


def test_gain_curve_is_finite_on_silence():
    out = GainCurve()(torch.zeros(2, 16000), torch.zeros(2, 16000))
    assert torch.all(torch.isfinite(out))


def test_paired_needs_the_time_aligned_dry_signal():
    with pytest.raises(ValueError, match="dry"):
        ModelConfig(conditioning="reference", paired=True)
    model = Estimator(
        ModelConfig(channels=8, n_layers=1, n_mels=16, n_fft=256, hop=128, conditioning="dry", paired=True)
    )
    wet = _speechlike(8000).repeat(2, 1)
    chain, active_logits, _ = model(wet, wet * 0.5)
    assert active_logits.shape[0] == 2 and torch.all(torch.isfinite(chain.unit))
    with pytest.raises(ValueError, match="second signal"):
        model(wet)
