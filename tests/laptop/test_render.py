import subprocess
import sys

import mido
import numpy as np
import pytest
import soundfile as sf

from pimodule.cli import main as cli_main
from pimodule.core.features import yin_f0
from pimodule.device.session import ModelSession
from pimodule.laptop.ddsp.export import build_test_model
from pimodule.laptop.render import midi_controls, midi_notes, polyphony_warning, training_range, transfer

VIOLIN = "export/violin.onnx"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_test_model(tmp_path_factory.mktemp("r") / "m.onnx")


def _tone(f0_hz, seconds, rate):
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * f0_hz * t
    env = np.minimum(1, t * 10) * np.minimum(1, (seconds - t) * 10)
    return (0.3 * env * (np.sin(phase) + 0.5 * np.sin(2 * phase))).astype(np.float32)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_transfer_of_any_rate_keeps_length_and_pitch(rate):
    session = ModelSession(VIOLIN)
    audio = _tone(330.0, 2.0, rate)
    out = transfer(session, audio, rate, chunk_seconds=0.37)  # odd chunks: streaming path
    assert abs(len(out) - 2.0 * 16000) <= 64
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) < 1.0
    f0, per = yin_f0(out, 16000, hop_size=64)
    voiced = per > 0.8
    assert voiced.sum() > 200
    assert abs(np.median(1200 * np.log2(f0[voiced] / 330.0))) < 30


def test_transfer_pitch_shift_octave_up():
    session = ModelSession(VIOLIN)
    out = transfer(session, _tone(220.0, 1.5, 16000), 16000, pitch_shift_semitones=12)
    f0, per = yin_f0(out, 16000, hop_size=64)
    assert abs(np.median(1200 * np.log2(f0[per > 0.8] / 440.0))) < 30


def test_chunked_transfer_equals_one_chunk(model):
    session = ModelSession(model)
    audio = _tone(250.0, 1.0, 22050)
    a = transfer(session, audio, 22050, chunk_seconds=0.1)
    b = transfer(session, audio, 22050, chunk_seconds=10)
    assert np.max(np.abs(a - b)) < 1e-5


def _midi(path, notes):
    mid = mido.MidiFile()
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for note in notes:
        track.append(mido.Message("note_on", note=note, velocity=100, time=0))
        track.append(mido.Message("note_off", note=note, velocity=0, time=mid.ticks_per_beat))
    mid.save(str(path))
    return path


def test_midi_controls_follow_the_notes(tmp_path):
    f0, loudness = midi_controls(_midi(tmp_path / "a.mid", [60, 67]), 250.0, vibrato_cents=0)
    # 120 bpm: a beat is 0.5 s = 125 frames
    assert abs(f0[60] - 261.63) < 0.5 and abs(f0[190] - 392.0) < 0.5
    assert loudness[60] > -20 and loudness[-1] < -60  # sounding, then released


def test_render_cli_transfer_and_midi(tmp_path):
    wav = tmp_path / "in.wav"
    sf.write(str(wav), np.stack([_tone(300, 1.0, 44100)] * 2, axis=1), 44100)
    assert cli_main(["render", VIOLIN, "--input", str(wav), "--out", str(tmp_path / "o.wav")]) == 0
    out, rate = sf.read(str(tmp_path / "o.wav"))
    assert rate == 44100 and abs(len(out) - 44100) < 200
    mid = _midi(tmp_path / "l.mid", [69, 72, 76])
    assert cli_main(["render", VIOLIN, "--midi", str(mid), "--out", str(tmp_path / "m.wav")]) == 0
    out, rate = sf.read(str(tmp_path / "m.wav"))
    assert rate == 16000 and len(out) > 1.5 * 16000 and np.max(np.abs(out)) > 0.01


