"""The transfer-analysis evaluation: zero against itself, small on a steady tone, large where a
line crosses an octave jump, and its results page section."""

from __future__ import annotations

import numpy as np

from pimodule.laptop import analysis_eval
from pimodule.laptop.results_device import render_transfer_analysis

RATE = analysis_eval.RATE


def _tone(hz: np.ndarray) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * np.cumsum(hz) / RATE)


def test_every_frame_against_itself_is_zero():
    x = _tone(np.full(RATE, 330.0))
    cents, db = analysis_eval.differences(x, (1, 1))
    assert len(cents) > 200 and np.all(cents == 0) and np.all(db == 0)


def test_steady_tone_small_octave_jump_large():
    t = np.arange(RATE) / RATE
    cents, db = analysis_eval.differences(_tone(330.0 * 2 ** (0.5 * np.sin(2 * np.pi * 2 * t))), (4, 2))
    assert np.percentile(cents, 90) < 5 and np.percentile(db, 90) < 0.5
    jump, _ = analysis_eval.differences(_tone(np.where(t < 0.5, 220.0, 440.0)), (4, 2))
    assert jump.max() > 100  # the frames on the line across the jump


def test_results_section_names_the_shipped_spacing():
    row = {
        "f0_every": 4,
        "loudness_every": 2,
        "shipped": True,
        "added_latency_ms": 12.0,
        "f0_cents": {"n": 3, "p50": 0.2, "p90": 7.0, "p99": 400.0},
        "loudness_db": {"n": 3, "p50": 0.0, "p90": 0.2, "p99": 1.0},
        "per_recording_p90": {"flute": [0.5, 0.01]},
    }
    page = render_transfer_analysis({"recordings": ["flute"], "rate_hz": 16000, "hop": 64, "rows": [row]})
    assert "4 / 2 (shipped)" in page and "| flute | 0.5 | 0.01 |" in page
