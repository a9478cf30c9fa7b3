"""The reverb twin's IR changes: built by the thread that sets them, crossfaded by the audio thread."""

from __future__ import annotations

import numpy as np
import pytest

from pimodule.device.fx.twin_chain import ChainTwin
from pimodule.device.fx.twin_effects import ReverbTwin

SR = 16000


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return 0.2 * np.random.default_rng(seed).standard_normal((1, n))


@pytest.mark.parametrize("block_size", [1, 64, 65, 128])
def test_after_the_crossfade_the_output_is_the_new_reverbs(block_size):
    x = _noise(12000)
    switched = ReverbTwin(SR)
    switched.set_params(ramp=False, decay_s=0.3, damping_pct=10.0, mix_pct=50.0)
    fresh = ReverbTwin(SR)
    fresh.set_params(ramp=False, decay_s=1.2, damping_pct=70.0, mix_pct=50.0)
    a, b = x.copy(), x.copy()
    switch_at = 4000
    for start in range(0, x.shape[-1], block_size):
        if start <= switch_at < start + block_size:
            switched.set_params(decay_s=1.2, damping_pct=70.0)  # crossfaded, not at once
        switched.process(a[:, start : start + block_size])
        fresh.process(b[:, start : start + block_size])
    n = switched.partition
    settled = (switch_at // n + 3) * n  # the switch's partition, its crossfade, then the new IR
    assert np.max(np.abs(a[:, settled:] - b[:, settled:])) <= 1e-12
    assert np.max(np.abs(a[:, switch_at:settled] - b[:, switch_at:settled])) > 1e-6  # it did fade


def test_chain_process_never_builds_an_ir(monkeypatch):
    chain = ChainTwin(SR, effects=("reverb",), max_block=128)
    chain.apply({"reverb": {"active": True, "params": {"decay_s": 0.4, "mix_pct": 40.0}}}, immediate=True)
    built = []
    original = ReverbTwin.spectra
    monkeypatch.setattr(ReverbTwin, "spectra", lambda self, *a: built.append(a) or original(self, *a))
    chain.set_params("reverb", decay_s=1.4, damping_pct=80.0, mix_pct=90.0)
    assert len(built) == 1  # built here, on the setting thread
    x = _noise(128 * 200)
    for start in range(0, x.shape[-1], 128):  # mix ramps, the IR crossfades: no IR built
        chain.process(x[:, start : start + 128])
    assert len(built) == 1
    assert np.all(np.isfinite(x))
    reverb = chain.stages["reverb"].effect
    assert reverb.params["decay_s"] == pytest.approx(1.4) and reverb.params["damping_pct"] == pytest.approx(80.0)
    assert reverb.params["mix_pct"] == pytest.approx(90.0, abs=1e-3)


def test_the_newest_of_several_quick_changes_wins():
    twin = ReverbTwin(SR)
    twin.set_params(ramp=False, decay_s=0.2, mix_pct=100.0)
    twin.set_params(decay_s=0.8)
    twin.set_params(decay_s=1.5)  # before the audio thread took the 0.8 one
    ref = ReverbTwin(SR)
    ref.set_params(ramp=False, decay_s=1.5, mix_pct=100.0)
    a, b = _noise(6000, 1), _noise(6000, 1)
    twin.process(a)
    ref.process(b)
    n = twin.partition
    assert np.max(np.abs(a[:, 2 * n :] - b[:, 2 * n :])) <= 1e-12
