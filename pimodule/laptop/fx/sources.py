"""Dry training and held-out material for the effect estimator: real recordings installable here.

- speech: Debian's ``asterisk-core-sounds-en-wav`` (8 kHz prompts, resampled)
- samples: Debian's ``sonic-pi-samples`` (CC0 drums, loops, bass, guitar, ambient)
- instruments: General MIDI soundfont phrases rendered by the fluidsynth CLI from MIDI made with mido
- voices (Debian ``asterisk-core-sounds-{es,fr,it,ru}-wav``: four more speakers, male and female),
  music (``asterisk-moh-opsound-wav``: five CC music tracks), drums (``hydrogen-drumkits``: real
  drum kits' samples sequenced into seeded patterns, and ``lmms-common``'s beats and drum
  samples), lmms (``lmms-common``'s recorded instruments, basses and pads, without its
  pre-distorted guitars): the ``world`` material of the recipes trained for real recordings

The recordings of the real-recording benchmark (:mod:`pimodule.laptop.fx.realbench`) come from
other packages and are never listed here (a test holds the lists apart).

Files are split into ``train`` and ``heldout`` by a hash of their name (and by GM program for the
soundfont), so evaluation never sees training sources. Randomness comes in as a numpy Generator.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

log = logging.getLogger(__name__)

SPEECH_DIR = Path("/usr/share/asterisk/sounds")
SAMPLES_DIR = Path("/usr/share/sonic-pi/samples")
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
MOH_DIR = Path("/usr/share/asterisk/moh")
HYDROGEN_DIR = Path("/usr/share/hydrogen/data/drumkits")
LMMS_DIR = Path("/usr/share/lmms/samples")
KINDS = ("speech", "samples", "instruments")  # the default (and the project's held-out cases)
WORLD_KINDS = ("voices", "music", "drums", "lmms")
ALL_KINDS = KINDS + WORLD_KINDS
AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".ogg")
#: the package that holds each kind's recordings (for the error message when it is missing)
PACKAGES = {
    "speech": "asterisk-core-sounds-en-wav",
    "samples": "sonic-pi-samples",
    "voices": "asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav "
    "asterisk-core-sounds-ru-wav",
    "music": "asterisk-moh-opsound-wav",
    "drums": "hydrogen-drumkits lmms-common",
    "lmms": "lmms-common",
}
SPLITS = ("train", "heldout")
#: GM programs (0-based) rendered for each split: the held-out instruments are never trained on
PROGRAMS = {"train": (0, 24, 33, 48, 19, 65), "heldout": (40, 73, 56, 4)}
#: GM families (8 programs each, by first program) that hold a held-out program
HELDOUT_FAMILIES = frozenset(p - p % 8 for p in PROGRAMS["heldout"])
#: the training instruments a config can choose ("instruments" in TrainConfig): the six above, or
#: every melodic GM program outside the held-out programs' families (and outside sound effects,
#: 120-127), one phrase each
INSTRUMENT_SETS = {
    "core": PROGRAMS["train"],
    "wide": tuple(sorted(set(PROGRAMS["train"]) | {p for p in range(120) if p - p % 8 not in HELDOUT_FAMILIES})),
}
HELDOUT_SHARE = 0.2


def instrument_programs(instruments: str, split: str) -> tuple[int, ...]:
    """The GM programs of ``split``: the named training set (INSTRUMENT_SETS), or the held-out ones."""
    if instruments not in INSTRUMENT_SETS:
        raise ValueError(f"instruments must be one of {tuple(INSTRUMENT_SETS)}, not {instruments!r}")
    return INSTRUMENT_SETS[instruments] if split == "train" else PROGRAMS["heldout"]


class SourceError(RuntimeError):
    """Dry material is missing (with the package to install)."""


def split_of(name: str) -> str:
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "heldout" if h < HELDOUT_SHARE else "train"


def _load(path: Path, sample_rate: int) -> np.ndarray:
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(1)
    if sr != sample_rate:
        audio = soxr.resample(audio, sr, sample_rate).astype(np.float32)
    return audio


def _load_many(paths, sample_rate: int) -> list[np.ndarray]:
    """The readable ones of ``paths`` (a few packaged files are mislabelled or damaged: skipped)."""
    out = []
    for p in paths:
        try:
            out.append(_load(p, sample_rate))
        except (RuntimeError, sf.LibsndfileError) as err:
            log.debug("skipped %s: %s", p, err)
    return out


def _audio_under(folder: Path, pattern: str = "**/*") -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def all_files(kind: str) -> list[Path]:
    """Every recording of ``kind`` (both splits; drum kits are folders, see :func:`_drum_kits`)."""
    if kind == "speech":
        return sorted(SPEECH_DIR.glob("en*/**/*.wav"))
    if kind == "samples":
        return sorted(SAMPLES_DIR.glob("*.flac"))
    if kind == "voices":
        return [p for lang in ("es", "fr", "it", "ru") for p in sorted(SPEECH_DIR.glob(f"{lang}*/**/*.wav"))]
    if kind == "music":
        return _audio_under(MOH_DIR)
    if kind == "drums":
        return [*_audio_under(LMMS_DIR / "beats"), *_audio_under(LMMS_DIR / "drums")]
    if kind == "lmms":
        files = [
            p
            for d in ("instruments", "basses", "bassloops", "stringsnpads", "latin")
            for p in _audio_under(LMMS_DIR / d)
        ]
        return [p for p in files if "distort" not in p.name]  # already processed: not dry
    raise ValueError(f"unknown kind {kind!r} (one of {ALL_KINDS})")


def _files(kind: str, split: str) -> list[Path]:
    files = all_files(kind)
    if not files:
        raise SourceError(f"no {kind} recordings found; apt-get install {PACKAGES.get(kind, '?')}")
    return [p for p in files if split_of(p.name) == split]


def _drum_kits(split: str) -> list[Path]:
    """hydrogen-drumkits' kits (folders) of ``split``, by a hash of the kit's name."""
    if not HYDROGEN_DIR.is_dir():
        return []
    return [d for d in sorted(HYDROGEN_DIR.iterdir()) if d.is_dir() and split_of(d.name) == split]


def drum_patterns(kit: Path, sample_rate: int, seed: int, n: int = 3, seconds: float = 4.0) -> list[np.ndarray]:
    """``n`` seeded patterns (16th notes at 80-160 BPM, velocities varied) played from a real
    drum kit's samples: a drum loop as a drummer with that kit would play it."""
    hits = [a for a in _load_many(_audio_under(kit)[:64], sample_rate) if len(a) > 32]
    if not hits:
        return []
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(seconds * sample_rate)
        y = np.zeros(length + sample_rate, np.float32)
        step = int(sample_rate * 60 / rng.uniform(80, 160) / 4)
        voices = rng.choice(len(hits), size=min(4, len(hits)), replace=False)
        density = rng.uniform(0.2, 0.6, size=len(voices))
        for t in range(0, length, step):
            for v, d in zip(voices, density):
                if rng.random() < d:
                    hit = hits[v][:sample_rate]
                    y[t : t + len(hit)] += rng.uniform(0.3, 1.0) * hit
        out.append(y[:length])
    return out


