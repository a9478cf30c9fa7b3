"""Render seeded MIDI phrases of a GM program with fluidsynth into a dataset.

fluidsynth renders offline (``-F``, faster than real time), dry (``-R 0 -C 0``: reverb and
chorus off), at the model's sample rate; its stereo output is mixed to mono. All phrases of a
split go into one MIDI file (phrase k at ``k * slot`` seconds), so the soundfont is loaded once
per split, and the render is cut back into one wav per phrase.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pimodule.laptop.data.midi import PhraseConfig, phrases_midi, playable_range, program_slug
from pimodule.laptop.data.prepare import prepare

log = logging.getLogger(__name__)

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
GAP_S = 1.5  # silence between phrases in the combined render (the last release dies away)
HELD_OUT_SEED_OFFSET = 1_000_000  # held-out phrases use seeds far from the training ones
PEAK_LIMIT = 0.95  # a split whose render peaks above this is scaled down as a whole


class RenderError(RuntimeError):
    """fluidsynth or the soundfont is missing, or the render failed."""


@dataclass(frozen=True)
class RenderConfig:
    sample_rate: int = 16000
    phrase_seconds: float = 8.0
    gain: float = 1.5  # fluidsynth's master gain (-g); FluidR3 solo lines then peak near 0.3
    soundfont: Path = DEFAULT_SOUNDFONT


def find_fluidsynth() -> str:
    path = shutil.which("fluidsynth")
    if path is None:
        raise RenderError("fluidsynth not found on PATH; install it (Debian: apt-get install "
                          "fluidsynth fluid-soundfont-gm)")
    return path


def check_soundfont(path: Path | str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise RenderError(f"soundfont {path} not found (Debian: apt-get install fluid-soundfont-gm, "
                          f"or pass --soundfont FILE.sf2)")
    return path


def render_midi(midi_path: Path | str, *, soundfont: Path | str = DEFAULT_SOUNDFONT,
                sample_rate: int = 16000, gain: float = 1.5) -> np.ndarray:
    """Render a MIDI file with fluidsynth; return mono float32 audio at ``sample_rate``."""
    exe = find_fluidsynth()
    soundfont = check_soundfont(soundfont)
    with tempfile.TemporaryDirectory(prefix="pimodule-render-") as tmp:
        wav = Path(tmp) / "out.wav"
        cmd = [exe, "-ni", "-q", "-R", "0", "-C", "0", "-r", str(int(sample_rate)),
               "-g", str(gain), "-F", str(wav), "-T", "wav", "-O", "float",
               str(soundfont), str(midi_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not wav.is_file():
            raise RenderError(f"fluidsynth failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    if sr != sample_rate:
        raise RenderError(f"fluidsynth wrote {sr} Hz, asked for {sample_rate} Hz")
    return audio.mean(axis=1)


def render_phrases(program: int, seeds: list[int], out_dir: Path | str, *,
                   config: RenderConfig = RenderConfig(),
                   note_range: tuple[int, int] | None = None) -> list[Path]:
    """Render one mono wav per seed into ``out_dir``, plus ``phrases.json`` (seeds and notes)
    and the combined MIDI file. Returns the wav paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    phrase_cfg = PhraseConfig(seconds=config.phrase_seconds)
    slot_s = config.phrase_seconds + GAP_S
    note_range = note_range or playable_range(program)
    mid, notes = phrases_midi(seeds, program, slot_s=slot_s, note_range=note_range, config=phrase_cfg)
    midi_path = out_dir / "phrases.mid"
    mid.save(str(midi_path))
    audio = render_midi(midi_path, soundfont=config.soundfont, sample_rate=config.sample_rate,
                        gain=config.gain)
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    scale = PEAK_LIMIT / peak if peak > PEAK_LIMIT else 1.0
    n_phrase = int(round(config.phrase_seconds * config.sample_rate))
    n_slot = int(round(slot_s * config.sample_rate))
    slug = program_slug(program)
    paths, meta = [], []
    for k, seed in enumerate(seeds):
        piece = np.zeros(n_phrase, dtype=np.float32)
        got = audio[k * n_slot:k * n_slot + n_phrase]
        piece[:len(got)] = got * scale
        path = out_dir / f"{slug}_{seed:07d}.wav"
        sf.write(path, piece, config.sample_rate, subtype="FLOAT")
        paths.append(path)
        meta.append({"file": path.name, "seed": seed,
                     "notes": [asdict(n) for n in notes[k]]})
    info = {"program": program, "name": slug, "note_range": list(note_range),
            "sample_rate": config.sample_rate, "phrase_seconds": config.phrase_seconds,
            "gain": config.gain, "scale": scale, "soundfont": str(config.soundfont),
            "phrases": meta}
    (out_dir / "phrases.json").write_text(json.dumps(info, indent=1))
    return paths


def f0_range_hz(note_range: tuple[int, int], sample_rate: int) -> tuple[float, float]:
    """Pitch-tracker search range for an instrument: its notes plus vibrato and a margin."""
    lo_hz = 440.0 * 2 ** ((note_range[0] - 69) / 12) / 1.25
    hi_hz = 440.0 * 2 ** ((note_range[1] - 69) / 12) * 1.25
    return max(30.0, lo_hz), min(hi_hz, sample_rate / 5)


def split_seeds(seed: int, n_train: int, n_held_out: int) -> tuple[list[int], list[int]]:
    """Training seeds ``seed*10000 + k``; held-out seeds offset far from them (never shared)."""
    if n_train > 10000 or n_held_out > 10000:
        raise ValueError("at most 10000 phrases per split")
    base = seed * 10000
    return ([base + k for k in range(n_train)],
            [HELD_OUT_SEED_OFFSET + base + k for k in range(n_held_out)])


def render_dataset(program: int, out_dir: Path | str, *, n_phrases: int = 40, n_held_out: int = 8,
                   seed: int = 0, config: RenderConfig = RenderConfig(), hop_size: int = 64,
                   example_seconds: float = 4.0) -> dict:
    """Render train and held-out phrases into ``out_dir/wav/{train,held_out}/`` and prepare the
    dataset (``train.npz``, ``held_out.npz``, ``dataset.json``) in ``out_dir``. Returns the info."""

    if n_phrases < 1 or n_held_out < 1:
        raise ValueError("need at least one training and one held-out phrase")
    find_fluidsynth()
    check_soundfont(config.soundfont)
    out_dir = Path(out_dir)
    train_seeds, held_seeds = split_seeds(seed, n_phrases, n_held_out)
    wav_dir = out_dir / "wav"
    for split, seeds in (("train", train_seeds), ("held_out", held_seeds)):
        split_dir = wav_dir / split
        if split_dir.exists():
            for old in split_dir.glob("*.wav"):
                old.unlink()
        log.info("rendering %d %s phrases of %s", len(seeds), split, program_slug(program))
        render_phrases(program, seeds, split_dir, config=config)
    fmin_hz, fmax_hz = f0_range_hz(playable_range(program), config.sample_rate)
    extra = {"program": program, "instrument": program_slug(program), "seed": seed,
             "soundfont": str(config.soundfont), "phrase_seconds": config.phrase_seconds,
             "rendered": True}
    return prepare(wav_dir, out_dir, sample_rate=config.sample_rate, hop_size=hop_size,
                   example_seconds=example_seconds, fmin_hz=fmin_hz, fmax_hz=fmax_hz,
                   extra_info=extra)
