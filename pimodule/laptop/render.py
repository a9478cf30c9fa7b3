"""Play a recording or a MIDI line through a voice, offline (timbre transfer), with the module's runtime.

No torch: the same runtime as the module.

Timbre transfer streams the input in chunks (any length, any sample rate): resample to the
model's rate, streaming f0/loudness (pimodule.core.streaming_features.StreamingFeatures), one model frame at a
time, and the output is written chunk by chunk and aligned with the input (feature latency
removed). Inputs longer than 10 s show a progress bar. A warning says when the input's pitch
(after --pitch-shift) leaves the range the voice was trained on (stored in the model file) and
which --pitch-shift fits; a MIDI file with overlapping notes is played as one line (the newest
held note sounds), with a warning.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
from tqdm import tqdm

from pimodule.core.streaming_features import StreamingFeatures
from pimodule.device.session import ModelSession
from pimodule.laptop.data.audio_files import read_audio, resample, to_mono
from pimodule.laptop.data.midi import PLAYABLE_RANGES
from pimodule.laptop.data.summary import AUDIBLE_DB, VOICED, hz_to_midi, note_name

log = logging.getLogger(__name__)
CHUNK_SECONDS = 2.0
PROGRESS_AFTER_S = 10.0  # inputs longer than this show a progress bar (stderr)
OUT_OF_RANGE_SEMITONES = 2.0  # a frame this far outside the training range counts as outside
OUT_OF_RANGE_SHARE = 0.25  # warn when more of the pitched frames than this are outside
CHORD_OVERLAP_S = 0.1  # notes overlapping longer than this are a chord (legato overlaps are shorter)


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = read_audio(path)  # AudioFileError (a ValueError) in plain words
    return to_mono(audio)[0], rate


def training_range(provenance: dict) -> tuple[float, float, str] | None:
    """(low Hz, high Hz, where it comes from) of the pitches a voice was trained on: the f0 5-95 %
    range its training stored, else the instrument's notes of a rendered dataset, else an octave
    around the mean pitch; None when the model file says nothing about it."""
    data = provenance.get("data", {})
    stats = data.get("stats", {})
    if stats.get("f0_hz_range"):
        lo, hi = stats["f0_hz_range"]
        return float(lo), float(hi), "its training data (5-95 % of the pitched frames)"
    if data.get("program") in PLAYABLE_RANGES:
        lo, hi = PLAYABLE_RANGES[data["program"]]
        return 440.0 * 2 ** ((lo - 69) / 12), 440.0 * 2 ** ((hi - 69) / 12), "the notes of its rendered phrases"
    if stats.get("f0_midi_mean") is not None:
        mean = float(stats["f0_midi_mean"])
        return 440.0 * 2 ** ((mean - 81) / 12), 440.0 * 2 ** ((mean - 57) / 12), "an octave around its mean pitch"
    return None


def pitch_advice(f0_hz: np.ndarray, voiced: np.ndarray, shift: float, trained: tuple[float, float, str]) -> str | None:
    """A warning when the pitched frames (after ``shift`` semitones) leave the training range,
    with the --pitch-shift that fits (whole octaves when they do, to keep the key); None if fine."""
    if voiced.sum() < 10:
        return None
    lo, hi, source = trained
    midi = hz_to_midi(f0_hz[voiced]) + shift
    lo_m, hi_m = hz_to_midi(lo), hz_to_midi(hi)

    def share_outside(k: float) -> float:
        return float(np.mean((midi + k < lo_m - OUT_OF_RANGE_SEMITONES) | (midi + k > hi_m + OUT_OF_RANGE_SEMITONES)))

    outside = share_outside(0)
    if outside <= OUT_OF_RANGE_SHARE:
        return None
    # the smallest shift leaving the fewest frames outside: whole octaves first (the key stays)
    fit = min(range(-48, 49, 12), key=lambda k: (round(share_outside(k), 2), abs(k)))
    if share_outside(fit) > OUT_OF_RANGE_SHARE:
        fit = min(range(-48, 49), key=lambda k: (round(share_outside(k), 2), abs(k)))
    median = float(np.median(midi))
    p5, p95 = (440.0 * 2 ** ((m - 69) / 12) for m in np.percentile(midi, (5, 95)))
    where = "below" if median < lo_m else "above" if median > hi_m else "partly outside"
    return (
        f"the input's pitch{f' (shifted {shift:+g})' if shift else ''} is {where} the voice's range: "
        f"{outside:.0%} of its pitched frames lie outside {note_name(lo)}-{note_name(hi)} ({lo:.0f}-{hi:.0f} Hz, "
        f"from {source}); the input spans {note_name(p5)}-{note_name(p95)} ({p5:.0f}-{p95:.0f} Hz). Expect "
        f"artefacts; --pitch-shift {shift + fit:g} fits"
    )


def midi_notes(path: Path) -> list[tuple[float, float, int]]:
    """(start s, end s, note) of every note of a MIDI file (all tracks and channels)."""
    midi = _open_midi(path)
    notes, held, t = [], {}, 0.0
    for msg in midi:
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            held.setdefault(msg.note, []).append(t)
        elif msg.type in ("note_off", "note_on") and held.get(msg.note):
            notes.append((held[msg.note].pop(0), t, msg.note))
    notes += [(start, t, note) for note, starts in held.items() for start in starts]
    return sorted(notes)


def polyphony_warning(path: Path, notes: list[tuple[float, float, int]]) -> str | None:
    """A warning when notes overlap longer than a legato transition (chords, several voices)."""
    chords = sum(
        1
        for i, (start, end, _) in enumerate(notes)
        if any(min(end, e) - max(start, s) > CHORD_OVERLAP_S for s, e, _ in notes[i + 1 : i + 20])
    )
    if not chords:
        return None
    return (
        f"{path.name} is polyphonic: {chords} of {len(notes)} notes overlap the next by more than "
        f"{CHORD_OVERLAP_S:g} s (chords or several voices). The voice plays one note at a time: the newest "
        f"held note sounds (when it ends, the newest still held one resumes); other notes are not heard"
    )


def _open_midi(path: Path) -> mido.MidiFile:
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    try:
        return mido.MidiFile(str(path))
    except (OSError, ValueError, EOFError, KeyError) as err:
        raise ValueError(f"{path}: not a MIDI file that can be read ({err})") from err


def transfer(
    session: ModelSession,
    audio: np.ndarray,
    sample_rate: int,
    *,
    pitch_shift_semitones: float = 0.0,
    loudness_offset_db: float = 0.0,
    chunk_seconds: float = CHUNK_SECONDS,
    progress: bool = False,
    features: dict[str, list] | None = None,
) -> np.ndarray:
    """Timbre transfer of a mono signal; returns audio at the model's rate, aligned with the input.

    Processes the input chunk by chunk with the streaming feature tracker (bounded memory); a
    progress bar (stderr) when ``progress``; the input's ``f0_hz``, ``periodicity`` and
    ``loudness_db`` frames are appended to ``features`` when given.
    """
    sr, hop = session.info.sample_rate, session.info.block_size
    session.reset()
    session.set_control("pitch_shift_semitones", pitch_shift_semitones)
    session.set_control("loudness_offset_db", loudness_offset_db)
    x = resample(audio, sample_rate, sr)
    tracker = StreamingFeatures(sr, hop)
    chunk = max(hop, int(chunk_seconds * sr))
    parts = []

    def play(frames: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        f0, per, loudness = frames
        if len(f0):
            parts.append(session.process(f0, loudness))
            if features is not None:
                for key, value in zip(("f0_hz", "periodicity", "loudness_db"), frames):
                    features.setdefault(key, []).append(value)

    with tqdm(total=round(len(x) / sr), desc="render", unit="s", disable=not progress, leave=False) as bar:
        for start in range(0, len(x), chunk):
            play(tracker.push(x[start : start + chunk]))
            bar.update(round(min(start + chunk, len(x)) / sr) - bar.n)
        play(tracker.flush())
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
    midi = _open_midi(path)
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


def _play_midi(session: ModelSession, path: Path, pitch_shift: float, loudness_offset: float) -> np.ndarray:
    sr, hop = session.info.sample_rate, session.info.block_size
    notes = midi_notes(path)
    warning = polyphony_warning(path, notes)
    if warning:
        log.warning("%s", warning)
    trained = training_range(session.info.provenance)
    if trained and notes:
        hz = np.array([440.0 * 2 ** ((n - 69) / 12) for _, _, n in notes])
        advice = pitch_advice(hz, np.ones(len(hz), bool), pitch_shift, trained)
        if advice:
            log.warning("%s", advice.replace("pitched frames", "notes"))
    session.set_control("pitch_shift_semitones", pitch_shift)
    session.set_control("loudness_offset_db", loudness_offset)
    f0, loudness = midi_controls(path, sr / hop)
    step = int(CHUNK_SECONDS * sr / hop)
    seconds = len(f0) * hop / sr
    with tqdm(total=len(f0), desc="render", unit="frame", disable=seconds < PROGRESS_AFTER_S, leave=False) as bar:
        parts = []
        for start in range(0, len(f0), step):
            parts.append(session.process(f0[start : start + step], loudness[start : start + step]))
            bar.update(len(parts[-1]) // hop)
    return np.concatenate(parts)


def main(args: argparse.Namespace) -> int:
    if not args.model.is_file():
        raise ValueError(f"{args.model}: no such model file (pimodule export writes one)")
    session = ModelSession(args.model)
    sr = session.info.sample_rate
    if args.input:
        audio, in_rate = _read_mono(args.input)
        seconds = len(audio) / in_rate
        feats: dict[str, list] = {}
        out = transfer(
            session,
            audio,
            in_rate,
            pitch_shift_semitones=args.pitch_shift,
            loudness_offset_db=args.loudness_offset,
            progress=seconds > PROGRESS_AFTER_S,
            features=feats,
        )
        trained = training_range(session.info.provenance)
        if trained and feats:
            f0, per, ld = (np.concatenate(feats[k]) for k in ("f0_hz", "periodicity", "loudness_db"))
            advice = pitch_advice(f0, (per > VOICED) & (ld > AUDIBLE_DB), args.pitch_shift, trained)
            if advice:
                log.warning("%s", advice)
        out_rate = args.sample_rate or in_rate
        what = f"{args.input} ({seconds:.1f} s)"
    else:
        out = _play_midi(session, args.midi, args.pitch_shift, args.loudness_offset)
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