def make_midi(path: Path, program: int, seed: int, n_notes: int = 24) -> None:
    """A seeded monophonic phrase with varied pitch, length and velocity for one GM program."""
    import mido

    rng = np.random.default_rng(seed)
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.Message("program_change", program=program, time=0))
    low = 40 if 32 <= program < 40 else 55  # the bass family plays an octave down
    pitch = int(rng.integers(low, low + 20))
    for _ in range(n_notes):
        pitch = int(np.clip(pitch + rng.integers(-5, 6), low - 5, low + 30))
        dur = int(rng.choice([120, 240, 480, 720]))
        gap = int(rng.choice([0, 0, 60, 240]))
        track.append(mido.Message("note_on", note=pitch, velocity=int(rng.integers(50, 120)), time=gap))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=dur))
    mid.save(str(path))


def render_program(program: int, seed: int, sample_rate: int, cache_dir: Path) -> np.ndarray:
    """Render (or reuse) a dry phrase of one GM program with the fluidsynth CLI."""
    out = cache_dir / f"gm{program:03d}_s{seed}_{sample_rate}.wav"
    if not out.exists():
        if shutil.which("fluidsynth") is None or not SOUNDFONT.exists():
            raise SourceError(
                "fluidsynth or the GM soundfont is missing; apt-get install fluidsynth fluid-soundfont-gm"
            )
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            midi = Path(tmp) / "phrase.mid"
            make_midi(midi, program, seed)
            part = Path(tmp) / "out.wav"
            subprocess.run(
                [
                    "fluidsynth",
                    "-ni",
                    "-q",
                    "-R",
                    "0",
                    "-C",
                    "0",
                    "-g",
                    "0.6",
                    "-r",
                    str(sample_rate),
                    "-F",
                    str(part),
                    str(SOUNDFONT),
                    str(midi),
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
            shutil.move(str(part), out)
    return _load(out, sample_rate)


def _trim(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    frame = sample_rate // 50
    n = len(audio) // frame
    if n == 0:
        return audio[:0]
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, 1) + 1e-12)
    loud = np.nonzero(rms > 10 ** (-50 / 20))[0]
    if len(loud) == 0:
        return audio[:0]
    return audio[loud[0] * frame : (loud[-1] + 1) * frame]


@dataclass
class DryCorpus:
    """Dry recordings in memory, one list per kind, at one sample rate."""

    sample_rate: int
    clips: dict[str, list[np.ndarray]]

    @classmethod
    def load(
        cls,
        sample_rate: int,
        split: str,
        kinds=KINDS,
        cache_dir: Path | None = None,
        max_files: int | None = None,
        instruments: str = "core",
    ) -> DryCorpus:
        """``instruments`` names the training programs (INSTRUMENT_SETS); held-out is fixed."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}")
        programs = instrument_programs(instruments, split)
        cache_dir = Path(cache_dir or Path.home() / ".cache" / "pimodule" / "fx")
        clips: dict[str, list[np.ndarray]] = {}
        for kind in kinds:
            if kind == "instruments":
                audio = [
                    render_program(p, 1000 + p + (0 if split == "train" else 500), sample_rate, cache_dir)
                    for p in programs[:max_files]
                ]
            elif kind == "drums":
                kits = _drum_kits(split)[:max_files]
                audio = [a for i, kit in enumerate(kits) for a in drum_patterns(kit, sample_rate, 77 + i)]
                audio += _load_many(_files(kind, split)[:max_files], sample_rate)
            else:
                audio = _load_many(_files(kind, split)[:max_files], sample_rate)
            clips[kind] = [a for a in (_trim(a, sample_rate) for a in audio) if len(a) > sample_rate // 4]
            log.info("%s/%s: %d clips, %.0f s", split, kind, len(clips[kind]), sum(map(len, clips[kind])) / sample_rate)
        if not any(clips.values()):
            raise SourceError(f"no usable dry audio for split {split!r}")
        return cls(sample_rate, clips)

    def excerpts(self, rng: np.random.Generator, batch: int, n_samples: int, n_parts: int = 1) -> np.ndarray:
        """``(batch, n_parts, n_samples)`` random excerpts, each row from one recording, levels
        normalised to an RMS between -30 and -12 dBFS (parts of a row share the gain)."""
        kinds = [k for k, v in self.clips.items() if v]
        out = np.zeros((batch, n_parts, n_samples), dtype=np.float32)
        for i in range(batch):
            clips = self.clips[kinds[rng.integers(len(kinds))]]
            clip = clips[rng.integers(len(clips))]
            for j in range(n_parts):
                out[i, j] = self._excerpt(clip, rng, n_samples)
            rms = np.sqrt(np.mean(out[i] ** 2) + 1e-12)
            out[i] *= 10 ** (rng.uniform(-30, -12) / 20) / rms
        return out

    def _excerpt(self, clip: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
        if len(clip) <= n:  # loop short clips (drum hits) to fill the window
            reps = -(-n // len(clip))
            clip = np.tile(clip, reps)
            return clip[:n]
        for _ in range(8):  # avoid near-silent windows
            start = rng.integers(0, len(clip) - n)
            seg = clip[start : start + n]
            if np.sqrt(np.mean(seg**2)) > 1e-3:
                break
        return seg
