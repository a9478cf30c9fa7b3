"""Turn a folder of recordings into a dataset of fixed-length examples with cached features.

Each file is read (wav/flac/ogg/aiff via soundfile), mixed to mono, resampled to the model's
rate, trimmed of leading and trailing silence and cut into examples of ``example_seconds``
(rounded to a whole number of hops). A trailing piece of at least half an example is kept,
zero-padded; a shorter one is dropped. f0, periodicity and loudness are computed over the whole
trimmed file (so example edges see real context) with :mod:`pimodule.core.features`.

Splits: if the source folder has ``train/`` and ``held_out/`` subfolders they are used;
otherwise whole files are held out (a seeded fraction, at least one file when there are two or
more; a single file gives its last examples instead).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf

from pimodule.core import features
from pimodule.laptop.data import dataset

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif")


class AudioFileError(ValueError):
    """A source file cannot be used: unreadable, empty, silent or too short. Names the file."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class NoUsableAudioError(ValueError):
    """Nothing usable remained after skipping bad files."""


@dataclass(frozen=True)
class PrepareConfig:
    sample_rate: int = features.DEFAULT_SAMPLE_RATE
    hop_size: int = features.DEFAULT_HOP_SIZE
    example_seconds: float = 4.0
    held_out: float = 0.15  # fraction of files held out when there are no train/held_out folders
    seed: int = 0
    fmin_hz: float = 40.0  # f0 search range of the pitch tracker
    fmax_hz: float = 2000.0
    silence_below_peak_db: float = 50.0  # trim where the level is this far below the file's peak
    silent_peak_db: float = -70.0  # a file whose peak is below this is silent
    trim_margin_s: float = 0.05

    @property
    def example_samples(self) -> int:
        return max(1, round(self.example_seconds * self.sample_rate / self.hop_size)) * self.hop_size