def test_render_refuses_unreadable_input_clearly(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    proc = subprocess.run(
        [sys.executable, "-m", "pimodule.cli", "render", VIOLIN, "--input", str(bad), "--out", str(tmp_path / "o.wav")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{bad}: cannot be read as audio (format not recognised)" in proc.stderr


@pytest.mark.parametrize("what", ["input", "midi", "model"])
def test_a_missing_file_says_so(tmp_path, capsys, what):
    args = {"input": ["--input", str(tmp_path / "nope.wav")], "midi": ["--midi", str(tmp_path / "nope.mid")]}
    model = str(tmp_path / "nope.onnx") if what == "model" else VIOLIN
    assert cli_main(["render", model, *args.get(what, args["input"]), "--out", str(tmp_path / "o.wav")]) == 1
    err = capsys.readouterr().err
    assert "nope" in err and "no such" in err and "System error" not in err


def test_training_range_from_what_the_model_file_stores():
    assert training_range({"data": {"stats": {"f0_hz_range": [180.0, 900.0], "f0_midi_mean": 70}}})[:2] == (180, 900)
    lo, hi, source = training_range({"data": {"program": 73, "stats": {"f0_midi_mean": 78.85}}})  # shipped flute
    assert round(lo) == 262 and round(hi) == 2093 and "rendered" in source
    lo, hi, source = training_range({"data": {"stats": {"f0_midi_mean": 69.0}}})
    assert round(lo) == 220 and round(hi) == 880 and "mean" in source
    assert training_range({}) is None


def test_render_warns_outside_the_training_range_and_suggests_a_shift(tmp_path, caplog):
    low = tmp_path / "low.wav"
    sf.write(str(low), _tone(110.0, 3.0, 16000), 16000)  # A2 into the flute (C4-C7)
    with caplog.at_level("WARNING"):
        assert cli_main(["render", "export/flute.onnx", "--input", str(low), "--out", str(tmp_path / "o.wav")]) == 0
    assert (
        "below the voice's range" in caplog.text and "C4-C7" in caplog.text and "--pitch-shift 24 fits" in caplog.text
    )
    caplog.clear()
    with caplog.at_level("WARNING"):
        args = ["render", "export/flute.onnx", "--input", str(low), "--out", str(tmp_path / "o.wav")]
        assert cli_main(args + ["--pitch-shift", "24"]) == 0
        sf.write(str(low), _tone(523.0, 3.0, 16000), 16000)
        assert cli_main(args) == 0
    assert "range" not in caplog.text


def test_polyphonic_midi_is_named_and_what_is_played_said(tmp_path, caplog):
    mid = mido.MidiFile()
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for chord in ([60, 64, 67], [62, 65, 69]):
        track += [mido.Message("note_on", note=n, velocity=90, time=0) for n in chord]
        track += [
            mido.Message("note_off", note=n, velocity=0, time=mid.ticks_per_beat if i == 0 else 0)
            for i, n in enumerate(chord)
        ]
    mid.save(str(tmp_path / "chords.mid"))
    notes = midi_notes(tmp_path / "chords.mid")
    assert len(notes) == 6 and polyphony_warning(tmp_path / "chords.mid", notes).startswith("chords.mid is polyphonic")
    with caplog.at_level("WARNING"):
        assert (
            cli_main(["render", VIOLIN, "--midi", str(tmp_path / "chords.mid"), "--out", str(tmp_path / "o.wav")]) == 0
        )
    assert "4 of 6 notes overlap" in caplog.text and "the newest held note sounds" in caplog.text
    # a legato line (50 ms overlaps) is not polyphonic
    legato = [(0.0, 0.55, 60), (0.5, 1.05, 62), (1.0, 1.5, 64)]
    assert polyphony_warning(tmp_path / "l.mid", legato) is None


def test_long_inputs_show_progress(tmp_path):
    wav = tmp_path / "long.wav"
    sf.write(str(wav), _tone(300.0, 12.0, 16000), 16000)
    proc = subprocess.run(
        [sys.executable, "-m", "pimodule.cli", "render", VIOLIN, "--input", str(wav), "--out", str(tmp_path / "o.wav")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "render:" in proc.stderr and "/12 [" in proc.stderr
