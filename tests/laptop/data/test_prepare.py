"""prepare(): reading, resampling, trimming, splitting, features, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pimodule.laptop.data.dataset import ARRAYS, load_dataset, load_info
from pimodule.laptop.data.prepare import (
    AudioFileError,
    NoUsableAudioError,
    PrepareConfig,
    examples_of_file,
    load_audio,
    prepare,
)
from pimodule.core.features import yin_f0

SR = 16000


def _tone(seconds: float, sr: int, f0_hz: float = 220.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * sum(np.sin(2 * np.pi * k * f0_hz * t) / k for k in range(1, 6))).astype(np.float32)


def _write(path: Path, audio: np.ndarray, sr: int, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sr, **kw)
    return path


def test_44k_stereo_flac_becomes_16k_mono(tmp_path: Path) -> None:
    sr = 44100
    left = _tone(2.0, sr, 330.0)
    stereo = np.stack([left, 0.5 * left], axis=1)
    _write(tmp_path / "src" / "a.flac", stereo, sr)
    mono = load_audio(tmp_path / "src" / "a.flac", SR)
    assert mono.ndim == 1 and abs(len(mono) - 2 * SR) <= 2
    f0, _ = yin_f0(mono, SR)
    assert abs(1200 * np.log2(np.median(f0[10:-10]) / 330.0)) < 5.0
    # mix to mono: mean of the channels (0.75 of the left), FLAC 16-bit quantisation
    mid = slice(SR // 2, SR // 2 + 1000)
    assert np.max(np.abs(mono[mid])) == pytest.approx(0.75 * np.max(np.abs(left)), rel=0.02)

    info = prepare(tmp_path / "src", tmp_path / "ds", example_seconds=0.5)
    train = load_dataset(tmp_path / "ds", "train")
    assert info["sample_rate"] == SR and info["hop_size"] == 64
    assert train["audio"].shape[1] == 8000 and train["f0_hz"].shape[1] == 8000 // 64
    assert train["audio"].shape[0] >= 3


@pytest.mark.parametrize("example_seconds, hop_size", [(1.0, 64), (0.5, 65), (0.3, 128)])
def test_dataset_shapes_and_features(tmp_path: Path, example_seconds: float, hop_size: int) -> None:
    for i, f0 in enumerate((196.0, 440.0, 880.0)):
        _write(tmp_path / "src" / f"{i}.wav", _tone(2.2, SR, f0), SR)
    info = prepare(tmp_path / "src", tmp_path / "ds", example_seconds=example_seconds,
                   hop_size=hop_size, held_out=0.3, seed=1)
    n_t = info["example_samples"]
    assert n_t % hop_size == 0
    total = 0
    for split in ("train", "held_out"):
        d = load_dataset(tmp_path / "ds", split)
        assert set(d) == set(ARRAYS)
        assert d["audio"].shape == (info["splits"][split]["n_examples"], n_t)
        for k in ("f0_hz", "periodicity", "loudness_db"):
            assert d[k].shape == (len(d["audio"]), n_t // hop_size)
            assert d[k].dtype == np.float32 and np.all(np.isfinite(d[k]))
        total += len(d["audio"])
    assert info["splits"]["held_out"]["n_examples"] > 0
    held_files = {f["file"] for f in info["splits"]["held_out"]["files"]}
    train_files = {f["file"] for f in info["splits"]["train"]["files"]}
    assert held_files and not held_files & train_files  # whole files held out
    feats = info["features"]
    assert feats["fmin_hz"] == 40.0 and feats["yin_window_size"] == 1024
    assert feats["loudness_n_fft"] == 1024 and feats["oversample"] == 2
    # the device's streaming tracker, built from dataset.json, reproduces the cached features
    from pimodule.core.streaming_features import StreamingFeatures

    stream = StreamingFeatures.from_dataset_info(info)
    assert stream.hop_size == hop_size and stream.yin_window_size == 1024
    d = load_dataset(tmp_path / "ds", "train")
    out = stream.push(d["audio"][0])
    n = len(out[2])
    assert n > 0
    # loudness of example 0's first frames (same signal from its start; context differs only
    # where the example was cut out of the longer file, i.e. at the very start)
    np.testing.assert_allclose(out[2][20:n], d["loudness_db"][0][20:n], atol=0.5)
    on_disk = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert on_disk == load_info(tmp_path / "ds")


def test_train_and_held_out_folders_are_used(tmp_path: Path) -> None:
    _write(tmp_path / "src" / "train" / "a.wav", _tone(1.0, SR), SR)
    _write(tmp_path / "src" / "train" / "b.wav", _tone(1.0, SR, 300.0), SR)
    _write(tmp_path / "src" / "held_out" / "c.wav", _tone(1.0, SR, 500.0), SR)
    info = prepare(tmp_path / "src", tmp_path / "ds", example_seconds=0.5)
    assert [Path(f["file"]).name for f in info["splits"]["held_out"]["files"]] == ["c.wav"]
    held = load_dataset(tmp_path / "ds", "held_out")
    f0 = held["f0_hz"][held["periodicity"] > 0.5]
    assert abs(1200 * np.log2(np.median(f0) / 500.0)) < 5.0


def test_single_file_holds_out_its_last_examples(tmp_path: Path) -> None:
    _write(tmp_path / "one.wav", _tone(3.0, SR), SR)
    info = prepare(tmp_path / "one.wav", tmp_path / "ds", example_seconds=0.5, held_out=0.2)
    n_train, n_held = (info["splits"][s]["n_examples"] for s in ("train", "held_out"))
    assert n_held >= 1 and n_train >= 3


def test_silence_is_trimmed_and_partial_piece_padded(tmp_path: Path) -> None:
    tone = _tone(1.3, SR)
    audio = np.concatenate([np.zeros(SR), tone, np.zeros(SR)])
    path = _write(tmp_path / "x.wav", audio, SR, subtype="FLOAT")
    cfg = PrepareConfig(example_seconds=0.5)
    ex = examples_of_file(path, cfg)
    # 1.3 s of tone (+ margins) -> two full examples and one padded piece (>= half an example)
    assert ex["audio"].shape == (3, cfg.example_samples)
    onset = int(np.argmax(np.abs(ex["audio"][0]) > 0.01))
    assert 0 < onset <= cfg.trim_margin_s * SR + 320  # leading silence gone, but for a margin
    assert np.all(ex["audio"][-1, -1000:] == 0.0)  # padding


def _garbage(path: Path) -> Path:
    path.write_bytes(b"this is not audio at all" * 50)
    return path


@pytest.mark.parametrize("kind, words", [
    ("garbage", "unreadable"), ("empty", "empty"), ("silent", "silent"), ("short", "too short"),
    ("zero_bytes", "unreadable"),
])
def test_bad_files_give_clear_errors(tmp_path: Path, kind: str, words: str) -> None:
    path = tmp_path / f"{kind}.wav"
    if kind == "garbage":
        _garbage(path)
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "empty":
        _write(path, np.zeros(0, np.float32), SR)
    elif kind == "silent":
        _write(path, np.zeros(SR * 2, np.float32), SR)
    else:
        _write(path, _tone(0.1, SR), SR)
    with pytest.raises(AudioFileError) as info:
        examples_of_file(path, PrepareConfig(example_seconds=1.0))
    assert isinstance(info.value, ValueError)
    assert words in str(info.value) and str(path) in str(info.value)


def test_bad_files_skipped_good_ones_kept(tmp_path: Path, caplog) -> None:
    src = tmp_path / "src"
    _write(src / "good1.wav", _tone(1.5, SR), SR)
    _write(src / "good2.wav", _tone(1.5, SR, 330.0), SR)
    _garbage(src / "bad.wav")
    _write(src / "quiet.wav", np.zeros(SR, np.float32), SR)
    info = prepare(src, tmp_path / "ds", example_seconds=0.5, held_out=0.3)
    assert sorted(Path(s["file"]).name for s in info["skipped"]) == ["bad.wav", "quiet.wav"]
    assert "bad.wav" in caplog.text
    assert load_dataset(tmp_path / "ds", "train")["audio"].shape[0] > 0


def test_nothing_usable_fails(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(NoUsableAudioError):
        prepare(src, tmp_path / "ds")  # no audio files at all
    _garbage(src / "bad.wav")
    _write(src / "quiet.flac", np.zeros(SR, np.float32), SR)
    with pytest.raises(NoUsableAudioError, match="bad.wav"):
        prepare(src, tmp_path / "ds")
    with pytest.raises(FileNotFoundError):
        prepare(tmp_path / "missing", tmp_path / "ds")


def test_load_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path, "train")
    with pytest.raises(ValueError):
        load_dataset(tmp_path, "validation")


@pytest.mark.parametrize("ext, kw", [(".wav", {}), (".flac", {}), (".ogg", {"format": "OGG"}),
                                     (".aiff", {"format": "AIFF"})])
def test_every_supported_format_reads(tmp_path: Path, ext: str, kw: dict) -> None:
    sr = 22050
    path = _write(tmp_path / f"tone{ext}", _tone(1.0, sr, 262.0), sr, **kw)
    mono = load_audio(path, SR)
    assert abs(len(mono) - SR) <= 2
    f0, _ = yin_f0(mono, SR)
    assert abs(1200 * np.log2(np.median(f0[10:-10]) / 262.0)) < 5.0


def test_pimodule_data_prepare_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    _write(tmp_path / "src" / "a.wav", _tone(1.2, SR), SR)
    _write(tmp_path / "src" / "b.wav", _tone(1.2, SR, 300.0), SR)
    proc = subprocess.run([sys.executable, "-m", "pimodule.cli", "data", "prepare",
                           str(tmp_path / "src"), "--out", str(tmp_path / "ds"),
                           "--example-seconds", "0.5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / "ds") in proc.stdout and "min" in proc.stdout
    assert load_info(tmp_path / "ds")["splits"]["held_out"]["n_examples"] > 0
