"""The real-recording benchmark: third-party chains really applied (each family's own code), examples
deterministic, its recordings never in the training lists, its held-out families refused by training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pimodule.core.fx_specs import LABEL_DB, SELECTABLE
from pimodule.laptop.fx import realbench, sources, thirdparty
from pimodule.laptop.fx.run import TrainConfig

SR = 16000


def _tone(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    env = np.exp(-5 * (t % 0.25))
    return 0.3 * env * sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220.0, 440.0, 660.0), 1))


def _installed(family: str) -> bool:
    try:
        thirdparty.render(_tone(0.05), SR, thirdparty.ForeignChain(family, [("gain", {"gain_db": 0.0})]))
    except (thirdparty.MissingImplementation, ImportError):
        return False
    return True


@pytest.mark.parametrize("family", thirdparty.FAMILIES)
def test_each_family_really_processes_the_audio(family):
    if not _installed(family):
        pytest.skip(f"{family} is not installed")
    x = _tone()
    rng = np.random.default_rng(4)
    for effect in thirdparty.EFFECTS:
        chain = thirdparty.ForeignChain(family, [(effect, thirdparty._DRAW[family](effect, rng, SR / 2))])
        y = thirdparty.render(x, SR, chain)
        assert y.shape == x.shape and np.all(np.isfinite(y))
        assert np.abs(y - x).max() > 1e-3, effect  # changed, not passed through
        assert np.array_equal(y, thirdparty.render(x, SR, chain))  # the same every time
    gain = thirdparty.ForeignChain(family, [("gain", {"gain_db": -6.0})])
    tol = 5e-3 if family == "dasp" else 1e-4  # dasp runs at 44.1 kHz: resampled there and back
    np.testing.assert_allclose(thirdparty.render(x, SR, gain), x * 10 ** (-6 / 20), atol=tol)


def test_sox_is_the_sox_command():
    if not _installed("sox"):
        pytest.skip("sox is not installed")
    import subprocess

    x = _tone(0.5)
    p = {"gain": 20.0, "colour": 40.0}
    y = thirdparty.render(x, SR, thirdparty.ForeignChain("sox", [("distortion", p)]))
    raw = subprocess.run(
        ["sox", "-q", "-t", "f64", "-r", str(SR), "-c", "1", "-", "-t", "f64", "-", "overdrive", "20.00", "40.00"],
        input=(x * min(1.0, 10 ** (-1 / 20) / np.abs(x).max())).astype("<f8").tobytes(),
        capture_output=True,
        check=True,
    ).stdout
    np.testing.assert_allclose(y, np.frombuffer(raw, "<f8")[: len(x)], atol=1e-6)


def test_draws_follow_the_seed_and_put_level_changes_anywhere():
    a = [thirdparty.draw("pedalboard", np.random.default_rng(s), SR).to_json() for s in range(40)]
    b = [thirdparty.draw("pedalboard", np.random.default_rng(s), SR).to_json() for s in range(40)]
    assert a == b
    stages = [[n for n, _ in c["stages"]] for c in a]
    assert any(s and s[0] == "gain" for s in stages) and any(s and s[-1] == "gain" for s in stages)
    assert any("gain" in s[1:-1] for s in stages if len(s) > 2)
    for effect in thirdparty.EFFECTS:  # each effect independently on about half the time
        share = np.mean([effect in s for s in stages])
        assert 0.2 < share < 0.8


def test_the_benchmark_is_deterministic_and_labels_what_is_heard():
    recs = [r for r in realbench.RECORDINGS if r.package.startswith("apt:")]
    try:
        one = realbench.build(seed=3, draws=1, families=("pedalboard",), recordings=recs[:2])
    except realbench.BenchmarkError as err:
        pytest.skip(str(err))
    two = realbench.build(seed=3, draws=1, families=("pedalboard",), recordings=recs[:2])
    for a, b in zip(one, two):
        assert np.array_equal(a.dry, b.dry) and np.array_equal(a.wet, b.wet) and a.chain.to_json() == b.chain.to_json()
        assert a.dry.shape == (int(realbench.EXCERPT_S * SR),)
        assert np.max(np.abs(a.wet)) == pytest.approx(10 ** (realbench.WET_PEAK_DB / 20), rel=1e-6)
        assert set(a.change_db) == set(a.chain.effects)
        assert a.audible == {e: a.change_db.get(e, 0.0) >= LABEL_DB for e in SELECTABLE}
    other = realbench.build(seed=4, draws=1, families=("pedalboard",), recordings=recs[:1])
    assert not np.array_equal(other[0].dry, one[0].dry) or other[0].chain.to_json() != one[0].chain.to_json()


def test_removal_changes_measure_the_effect_taken_out():
    x = _tone()
    chain = thirdparty.ForeignChain(
        "pedalboard",
        [
            ("reverb", {"room_size": 0.9, "damping": 0.2, "wet_level": 0.6, "dry_level": 0.5}),
            ("gain", {"gain_db": -3.0}),
        ],
    )
    y = thirdparty.render(x, SR, chain)
    change = realbench.removal_changes(x, SR, chain, y)
    assert set(change) == {"reverb"} and change["reverb"] > LABEL_DB
    quiet = thirdparty.ForeignChain(
        "pedalboard",
        [("compressor", {"threshold_db": 0.0, "ratio": 2.0, "attack_ms": 5.0, "release_ms": 50.0, "makeup_db": 0.0})],
    )
    assert realbench.removal_changes(x * 0.1, SR, quiet, thirdparty.render(x * 0.1, SR, quiet))["compressor"] < 0.1


def test_benchmark_recordings_are_never_training_material():
    bench = {p.resolve() for p in realbench.benchmark_paths()}
    names = {p.name for p in bench}
    for kind in sources.ALL_KINDS:
        if kind == "instruments":
            continue  # soundfont renders, not files
        try:
            files = sources.all_files(kind)
        except sources.SourceError:
            continue
        assert not bench & {p.resolve() for p in files}, kind
        assert not names & {p.name for p in files}, kind
    folders = {str(p.parent) for p in bench}
    for root in (sources.SPEECH_DIR, sources.SAMPLES_DIR, sources.MOH_DIR, sources.HYDROGEN_DIR, sources.LMMS_DIR):
        assert not any(f.startswith(str(root)) for f in folders)


def test_training_refuses_the_held_out_families():
    for family in thirdparty.HELD_OUT:
        with pytest.raises(ValueError, match="out of training"):
            TrainConfig(foreign=(family,), foreign_share=0.5)
    TrainConfig(foreign=("pedalboard",), foreign_share=0.5)
    with pytest.raises(ValueError, match="objective"):
        TrainConfig(objective="param", foreign=("pedalboard",), foreign_share=0.5)


def test_foreign_batches_carry_removal_labels():
    from pimodule.laptop.fx.batch import foreign_batch, peak_normalise

    rng = np.random.default_rng(0)
    dry = np.stack([_tone()[None] for _ in range(4)]).astype(np.float32)
    b = foreign_batch(dry, SR, "dry", ("pedalboard",), rng)
    assert b.wet.shape == (4, SR) and torch.equal(b.other, b.source) and b.target is b.wet
    assert torch.all(b.chain.active[:, -1] == 1) and torch.all((b.change[:, :4] > 0) == (b.chain.active[:, :4] > 0.5))
    b = peak_normalise(b, rng)
    peaks = b.wet.abs().amax(-1)
    assert torch.all((peaks <= 1.0) & (peaks >= 10 ** (-12.1 / 20))) and b.target is b.wet