def list_audio_files(src: Path | str) -> list[Path]:
    src = Path(src)
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Band-limited resampling (soxr when installed, otherwise scipy's polyphase filter)."""
    if from_hz == to_hz:
        return audio.astype(np.float32, copy=False)
    try:
        import soxr  # noqa: PLC0415
        return soxr.resample(audio, from_hz, to_hz, quality="HQ").astype(np.float32)
    except ImportError:
        from scipy.signal import resample_poly  # noqa: PLC0415
        g = math.gcd(int(from_hz), int(to_hz))
        return resample_poly(audio, to_hz // g, from_hz // g).astype(np.float32)


def load_audio(path: Path | str, sample_rate: int) -> np.ndarray:
    """Mono float32 at ``sample_rate``; AudioFileError if unreadable or empty."""
    path = Path(path)
    try:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        raise AudioFileError(path, f"unreadable as audio ({err})") from err
    if audio.size == 0:
        raise AudioFileError(path, "empty (no samples)")
    mono = audio.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise AudioFileError(path, "contains NaN or infinite samples")
    return resample(mono, int(sr), sample_rate)


def trim_silence(audio: np.ndarray, config: PrepareConfig) -> np.ndarray:
    """Cut leading/trailing silence (keeping a small margin); empty if all silent."""
    win = max(1, int(0.02 * config.sample_rate))
    n = len(audio) // win
    if n == 0:
        return audio[:0]
    rms_db = 10 * np.log10(np.mean(audio[:n * win].reshape(n, win) ** 2, axis=1) + 1e-20)
    peak_db = 20 * math.log10(float(np.max(np.abs(audio))) + 1e-20)
    loud = np.flatnonzero(rms_db > peak_db - config.silence_below_peak_db)
    if len(loud) == 0:
        return audio[:0]
    margin = int(config.trim_margin_s * config.sample_rate)
    start = max(0, loud[0] * win - margin)
    stop = min(len(audio), (loud[-1] + 1) * win + margin)
    return audio[start:stop]


def examples_of_file(path: Path | str, config: PrepareConfig) -> dict[str, np.ndarray]:
    """All examples of one file as dataset arrays; AudioFileError when it is unusable."""
    audio = load_audio(path, config.sample_rate)
    peak = float(np.max(np.abs(audio)))
    if peak < 10 ** (config.silent_peak_db / 20):
        raise AudioFileError(path, f"silent (peak {20 * math.log10(peak + 1e-20):.0f} dBFS)")
    audio = trim_silence(audio, config)
    n = config.example_samples
    n_full, rest = divmod(len(audio), n)
    n_pieces = n_full + (1 if rest >= n // 2 else 0)
    if n_pieces == 0:
        raise AudioFileError(path, f"too short: {len(audio) / config.sample_rate:.2f} s of sound "
                                   f"after trimming silence, need at least "
                                   f"{n / 2 / config.sample_rate:.2f} s")
    padded = np.zeros(n_pieces * n, dtype=np.float32)
    m = min(len(audio), len(padded))
    padded[:m] = audio[:m]
    hop = config.hop_size
    f0, per = features.yin_f0(padded, config.sample_rate, hop_size=hop, fmin_hz=config.fmin_hz,
                              fmax_hz=config.fmax_hz)
    loud = features.a_weighted_loudness_db(padded, config.sample_rate, hop_size=hop)
    f = n // hop
    return {"audio": padded.reshape(n_pieces, n),
            "f0_hz": f0.reshape(n_pieces, f), "periodicity": per.reshape(n_pieces, f),
            "loudness_db": loud.reshape(n_pieces, f)}


def _stack(parts: list[dict[str, np.ndarray]], config: PrepareConfig) -> dict[str, np.ndarray]:
    if not parts:
        return dataset.empty_split(config.example_samples, config.hop_size)
    return {k: np.concatenate([p[k] for p in parts]).astype(np.float32) for k in dataset.ARRAYS}


def _split_sources(src: Path | str | Iterable[Path | str],
                   config: PrepareConfig) -> tuple[list[Path], list[Path] | None]:
    """(train files, held-out files or None when examples of a single file are split)."""
    if isinstance(src, (str, Path)):
        src = Path(src)
        if src.is_dir():
            tr, ho = src / "train", src / "held_out"
            if tr.is_dir() and ho.is_dir():
                return list_audio_files(tr), list_audio_files(ho)
            files = list_audio_files(src)
        elif src.exists():
            files = [src]
        else:
            raise FileNotFoundError(f"{src}: no such file or folder")
    else:
        files = [Path(p) for p in src]
    if not files:
        raise NoUsableAudioError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {src}")
    if len(files) == 1:
        return files, None
    rng = np.random.default_rng(config.seed)
    n_hold = min(len(files) - 1, max(1, round(config.held_out * len(files))))
    hold = set(rng.choice(len(files), size=n_hold, replace=False).tolist())
    return ([f for i, f in enumerate(files) if i not in hold],
            [f for i, f in enumerate(files) if i in hold])


def _examples_of_files(files: list[Path], config: PrepareConfig, skipped: list[dict],
                       ) -> tuple[list[dict[str, np.ndarray]], list[dict]]:
    parts, used = [], []
    for path in files:
        try:
            ex = examples_of_file(path, config)
        except AudioFileError as err:
            log.warning("skipping %s", err)
            skipped.append({"file": str(path), "error": err.reason})
            continue
        parts.append(ex)
        used.append({"file": str(path), "n_examples": int(len(ex["audio"]))})
    return parts, used


def prepare(src: Path | str | Iterable[Path | str], out_dir: Path | str, *,
            sample_rate: int = features.DEFAULT_SAMPLE_RATE,
            hop_size: int = features.DEFAULT_HOP_SIZE, example_seconds: float = 4.0,
            held_out: float = 0.15, seed: int = 0, fmin_hz: float = 40.0,
            fmax_hz: float = 2000.0, extra_info: dict | None = None) -> dict:
    """Build ``out_dir/{train,held_out}.npz`` and ``dataset.json`` from recordings. Returns the info.

    Bad files are skipped with a warning (and listed in the info); NoUsableAudioError if no
    training example remains.
    """
    config = PrepareConfig(sample_rate=sample_rate, hop_size=hop_size,
                           example_seconds=example_seconds, held_out=held_out, seed=seed,
                           fmin_hz=fmin_hz, fmax_hz=fmax_hz)
    if not 0.0 <= held_out < 1.0:
        raise ValueError(f"held_out must be a fraction in [0, 1), got {held_out}")
    train_files, held_files = _split_sources(src, config)
    skipped: list[dict] = []
    train_parts, train_used = _examples_of_files(train_files, config, skipped)
    if held_files is None:  # one file: its last examples are held out
        held_parts, held_used = [], []
        if train_parts and held_out > 0 and len(train_parts[0]["audio"]) >= 2:
            ex = train_parts[0]
            k = max(1, round(held_out * len(ex["audio"])))
            train_parts = [{a: v[:-k] for a, v in ex.items()}]
            held_parts = [{a: v[-k:] for a, v in ex.items()}]
            train_used[0]["n_examples"] -= k
            held_used = [{"file": train_used[0]["file"], "n_examples": k, "last_examples": True}]
    else:
        held_parts, held_used = _examples_of_files(held_files, config, skipped)
    train, held = _stack(train_parts, config), _stack(held_parts, config)
    if len(train["audio"]) == 0:
        detail = "; ".join(f"{s['file']}: {s['error']}" for s in skipped) or "no examples"
        raise NoUsableAudioError(f"no usable training audio in {src} ({detail})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset.save_split(out_dir, "train", train, hop_size)
    dataset.save_split(out_dir, "held_out", held, hop_size)
    ex_s = config.example_samples / sample_rate
    info = {
        "sample_rate": sample_rate, "hop_size": hop_size,
        "example_seconds": ex_s, "example_samples": config.example_samples,
        "n_frames": config.example_samples // hop_size,
        "splits": {
            "train": {"n_examples": int(len(train["audio"])),
                      "minutes": len(train["audio"]) * ex_s / 60, "files": train_used},
            "held_out": {"n_examples": int(len(held["audio"])),
                         "minutes": len(held["audio"]) * ex_s / 60, "files": held_used},
        },
        "skipped": skipped,
        "features": {"f0": "YIN (pimodule.core.features.yin_f0)", "fmin_hz": fmin_hz,
                     "fmax_hz": fmax_hz,
                     "yin_window_size": features.default_yin_window_size(sample_rate, fmin_hz),
                     "oversample": features.default_oversample(sample_rate, fmax_hz),
                     "loudness_n_fft": features.default_loudness_n_fft(sample_rate),
                     "loudness": "A-weighted, dB (pimodule.core.features.a_weighted_loudness_db)"},
    }
    info.update(extra_info or {})
    dataset.save_info(out_dir, info)
    return info
