"""Dry material: real recordings load, splits are disjoint, fluidsynth renders a phrase."""

from __future__ import annotations

import numpy as np

from pimodule.fx import sources


def test_splits_are_disjoint_and_both_non_empty():
    for kind in ("speech", "samples"):
        train = {p.name for p in sources._files(kind, "train")}
        held = {p.name for p in sources._files(kind, "heldout")}
        assert train and held and not train & held
    assert not set(sources.PROGRAMS["train"]) & set(sources.PROGRAMS["heldout"])


def test_fluidsynth_render_and_excerpts(tmp_path):
    audio = sources.render_program(73, seed=5, sample_rate=16000, cache_dir=tmp_path)
    assert audio.dtype == np.float32 and len(audio) > 16000 and np.abs(audio).max() > 0.01
    corpus = sources.DryCorpus(16000, {"instruments": [audio]})
    ex = corpus.excerpts(np.random.default_rng(0), 3, 8000, 2)
    assert ex.shape == (3, 2, 8000)
    rms_db = 20 * np.log10(np.sqrt((ex**2).mean((1, 2))))
    assert np.all((rms_db > -31) & (rms_db < -11))
