import json

import numpy as np
import pytest

from pimodule import features


def _tone_dataset(n_examples: int, seed: int, seconds: float = 1.5, sr: int = 16000, hop: int = 64):
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("audio", "f0_hz", "loudness_db", "periodicity")}
    n = int(seconds * sr) // hop * hop
    t = np.arange(n) / sr
    for _ in range(n_examples):
        f0 = rng.uniform(150, 500) * 2 ** (0.3 * np.sin(2 * np.pi * 5 * t) / 12)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        env = np.clip(np.sin(np.pi * t / seconds) * 2, 0, 1)
        x = (0.2 * env * sum(np.sin(k * phase) / k for k in range(1, 12))).astype(np.float32)
        f, p = features.yin_f0(x, sr, hop_size=hop)
        out["audio"].append(x)
        out["f0_hz"].append(f)
        out["periodicity"].append(p)
        out["loudness_db"].append(features.a_weighted_loudness_db(x, sr, hop_size=hop))
    return {k: np.stack(v).astype(np.float32) for k, v in out.items()}


@pytest.fixture(scope="session")
def tone_data(tmp_path_factory):
    """A small dataset folder of harmonic tones with vibrato (train + held_out)."""
    root = tmp_path_factory.mktemp("tones")
    np.savez(root / "train.npz", **_tone_dataset(6, seed=0))
    np.savez(root / "held_out.npz", **_tone_dataset(2, seed=1))
    (root / "dataset.json").write_text(json.dumps({"sample_rate": 16000, "hop_size": 64}))
    return root
