"""The dataset summary's warnings: each detector fires on the fault it names and not on a dry,
monophonic recording with pauses."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import fftconvolve

from pimodule.laptop.data import summary
from pimodule.laptop.data.prepare import PrepareConfig, stretch_examples

SR = 16000
RNG = np.random.default_rng(0)


def _reverb(x: np.ndarray, rt60_s: float, mix: float) -> np.ndarray:
    t = np.arange(int(2.5 * SR)) / SR
    ir = RNG.normal(0, 1, len(t)) * np.exp(-6.9 * t / rt60_s)
    return (1 - mix) * x + mix * fftconvolve(x, ir / np.sqrt(np.sum(ir**2)))[: len(x)]


CASES = {
    "dry": (lambda p: p(40, seed=1), []),
    "chords": (lambda p: (p(40, seed=1) + p(40, seed=2) + p(40, seed=3)) / 3, ["polyphony", "too little silence"]),
    "no pauses": (lambda p: p(40, seed=1, pause_s=0.0), ["too little silence"]),
    "reverb": (lambda p: _reverb(p(40, seed=1, pause_s=1.5), 2.0, 0.5), ["reverb"]),
    "noise": (lambda p: p(40, seed=1) + RNG.normal(0, 10 ** (-45 / 20), 40 * SR), ["background noise"]),
}


@pytest.mark.parametrize("case", CASES)
def test_each_warning_fires_on_its_fault_only(case: str, phrases) -> None:
    make, expected = CASES[case]
    _, feats = stretch_examples(make(phrases).astype(np.float32), PrepareConfig())
    s = summary.summarize([feats], [], SR / 64)
    found = [w.split(":")[0].split(" suspected")[0].split(" (or")[0] for w in s["warnings"]]
    assert found == expected, s["warnings"]


def test_note_names_and_shortfall() -> None:
    assert [summary.note_name(f) for f in (440.0, 261.63, 27.5, 4186.0)] == ["A4", "C4", "A0", "C8"]
    enough = {"train": {"voiced_minutes": 3.5}, "held_out": {"voiced_seconds": 30.0}}
    assert summary.shortfall(enough, 3.0, 10.0) is None
    short = summary.shortfall({"train": {"voiced_minutes": 1.0}, "held_out": {"voiced_seconds": 4.0}}, 3.0, 10.0)
    assert (
        "only 1.0 min" in short
        and summary.duration(0.4) == "24 s"
        and "at least 3 min" in short
        and "record about 3 more minutes" in short
    )
    assert "4 s of pitched audio" in short
