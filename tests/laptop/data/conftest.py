"""Test recordings made at test time: harmonic notes in phrases with pauses (monophonic, dry)."""

from __future__ import annotations

import numpy as np
import pytest

SR = 16000


def tone(seconds: float, sr: int = SR, f0_hz: float = 220.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * sum(np.sin(2 * np.pi * k * f0_hz * t) / k for k in range(1, 6))).astype(np.float32)


def make_phrases(seconds: float, seed: int = 0, sr: int = SR, pause_s: float = 0.6) -> np.ndarray:
    """Notes of 0.4-1.2 s (A3 to A4) in phrases of 2-4 notes with ``pause_s`` between phrases."""
    rng = np.random.default_rng(seed)
    parts, n = [], 0
    while n < seconds * sr:
        for _ in range(int(rng.integers(2, 5))):
            note = tone(rng.uniform(0.4, 1.2), sr, 220.0 * 2 ** (rng.integers(0, 13) / 12), 0.25)
            edge = np.minimum(np.arange(len(note)), np.arange(len(note))[::-1])
            parts.append(note * np.minimum(1, edge / (0.02 * sr)))
        parts.append(np.zeros(int(pause_s * sr), np.float32))
        n = sum(len(p) for p in parts)
    return np.concatenate(parts)[: int(seconds * sr)].astype(np.float32)


@pytest.fixture
def phrases():
    return make_phrases
