"""Dry material: real recordings load, splits are disjoint, fluidsynth renders a phrase."""

from __future__ import annotations

import numpy as np
import pytest

from pimodule.laptop.fx import sources


def test_splits_are_disjoint_and_both_non_empty():
    for kind in ("speech", "samples"):
        train = {p.name for p in sources._files(kind, "train")}
        held = {p.name for p in sources._files(kind, "heldout")}
        assert train and held and not train & held
    assert not set(sources.PROGRAMS["train"]) & set(sources.PROGRAMS["heldout"])


def test_wide_instruments_stay_out_of_the_held_out_families():
    wide = sources.INSTRUMENT_SETS["wide"]
    assert set(sources.INSTRUMENT_SETS["core"]) <= set(wide) and len(wide) == 89
    core_only = set(wide) - set(sources.PROGRAMS["train"])
    assert all(p - p % 8 not in {0, 40, 56, 72} and p < 120 for p in core_only)
    assert not set(wide) & set(sources.PROGRAMS["heldout"])


def test_unknown_instrument_set_is_refused(tmp_path):
    with pytest.raises(ValueError, match="instruments must be one of"):
        sources.DryCorpus.load(16000, "train", ("instruments",), cache_dir=tmp_path, instruments="all")


def test_wide_set_loads_its_instruments(tmp_path):
    corpus = sources.DryCorpus.load(
        16000, "train", ("instruments",), cache_dir=tmp_path, max_files=8, instruments="wide"
    )
    held = sources.DryCorpus.load(
        16000, "heldout", ("instruments",), cache_dir=tmp_path, max_files=8, instruments="wide"
    )
    assert len(corpus.clips["instruments"]) == 8 and len(held.clips["instruments"]) == 4
    names = sorted(p.name for p in tmp_path.glob("gm*.wav"))
    assert {n[:5] for n in names} >= {"gm008", "gm009", "gm040", "gm073"}


def test_fluidsynth_render_and_excerpts(tmp_path):
    audio = sources.render_program(73, seed=5, sample_rate=16000, cache_dir=tmp_path)
    assert audio.dtype == np.float32 and len(audio) > 16000 and np.abs(audio).max() > 0.01
    corpus = sources.DryCorpus(16000, {"instruments": [audio]})
    ex = corpus.excerpts(np.random.default_rng(0), 3, 8000, 2)
    assert ex.shape == (3, 2, 8000)
    rms_db = 20 * np.log10(np.sqrt((ex**2).mean((1, 2))))
    assert np.all((rms_db > -31) & (rms_db < -11))
