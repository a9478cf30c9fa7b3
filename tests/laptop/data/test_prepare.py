"""prepare(): reading, resampling, trimming, splitting, features, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pimodule.core.features import yin_f0
from pimodule.laptop.data.dataset import ARRAYS, load_dataset, load_info
from pimodule.laptop.data.prepare import (
    AudioFileError,
    NotEnoughAudioError,
    NoUsableAudioError,
    PrepareConfig,
    example_starts,
    examples_of_file,
    load_audio,
    prepare,
)

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
    info = prepare(
        tmp_path / "src", tmp_path / "ds", example_seconds=example_seconds, hop_size=hop_size, held_out=0.3, seed=1
    )
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
    # held-out stretches never overlap training stretches of the same file
    for h in info["splits"]["held_out"]["files"]:
        for t in info["splits"]["train"]["files"]:
            assert t["file"] != h["file"] or t["to_s"] <= h["from_s"] or t["from_s"] >= h["to_s"]
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


def test_silence_is_trimmed_and_examples_overlap_to_the_end(tmp_path: Path) -> None:
    tone = _tone(1.3, SR)
    audio = np.concatenate([np.zeros(SR), tone, np.zeros(SR)])
    path = _write(tmp_path / "x.wav", audio, SR, subtype="FLOAT")
    cfg = PrepareConfig(example_seconds=0.5)
    ex = examples_of_file(path, cfg)
    # 1.3 s of tone + 2 margins of 0.3 s = 1.9 s -> four overlapping examples, none padded
    assert ex["audio"].shape == (4, cfg.example_samples)
    onset = int(np.argmax(np.abs(ex["audio"][0]) > 0.01))
    assert 0.2 * SR < onset <= cfg.trim_margin_s * SR + 320  # leading silence gone, but for a margin
    end = ex["audio"][-1]
    assert np.max(np.abs(end[-int(0.3 * SR) - 400 : -int(0.3 * SR) - 100])) > 0.05  # the tone's end is in
    # a piece shorter than an example is zero-padded, not dropped
    short = examples_of_file(_write(tmp_path / "s.wav", _tone(0.7, SR), SR), PrepareConfig(example_seconds=2.0))
    assert short["audio"].shape[0] == 1 and np.all(short["audio"][0, -1000:] == 0.0)


@pytest.mark.parametrize("n, ex, hop", [(100, 100, 10), (101, 100, 1), (350, 100, 10), (1000, 64, 64)])
def test_example_starts_cover_everything(n: int, ex: int, hop: int) -> None:
    starts = example_starts(n, ex, hop)
    covered = np.zeros(max(n, ex), bool)
    for s in starts:
        assert s % hop == 0
        covered[s : s + ex] = True
    assert covered[: n - n % hop].all() and len(starts) == max(1, -(-n // ex))


def _garbage(path: Path) -> Path:
    path.write_bytes(b"this is not audio at all" * 50)
    return path


@pytest.mark.parametrize(
    "kind, words",
    [
        ("garbage", "cannot be read as audio"),
        ("empty", "empty"),
        ("silent", "silent"),
        ("short", "too short"),
        ("zero_bytes", "empty file"),
        ("missing", "no such file"),
        ("m4a", "convert to wav or flac"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path: Path, kind: str, words: str) -> None:
    path = tmp_path / f"{kind}.wav"
    if kind == "garbage":
        _garbage(path)
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "m4a":
        path = tmp_path / "memo.m4a"
        path.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(100))
    elif kind == "empty":
        _write(path, np.zeros(0, np.float32), SR)
    elif kind == "silent":
        _write(path, np.zeros(SR * 2, np.float32), SR)
    elif kind == "short":
        _write(path, _tone(0.1, SR), SR)
    with pytest.raises(AudioFileError) as info:
        examples_of_file(path, PrepareConfig(example_seconds=1.0))
    assert isinstance(info.value, ValueError)
    assert words in str(info.value) and str(path) in str(info.value)


def test_bad_files_skipped_good_ones_kept(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src / "good1.wav", _tone(1.5, SR), SR)
    _write(src / "good2.wav", _tone(1.5, SR, 330.0), SR)
    _garbage(src / "bad.wav")
    _write(src / "quiet.wav", np.zeros(SR, np.float32), SR)
    (src / "memo.m4a").write_bytes(b"not readable here")
    (src / "notes.txt").write_text("not audio, not listed")
    info = prepare(src, tmp_path / "ds", example_seconds=0.5, held_out=0.3)
    skipped = {Path(s["file"]).name: s["error"] for s in info["skipped"]}
    assert sorted(skipped) == ["bad.wav", "memo.m4a", "quiet.wav"]
    assert "silent" in skipped["quiet.wav"] and "convert" in skipped["memo.m4a"]
    assert load_dataset(tmp_path / "ds", "train")["audio"].shape[0] > 0


def test_files_checked_before_the_split_one_good_file_is_split(tmp_path: Path, phrases) -> None:
    """The one good file among bad ones is split (train and held out), never held out whole."""
    src = tmp_path / "src"
    stereo = np.stack([phrases(20.0, seed=1), phrases(20.0, seed=1)], axis=1)
    _write(src / "z_good.wav", stereo, SR)
    for name in ("a_bad.wav", "b_bad.wav", "c_bad.wav"):
        _garbage(src / name)
    info = prepare(src, tmp_path / "ds", example_seconds=1.0, held_out=0.2)
    train_files = {Path(f["file"]).name for f in info["splits"]["train"]["files"]}
    held = info["splits"]["held_out"]["files"]
    assert train_files == {"z_good.wav"} and [Path(f["file"]).name for f in held] == ["z_good.wav"]
    assert len(info["skipped"]) == 3
    assert info["notes"] == [{"file": str(src / "z_good.wav"), "note": "stereo: mixed down to mono"}]


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


@pytest.mark.parametrize(
    "ext, kw",
    [
        (".wav", {}),
        (".flac", {}),
        (".ogg", {"format": "OGG"}),
        (".aiff", {"format": "AIFF"}),
        (".mp3", {"format": "MP3"}),
    ],
)
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
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pimodule.cli",
            "data",
            "prepare",
            str(tmp_path / "src"),
            "--out",
            str(tmp_path / "ds"),
            "--example-seconds",
            "0.5",
            "--min-minutes",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / "ds") in proc.stdout and "min" in proc.stdout
    assert load_info(tmp_path / "ds")["splits"]["held_out"]["n_examples"] > 0


def test_mp3_in_a_folder_and_as_a_single_file(tmp_path: Path, phrases) -> None:
    src = tmp_path / "src"
    _write(src / "take.mp3", phrases(12.0), SR, format="MP3")
    a = prepare(src, tmp_path / "a", example_seconds=1.0)
    b = prepare(src / "take.mp3", tmp_path / "b", example_seconds=1.0)
    assert not a["skipped"] and a["splits"] == {**b["splits"]}
    assert a["splits"]["train"]["n_examples"] > 5 and a["splits"]["held_out"]["n_examples"] > 0


def test_one_long_recording_gets_a_held_out_share_and_nothing_dropped(tmp_path: Path, phrases) -> None:
    audio = phrases(60.0, seed=4)
    _write(tmp_path / "long.flac", audio, SR)
    info = prepare(tmp_path / "long.flac", tmp_path / "ds", example_seconds=4.0, held_out=0.15, seed=2)
    train, held = info["splits"]["train"], info["splits"]["held_out"]
    kept_s = sum(f["to_s"] - f["from_s"] for f in train["files"] + held["files"])
    trimmed_s = info["summary"]["all"]["minutes"] * 60
    assert abs(kept_s - trimmed_s) < 0.1 and kept_s > 59.0  # the whole recording, trimmed, is used
    held_s = sum(f["to_s"] - f["from_s"] for f in held["files"])
    assert 0.10 * 60 < held_s < 0.22 * 60  # a share of the audio, cut at quiet points (moved <= 2 s)
    assert held["n_examples"] >= 2 and train["n_examples"] >= 13
    ds = load_dataset(tmp_path / "ds", "train")
    assert ds["audio"].shape == (train["n_examples"], 64000)


def test_same_seed_same_dataset_other_seed_other_split(tmp_path: Path, phrases) -> None:
    src = tmp_path / "src"
    for i in range(4):
        _write(src / f"t{i}.wav", phrases(8.0, seed=i), SR)
    a = prepare(src, tmp_path / "a", example_seconds=1.0, seed=5)
    b = prepare(src, tmp_path / "b", example_seconds=1.0, seed=5)
    c = prepare(src, tmp_path / "c", example_seconds=1.0, seed=6)
    assert a["splits"] == b["splits"] and a["summary"] == b["summary"]
    for split in ("train", "held_out"):
        x, y = load_dataset(tmp_path / "a", split), load_dataset(tmp_path / "b", split)
        assert all(np.array_equal(x[k], y[k]) for k in ARRAYS)
    assert a["splits"]["held_out"]["files"] != c["splits"]["held_out"]["files"]


def test_too_little_audio_is_refused_with_the_number_to_reach(tmp_path: Path, phrases) -> None:
    _write(tmp_path / "flute.wav", phrases(5.5), SR)
    with pytest.raises(NotEnoughAudioError, match=r"at least 3 min") as err:
        prepare(tmp_path / "flute.wav", tmp_path / "ds", min_voiced_minutes=3.0, min_held_out_voiced_s=10.0)
    assert "record about 4 more minutes" in str(err.value) and "held-out part" in str(err.value)
    assert not (tmp_path / "ds").exists()  # nothing written
    info = prepare(
        tmp_path / "flute.wav", tmp_path / "ds", min_voiced_minutes=3.0, min_held_out_voiced_s=10.0, force=True
    )
    assert info["summary"]["warnings"][0].startswith("NOT ENOUGH AUDIO (forced")
    assert load_info(tmp_path / "ds")["summary"]["warnings"] == info["summary"]["warnings"]
    assert info["splits"]["held_out"]["n_examples"] >= 1  # even 5.5 s gets a held-out part


def test_summary_reports_range_and_silence(tmp_path: Path, phrases) -> None:
    _write(tmp_path / "a.wav", phrases(30.0, seed=3), SR)
    info = prepare(tmp_path / "a.wav", tmp_path / "ds", example_seconds=2.0)
    s = info["summary"]["all"]
    assert 200 < s["f0_hz"]["p5"] < 240 and 400 < s["f0_hz"]["p95"] < 470
    assert s["f0_notes"]["p5"] in ("A3", "A#3") and s["f0_notes"]["p95"] in ("G#4", "A4")
    assert 0.1 < s["silence_share"] < 0.5 and 0.4 < s["voiced_share"] < 0.95
    assert -40 < s["loudness_db"]["p50"] < -5
    assert info["summary"]["warnings"] == []


def test_pimodule_data_prepare_refuses_a_five_second_recording(tmp_path: Path, phrases) -> None:
    import subprocess
    import sys

    _write(tmp_path / "flute.mp3", phrases(5.5), SR, format="MP3")
    cmd = [
        sys.executable,
        "-m",
        "pimodule.cli",
        "data",
        "prepare",
        str(tmp_path / "flute.mp3"),
        "--out",
        str(tmp_path / "ds"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and not (tmp_path / "ds").exists()
    assert "refused" in proc.stderr and "at least 3 min" in proc.stderr and "--force" in proc.stderr
    assert re.search(r"kept \d s to train on, \d s held out", proc.stdout) and "pitch range" in proc.stdout
    proc = subprocess.run(cmd + ["--force"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "NOT ENOUGH AUDIO" in proc.stdout
