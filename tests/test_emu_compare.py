"""firmware/emu/compare_recordings.py: how pi-check compares the emulated daemon's recordings
with this machine's (a CV change landing a poll later is not a difference in the sound)."""

import importlib.util
from pathlib import Path

import numpy as np

RATE = 16000


def _module():
    path = Path(__file__).resolve().parents[1] / "firmware/emu/compare_recordings.py"
    spec = importlib.util.spec_from_file_location("compare_recordings", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _melody(mod, seconds: float, lag_s: float, timbre: float = 0.0) -> np.ndarray:
    """A voice following the simulated CV melody, each note's pitch arriving ``lag_s`` late."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = np.full_like(t, 220.0)
    for _, t0, t1, _gate, volts in mod.notes(seconds):
        f0[(t >= t0 + lag_s) & (t < t1 + lag_s)] = 220.0 * 2**volts
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    return 0.3 * np.sin(phase) + timbre * 0.3 * np.sin(3 * phase)


def test_a_cv_change_landing_later_is_left_out_but_a_different_sound_is_not():
    mod = _module()
    ref = _melody(mod, 3.0, 0.0)
    late = _melody(mod, 3.0, 0.02)  # the transposition lands 20 ms later on the other machine
    strict = mod.compare_windows(ref, late, RATE, cv_changes=False)
    assert strict["spectrum_db_diff_p90"] > 2.0  # what failed pi-check now and then
    fair = mod.compare_windows(ref, late, RATE)
    assert fair["windows_at_cv_changes"] == 10 and fair["windows_compared"] == 20
    assert fair["spectrum_db_diff_p90"] < 0.1 and fair["level_db_diff_p90"] < 0.01
    # a recording that sounds different between the changes still fails
    bright = _melody(mod, 3.0, 0.0, timbre=0.5)
    other = mod.compare_windows(bright, _melody(mod, 3.0, 0.0, timbre=0.05), RATE)
    assert other["spectrum_db_diff_median"] > 2.0
    quiet = mod.compare_windows(ref, 0.5 * ref, RATE)
    assert abs(quiet["level_db_diff_median"] - 6.02) < 0.01
