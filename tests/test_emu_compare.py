"""firmware/emu/compare_recordings.py: how pi-check compares the emulated daemon's recordings
with this machine's. Playing the same (a CV change landing a poll later, detail drifting apart
after it) passes; sounding different (an octave off, another timbre, another level) does not."""

import importlib.util
from pathlib import Path

import numpy as np

RATE = 16000
BANDS_DB = 1.0  # pi-check's tolerance (firmware/emu/pi_check.py DAEMON_BANDS_DB)


def _module():
    path = Path(__file__).resolve().parents[1] / "firmware/emu/compare_recordings.py"
    spec = importlib.util.spec_from_file_location("compare_recordings", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _melody(mod, lag_s=0.0, timbre=0.1, octave=0, seed=0, seconds=3.0) -> np.ndarray:
    """A voice following the simulated CV melody (each note's pitch arriving ``lag_s`` late), with
    a breath of noise drawn from ``seed``."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = np.full_like(t, 220.0)
    for _, t0, t1, _gate, volts in mod.notes(seconds):
        f0[(t >= t0 + lag_s) & (t < t1 + lag_s)] = 220.0 * 2 ** (volts + octave)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    noise = 0.02 * np.random.default_rng(seed).standard_normal(t.shape)
    return 0.3 * np.sin(phase) + timbre * 0.3 * np.sin(3 * phase) + noise


def test_playing_the_same_passes():
    mod = _module()
    ref = _melody(mod)
    same = mod.compare_windows(ref, ref.copy(), RATE)
    assert same["bands_db_diff_p90"] == 0.0 and same["first_sample_differing_1e-4"] is None
    # the transposition lands 60 ms later and the noise has drifted apart: the same playing
    drifted = _melody(mod, lag_s=0.06, seed=1)
    fair = mod.compare_windows(ref, drifted, RATE)
    assert fair["windows_at_cv_changes"] == 10 and fair["windows_compared"] == 20
    assert fair["bands_db_diff_p90"] < BANDS_DB and fair["level_db_diff_p90"] < 0.1
    # counted at the note changes too, the late landings alone exceed the tolerance
    strict = mod.compare_windows(ref, drifted, RATE, cv_changes=False)
    assert strict["bands_db_diff_p90"] > BANDS_DB


def test_sounding_different_fails():
    mod = _module()
    ref = _melody(mod)
    assert mod.compare_windows(ref, _melody(mod, octave=1), RATE)["bands_db_diff_median"] > 3 * BANDS_DB
    assert mod.compare_windows(ref, _melody(mod, timbre=0.5), RATE)["bands_db_diff_median"] > BANDS_DB
    quiet = mod.compare_windows(ref, 0.5 * ref, RATE)
    assert abs(quiet["level_db_diff_median"] - 6.02) < 0.01 and quiet["bands_db_diff_p90"] > 5.0
