"""Play a recording or a MIDI line through a voice, offline (timbre transfer), with the module's runtime.

No torch: the same runtime as the module.

Timbre transfer streams the input in chunks (any length, any sample rate): resample to the
model's rate, streaming f0/loudness (pimodule.core.streaming_features.StreamingFeatures), one model frame at a
time, and the output is written chunk by chunk and aligned with the input (feature latency
removed).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import soundfile as sf

from pimodule.core.streaming_features import StreamingFeatures
from pimodule.device.session import ModelSession
from pimodule.laptop.data.prepare import resample

log = logging.getLogger(__name__)
CHUNK_SECONDS = 2.0


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as err:
        raise ValueError(f"{path}: cannot read audio ({err})") from err
    if audio.size == 0:
        raise ValueError(f"{path}: no audio in the file")
    return audio.mean(axis=1), rate


def transfer(
    session: ModelSession,
    audio: np.ndarray,
    sample_rate: int,
    *,
    pitch_shift_semitones: float = 0.0,
    loudness_offset_db: float = 0.0,
    chunk_seconds: float = CHUNK_SECONDS,
) -> np.ndarray:
    """Timbre transfer of a mono signal; returns audio at the model's rate, aligned with the input.

    Processes the input chunk by chunk with the streaming feature tracker (bounded memory).
    """
    sr, hop = session.info.sample_rate, session.info.block_size
    session.reset()
    session.set_control("pitch_shift_semitones", pitch_shift_semitones)
    session.set_control("loudness_offset_db", loudness_offset_db)
    x = resample(audio, sample_rate, sr)
    tracker = StreamingFeatures(sr, hop)
    chunk = max(hop, int(chunk_seconds * sr))
    parts = []
    for start in range(0, len(x), chunk):
        f0, _, loudness = tracker.push(x[start : start + chunk])
        if len(f0):
            parts.append(session.process(f0, loudness))
    f0, _, loudness = tracker.flush()
    if len(f0):
        parts.append(session.process(f0, loudness))
    out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    n = (len(x) // hop) * hop
    return out[:n]


def midi_controls(
    path: Path,
    frame_rate: float,
    *,
    attack_ms: float = 30.0,
    release_ms: float = 200.0,
    vibrato_cents: float = 15.0,
    vibrato_hz: float = 5.5,
) -> tuple[np.ndarray, np.ndarray]:
    """f0 and loudness frames for a monophonic MIDI line (the newest held note sounds).

    Loudness follows velocity (-55 dB at velocity 1 to -10 dB at 127) with attack and release
    ramps; a gentle delayed vibrato keeps bowed/blown voices alive. Pitch bends are honoured
    (±2 semitones).
    """
    import mido

    try:
        midi = mido.MidiFile(str(path))
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: cannot read MIDI ({err})") from err
    events, t = [], 0.0
    for msg in midi:  # merged tracks, times in seconds
        t += msg.time
        events.append((t, msg))
    n_frames = int(np.ceil((t + release_ms / 1000 + 0.1) * frame_rate))
    if n_frames <= 1 or not any(m.type == "note_on" and m.velocity > 0 for _, m in events):
        raise ValueError(f"{path}: no notes in the MIDI file")
    f0 = np.zeros(n_frames, np.float32)
    target_db = np.full(n_frames, -100.0, np.float32)
    held: list[tuple[int, int]] = []  # (note, velocity)
    bend = 0.0
    note_start = np.zeros(n_frames, np.float32)  # seconds since the current note began
    idx, last_note, since = 0, 69, 0.0
    for frame in range(n_frames):
        now = frame / frame_rate
        while idx < len(events) and events[idx][0] <= now:
            msg = events[idx][1]
            if msg.type == "note_on" and msg.velocity > 0:
                held = [h for h in held if h[0] != msg.note] + [(msg.note, msg.velocity)]
                since = now
            elif msg.type in ("note_off", "note_on"):
                held = [h for h in held if h[0] != msg.note]
            elif msg.type == "pitchwheel":
                bend = 2.0 * msg.pitch / 8192
            idx += 1
        if held:
            last_note, velocity = held[-1]
            target_db[frame] = -55.0 + 45.0 * (velocity / 127.0)
        note_start[frame] = now - since
        f0[frame] = 440.0 * 2 ** ((last_note + bend - 69) / 12)
    vib_depth = np.clip((note_start - 0.25) / 0.3, 0, 1) * vibrato_cents
    f0 *= 2 ** (vib_depth * np.sin(2 * np.pi * vibrato_hz * np.arange(n_frames) / frame_rate) / 1200)
    loudness = np.empty_like(target_db)
    up = 1 - np.exp(-1000 / (attack_ms * frame_rate))
    down = 1 - np.exp(-1000 / (release_ms * frame_rate))
    level = -100.0
    for i, target in enumerate(target_db):
        level += (target - level) * (up if target > level else down)
        loudness[i] = level
    return f0, loudness


EXAMPLES = (
    "pimodule render export/violin.onnx --input voice.wav --out out/violin.wav",
    "pimodule render export/flute.onnx --input speech.wav --out out/flute.wav --pitch-shift 12",
    "pimodule render export/flute.onnx --midi line.mid --out out/line.wav",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="a DDSP .onnx model file")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", type=Path, help="recording to transfer (any format soundfile reads)")
    src.add_argument("--midi", type=Path, help="monophonic MIDI file to play")
    parser.add_argument("--out", type=Path, required=True, help="output wav")
    parser.add_argument("--pitch-shift", type=float, default=0.0, help="semitones")
    parser.add_argument("--loudness-offset", type=float, default=0.0, help="dB added to the input loudness")
    parser.add_argument("--sample-rate", type=int, help="output rate (default: the input's; MIDI: the model's)")


def main(args: argparse.Namespace) -> int:
    session = ModelSession(args.model)
    sr = session.info.sample_rate
    if args.input:
        audio, in_rate = _read_mono(args.input)
        out = transfer(
            session, audio, in_rate, pitch_shift_semitones=args.pitch_shift, loudness_offset_db=args.loudness_offset
        )
        out_rate = args.sample_rate or in_rate
        what = f"{args.input} ({len(audio) / in_rate:.1f} s)"
    else:
        session.set_control("pitch_shift_semitones", args.pitch_shift)
        session.set_control("loudness_offset_db", args.loudness_offset)
        f0, loudness = midi_controls(args.midi, sr / session.info.block_size)
        out = session.process(f0, loudness)
        out_rate = args.sample_rate or sr
        what = f"{args.midi}"
    out = resample(out, sr, out_rate)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 0.99:  # keep the file unclipped; say so
        out = out * (0.99 / peak)
        log.info("normalised the output (peak was %.2f)", peak)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(args.out), out, out_rate, subtype="PCM_16")
    print(f"rendered {what} with {args.model.name} -> {args.out} ({len(out) / out_rate:.1f} s at {out_rate} Hz)")
    return 0
