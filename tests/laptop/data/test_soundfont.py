"""Real fluidsynth renders of short phrases from the FluidR3 GM soundfont."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pimodule.core.features import yin_f0
from pimodule.laptop.data import cli as data_cli
from pimodule.laptop.data.dataset import load_dataset, load_info
from pimodule.laptop.data.midi import Note, pitch_at
from pimodule.laptop.data.soundfont import (
    DEFAULT_SOUNDFONT,
    RenderConfig,
    RenderError,
    render_dataset,
    render_phrases,
    split_seeds,
)

pytestmark = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not DEFAULT_SOUNDFONT.is_file(),
    reason="needs fluidsynth and fluid-soundfont-gm (see .ci/run)",
)

SR = 16000
SHORT = RenderConfig(sample_rate=SR, phrase_seconds=3.0)


@pytest.fixture(scope="module")
def violin_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("violin")
    render_dataset(40, out, n_phrases=2, n_held_out=1, seed=3, config=SHORT, example_seconds=1.0)
    return out


def test_render_dataset_shapes_and_info(violin_dataset: Path) -> None:
    info = load_info(violin_dataset)
    assert info["program"] == 40 and info["instrument"] == "violin"
    assert info["sample_rate"] == SR and info["hop_size"] == 64
    for split, n_files in (("train", 2), ("held_out", 1)):
        d = load_dataset(violin_dataset, split)
        n = info["splits"][split]["n_examples"]
        assert n >= n_files  # every phrase gives at least one example
        assert d["audio"].shape == (n, SR) and d["f0_hz"].shape == (n, SR // 64)
        assert np.abs(d["audio"]).max() <= 1.0 and np.abs(d["audio"]).max() > 0.01
        assert d["loudness_db"].max() > -40.0
    wavs = sorted(p.name for p in (violin_dataset / "wav" / "held_out").glob("*.wav"))
    assert len(wavs) == 1
    train_seeds, held_seeds = split_seeds(3, 2, 1)
    assert not set(train_seeds) & set(held_seeds)
    assert wavs == [f"violin_{held_seeds[0]:07d}.wav"]


def test_rendered_wavs_are_mono_at_model_rate(violin_dataset: Path) -> None:
    for wav in (violin_dataset / "wav" / "train").glob("*.wav"):
        audio, sr = sf.read(wav, always_2d=True)
        assert sr == SR and audio.shape == (int(3.0 * SR), 1)


def test_violin_f0_follows_the_midi_notes(violin_dataset: Path) -> None:
    info = json.loads((violin_dataset / "wav" / "train" / "phrases.json").read_text())
    errors = []
    for phrase in info["phrases"]:
        audio, sr = sf.read(violin_dataset / "wav" / "train" / phrase["file"], dtype="float32")
        f0, per = yin_f0(audio, sr, fmin_hz=150.0, fmax_hz=3200.0)
        notes = [Note(**n) for n in phrase["notes"]]
        t = (np.arange(len(f0)) * 64 + 32) / sr
        midi = pitch_at(notes, t)
        ok = ~np.isnan(midi) & (per > 0.5)
        for n in notes:  # skip each attack (and the legato transition)
            ok &= ~((t >= n.start_s) & (t < n.start_s + 0.08))
        ref_hz = 440.0 * 2 ** ((midi[ok] - 69) / 12)
        errors.append(1200 * np.log2(f0[ok] / ref_hz))
    cents = np.abs(np.concatenate(errors))
    assert len(cents) > 100
    # vibrato swings up to ±45 cents around the note; the median stays well inside that
    assert np.median(cents) < 25.0
    assert np.mean(cents < 100.0) > 0.9  # no wholesale octave errors


def test_same_seed_renders_same_audio(tmp_path: Path) -> None:
    cfg = RenderConfig(sample_rate=SR, phrase_seconds=1.5)
    a = render_phrases(73, [5], tmp_path / "a", config=cfg)[0]
    b = render_phrases(73, [5], tmp_path / "b", config=cfg)[0]
    np.testing.assert_array_equal(sf.read(a)[0], sf.read(b)[0])


def test_missing_soundfont_and_fluidsynth_are_clear_errors(tmp_path: Path, monkeypatch) -> None:
    cfg = RenderConfig(sample_rate=SR, phrase_seconds=1.0, soundfont=tmp_path / "nope.sf2")
    with pytest.raises(RenderError, match="nope.sf2"):
        render_dataset(40, tmp_path / "x", n_phrases=1, n_held_out=1, config=cfg)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RenderError, match="fluidsynth"):
        render_dataset(40, tmp_path / "y", n_phrases=1, n_held_out=1, config=SHORT)


def test_cli_two_programs_make_two_datasets(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    data_cli.configure(parser)
    args = parser.parse_args(
        [
            "render",
            "--program",
            "violin",
            "--program",
            "73",
            "--out",
            str(tmp_path),
            "--n-phrases",
            "1",
            "--n-held-out",
            "1",
            "--phrase-seconds",
            "2",
            "--example-seconds",
            "1",
        ]
    )
    assert data_cli.main(args) == 0
    for name, program in (("violin", 40), ("flute", 73)):
        assert load_info(tmp_path / name)["program"] == program
        assert load_dataset(tmp_path / name, "held_out")["audio"].shape[1] == SR
    out = capsys.readouterr().out
    assert "violin" in out and "flute" in out and "to train on" in out


def test_cli_prepare_and_error_exit(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    data_cli.configure(parser)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "bad.wav").write_bytes(b"garbage" * 100)
    args = parser.parse_args(["prepare", str(tmp_path / "src"), "--out", str(tmp_path / "ds")])
    assert data_cli.main(args) == 1
    args = parser.parse_args(["render", "--program", "kazoo", "--out", str(tmp_path / "k")])
    assert data_cli.main(args) == 1
