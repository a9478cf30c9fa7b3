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
from pimodule.laptop.render import midi_controls, transfer

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
    assert proc.returncode == 1 and "cannot read audio" in proc.stderr and "Traceback" not in proc.stderr
