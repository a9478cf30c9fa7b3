"""Turn recordings into a dataset of fixed-length examples with cached features.

1. Every file is checked first (readable, an audio format, channels, level, length: see
   :mod:`pimodule.laptop.data.audio_files`); a file that cannot be used is skipped and named with
   its reason, before anything is split. Stereo is mixed down (noted). wav, flac, ogg, aiff and
   mp3 are accepted alike, in a folder or as a single file.
2. Held-out material is a share of the *audio* (``held_out``, seeded): whole recordings while
   they fit, then one stretch cut out of a recording at quiet points, so a single long recording
   also gets a held-out part. A source folder with ``train/`` and ``held_out/`` subfolders is
   used as it is split.
3. Each stretch is cut into examples of ``example_seconds`` (a whole number of hops) that overlap
   just enough to cover it to its end (a stretch shorter than one example is zero-padded): nothing
   usable is dropped. f0, periodicity and loudness are computed over the whole stretch (example
   edges see real context) with :mod:`pimodule.core.features`.
4. A summary (:mod:`pimodule.laptop.data.summary`: minutes, pitch and loudness range, silence,
   warnings) is stored in ``dataset.json``; below a minimum of pitched audio the dataset is
   refused with the number to reach (``force`` writes it anyway, with the reason recorded).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pimodule.core import features
from pimodule.laptop.data import dataset, summary
from pimodule.laptop.data.audio_files import (
    AUDIO_EXTENSIONS,
    AudioFileError,
    CheckConfig,
    Recording,
    check_recording,
    list_audio_files,
    load_audio,
    resample,
)

__all__ = ["AUDIO_EXTENSIONS", "AudioFileError", "NoUsableAudioError", "NotEnoughAudioError", "PrepareConfig"]
__all__ += ["examples_of_file", "load_audio", "prepare", "resample"]
log = logging.getLogger(__name__)
QUIET_SEARCH_S = 2.0  # a held-out stretch's edges move up to this far (and a quarter of it) to a quiet moment


class NoUsableAudioError(ValueError):
    """Nothing usable remained after skipping bad files."""


class NotEnoughAudioError(ValueError):
    """Usable, but too little to train a voice on (the message says how much more to record);
    ``info`` holds what was found (skipped files, the summary)."""

    def __init__(self, message: str, info: dict) -> None:
        super().__init__(message)
        self.info = info


@dataclass(frozen=True)
class PrepareConfig:
    sample_rate: int = features.DEFAULT_SAMPLE_RATE
    hop_size: int = features.DEFAULT_HOP_SIZE
    example_seconds: float = 4.0
    held_out: float = 0.15  # share of the audio held out (when there are no train/held_out folders)
    seed: int = 0
    fmin_hz: float = 40.0  # f0 search range of the pitch tracker
    fmax_hz: float = 2000.0
    silence_below_peak_db: float = 50.0  # trim where the level is this far below the file's peak
    silent_peak_db: float = -70.0  # a file whose peak is below this is silent
    trim_margin_s: float = 0.3  # silence kept before the first and after the last sound
    min_seconds: float = 0.5  # a file (or a stretch) with less sound than this is not used

    @property
    def example_samples(self) -> int:
        return max(1, round(self.example_seconds * self.sample_rate / self.hop_size)) * self.hop_size

    @property
    def check(self) -> CheckConfig:
        return CheckConfig(
            self.sample_rate, self.silence_below_peak_db, self.silent_peak_db, self.trim_margin_s, self.min_seconds
        )


# -- examples of one stretch ------------------------------------------------------------------------
def example_starts(n_samples: int, example_samples: int, hop: int) -> list[int]:
    """Starts (multiples of ``hop``) of the fewest examples that cover ``n_samples``, overlapping
    evenly; one (zero-padded) example when the stretch is shorter than an example."""
    if n_samples <= example_samples:
        return [0]
    k = math.ceil(n_samples / example_samples)
    last = (n_samples - example_samples) // hop
    return [round(i * last / (k - 1)) * hop for i in range(k)]


def stretch_examples(audio: np.ndarray, config: PrepareConfig) -> tuple[dict[str, np.ndarray], dict]:
    """(dataset arrays of the examples covering ``audio``, its features over the real audio)."""
    n, hop = config.example_samples, config.hop_size
    x = np.zeros(max(n, -(-len(audio) // hop) * hop), np.float32)
    x[: len(audio)] = audio
    f0, per = features.yin_f0(x, config.sample_rate, hop_size=hop, fmin_hz=config.fmin_hz, fmax_hz=config.fmax_hz)
    loud = features.a_weighted_loudness_db(x, config.sample_rate, hop_size=hop)
    frames, real = n // hop, len(audio) // hop
    starts = example_starts(len(x), n, hop)
    arrays = {
        "audio": np.stack([x[s : s + n] for s in starts]),
        "f0_hz": np.stack([f0[s // hop : s // hop + frames] for s in starts]),
        "periodicity": np.stack([per[s // hop : s // hop + frames] for s in starts]),
        "loudness_db": np.stack([loud[s // hop : s // hop + frames] for s in starts]),
    }
    return arrays, {"f0_hz": f0[:real], "periodicity": per[:real], "loudness_db": loud[:real]}


def examples_of_file(path: Path | str, config: PrepareConfig) -> dict[str, np.ndarray]:
    """All examples of one checked recording as dataset arrays; AudioFileError when unusable."""
    return stretch_examples(check_recording(path, config.check).audio, config)[0]


# -- which audio is held out ------------------------------------------------------------------------
def _quietest(audio: np.ndarray, near: int, sample_rate: int, lo: int, hi: int, reach: int) -> int:
    """The quietest 20 ms point within ``reach`` samples of ``near``, inside [lo, hi]."""
    win = int(0.02 * sample_rate)
    a, b = max(lo, near - reach), min(hi, near + reach)
    if b - a < 2 * win:
        return min(max(near, lo), hi)
    n = (b - a) // win
    energy = np.mean(audio[a : a + n * win].reshape(n, win) ** 2, axis=1)
    return a + int(np.argmin(energy)) * win + win // 2


Stretch = tuple[int, int, int]  # (recording index, start, stop) in samples


def split_by_share(recs: list[Recording], held_out: float, seed: int, min_held: int) -> tuple[list, list]:
    """(train stretches, held-out stretches): about ``held_out`` of all the audio (at least
    ``min_held`` samples when there is twice that), whole recordings first (seeded order), then a
    stretch of one recording cut at quiet points."""
    lengths = [len(r.audio) for r in recs]
    total = sum(lengths)
    whole: list[Stretch] = [(i, 0, n) for i, n in enumerate(lengths)]
    if held_out <= 0:
        return whole, []
    need = max(round(held_out * total), min(min_held, total // 2))
    rng = np.random.default_rng(seed)
    held: list[Stretch] = []
    train = {i: [(i, 0, n)] for i, n in enumerate(lengths)}
    left = total
    for i in rng.permutation(len(recs)).tolist():
        n, sr = lengths[i], recs[i].sample_rate
        if n <= need and left - n > 0:
            held.append((i, 0, n))
            del train[i]
            need, left = need - n, left - n
            continue
        margin, reach = int(0.5 * sr), min(int(QUIET_SEARCH_S * sr), need // 4)
        start = int(rng.integers(0, max(1, n - need + 1)))
        start = _quietest(recs[i].audio, start, sr, 0, max(0, n - need), reach)
        stop = _quietest(recs[i].audio, start + need, sr, start + need // 2, n, reach)
        start = 0 if start < margin else start
        stop = n if n - stop < margin else stop
        held.append((i, start, stop))
        train[i] = [s for s in ((i, 0, start), (i, stop, n)) if s[2] > s[1]]
        break
    return [s for i in sorted(train) for s in train[i]], sorted(held)


# -- the whole job ----------------------------------------------------------------------------------
def _collect(src: Path | str | Iterable[Path | str]) -> tuple[list[Path], list[Path] | None, list[Path]]:
    """(files, files of the held_out/ folder or None, unreadable audio formats found)."""
    if not isinstance(src, (str, Path)):
        return [Path(p) for p in src], None, []
    src = Path(src)
    if src.is_dir():
        tr, ho = src / "train", src / "held_out"
        if tr.is_dir() and ho.is_dir():
            (a, x), (b, y) = list_audio_files(tr), list_audio_files(ho)
            return a, b, x + y
        files, other = list_audio_files(src)
        if not files and not other:
            raise NoUsableAudioError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {src}")
        return files, None, other
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    return [src], None, []


def _check_all(files: list[Path], config: PrepareConfig, skipped: list[dict]) -> list[Recording]:
    recs = []
    for path in files:
        try:
            recs.append(check_recording(path, config.check))
        except AudioFileError as err:
            log.debug("skipping %s", err)
            skipped.append({"file": str(path), "error": err.reason})
    return recs


def _stack(parts: list[dict[str, np.ndarray]], config: PrepareConfig) -> dict[str, np.ndarray]:
    if not parts:
        return dataset.empty_split(config.example_samples, config.hop_size)
    return {k: np.concatenate([p[k] for p in parts]).astype(np.float32) for k in dataset.ARRAYS}


def _build(recs: list[Recording], stretches: list[Stretch], config: PrepareConfig, bar: tqdm) -> tuple:
    """(arrays, per-stretch features of real audio, file records) of one split."""
    parts, feats, used = [], [], []
    sr = config.sample_rate
    for i, start, stop in stretches:
        bar.update(round((stop - start) / sr))
        arrays, feat = stretch_examples(recs[i].audio[start:stop], config)
        parts.append(arrays)
        feats.append(feat)
        used.append(
            {
                "file": str(recs[i].path),
                "from_s": round(start / sr, 2),
                "to_s": round(stop / sr, 2),
                "n_examples": int(len(arrays["audio"])),
            }
        )
    return _stack(parts, config), feats, used


def prepare(
    src: Path | str | Iterable[Path | str],
    out_dir: Path | str,
    *,
    sample_rate: int = features.DEFAULT_SAMPLE_RATE,
    hop_size: int = features.DEFAULT_HOP_SIZE,
    example_seconds: float = 4.0,
    held_out: float = 0.15,
    seed: int = 0,
    fmin_hz: float = 40.0,
    fmax_hz: float = 2000.0,
    extra_info: dict | None = None,
    min_voiced_minutes: float = 0.0,
    min_held_out_voiced_s: float = 0.0,
    force: bool = False,
    progress: bool = False,
) -> dict:
    """Build ``out_dir/{train,held_out}.npz`` and ``dataset.json`` from recordings; returns the info.

    Bad files are skipped (listed in the info with their reasons); NoUsableAudioError if none is
    usable; NotEnoughAudioError (nothing written) below ``min_voiced_minutes`` of pitched training
    audio or ``min_held_out_voiced_s`` held out, unless ``force``.
    """
    if not 0.0 <= held_out < 1.0:
        raise ValueError(f"held_out must be a fraction in [0, 1), got {held_out}")
    config = PrepareConfig(sample_rate, hop_size, example_seconds, held_out, seed, fmin_hz, fmax_hz)
    files, held_files, other = _collect(src)
    skipped = [
        {"file": str(p), "error": f"{p.suffix} files cannot be read here: convert to wav or flac"} for p in other
    ]
    recs = _check_all(files, config, skipped)
    if held_files is None:
        train_s, held_s = split_by_share(recs, held_out, seed, config.example_samples)
    else:
        held_recs = _check_all(held_files, config, skipped)
        train_s = [(i, 0, len(r.audio)) for i, r in enumerate(recs)]
        held_s = [(len(recs) + i, 0, len(r.audio)) for i, r in enumerate(held_recs)]
        recs = recs + held_recs
    if not train_s:
        detail = "; ".join(f"{Path(s['file']).name}: {s['error']}" for s in skipped) or "no recordings"
        raise NoUsableAudioError(f"no usable audio in {src} ({detail})")
    seconds = sum(stop - start for _, start, stop in train_s + held_s) / sample_rate
    with tqdm(total=round(seconds), desc="pitch and loudness", unit="s", disable=not progress or seconds < 60) as bar:
        train, train_feats, train_used = _build(recs, train_s, config, bar)
        held, held_feats, held_used = _build(recs, held_s, config, bar)
    frame_rate = sample_rate / hop_size
    summ = summary.summarize(train_feats, held_feats, frame_rate)
    short = summary.shortfall(summ, min_voiced_minutes, min_held_out_voiced_s)
    if short and force:
        summ["warnings"].insert(0, f"NOT ENOUGH AUDIO (forced: written anyway): {short}")
    ex_s = config.example_samples / sample_rate
    info = {
        "sample_rate": sample_rate,
        "hop_size": hop_size,
        "example_seconds": ex_s,
        "example_samples": config.example_samples,
        "n_frames": config.example_samples // hop_size,
        "held_out_share": held_out,
        "seed": seed,
        "splits": {
            "train": {"n_examples": int(len(train["audio"])), "minutes": summ["train"]["minutes"], "files": train_used},
            "held_out": {
                "n_examples": int(len(held["audio"])),
                "minutes": summ["held_out"]["minutes"],
                "files": held_used,
            },
        },
        "skipped": skipped,
        "notes": [{"file": str(r.path), "note": n} for r in recs for n in r.notes],
        "summary": summ,
        "features": {
            "f0": "YIN (pimodule.core.features.yin_f0)",
            "fmin_hz": fmin_hz,
            "fmax_hz": fmax_hz,
            "yin_window_size": features.default_yin_window_size(sample_rate, fmin_hz),
            "oversample": features.default_oversample(sample_rate, fmax_hz),
            "loudness_n_fft": features.default_loudness_n_fft(sample_rate),
            "loudness": "A-weighted, dB (pimodule.core.features.a_weighted_loudness_db)",
        },
    }
    info.update(extra_info or {})
    if short and not force:
        raise NotEnoughAudioError(f"not enough to train a voice on: {short} (or --force to go on anyway)", info)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset.save_split(out_dir, "train", train, hop_size)
    dataset.save_split(out_dir, "held_out", held, hop_size)
    dataset.save_info(out_dir, info)
    return info
