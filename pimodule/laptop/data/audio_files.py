"""Reading recordings: the formats accepted, plain errors, mono at the model's rate, trimming.

One reader for every place that takes a recording (``pimodule data prepare`` on a folder or a
single file, ``pimodule render --input``), so a format is accepted or refused the same way
everywhere. soundfile (libsndfile) reads wav, flac, ogg (Vorbis, Opus), aiff and, with
libsndfile >= 1.1 (Debian 12 ships 1.2), mp3; with an older libsndfile an mp3 is refused with a
sentence saying so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".mp3")
# formats people record in that libsndfile cannot read: named when skipped, never silently ignored
OTHER_AUDIO_EXTENSIONS = (".m4a", ".aac", ".wma", ".mp4", ".mov", ".caf", ".amr", ".ape", ".wv")
MP3_MIN_LIBSNDFILE = (1, 1)


class AudioFileError(ValueError):
    """A recording cannot be used: missing, unreadable, empty, silent or too short. Names the file."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def libsndfile_reads_mp3() -> bool:
    version = sf.__libsndfile_version__.split(".")
    try:
        return tuple(int(v) for v in version[:2]) >= MP3_MIN_LIBSNDFILE
    except ValueError:
        return "MP3" in sf.available_formats()


def list_audio_files(src: Path | str) -> tuple[list[Path], list[Path]]:
    """(recordings, files of an audio format that cannot be read) under ``src``, sorted; other
    files (text, pictures) are not listed."""
    src = Path(src)
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    audio = [p for p in files if p.suffix.lower() in AUDIO_EXTENSIONS]
    other = [p for p in files if p.suffix.lower() in OTHER_AUDIO_EXTENSIONS]
    return audio, other


def _plain_reason(path: Path, err: Exception) -> str:
    text = str(err)
    if "Format not recognised" in text or "unknown format" in text.lower():
        return "cannot be read as audio (format not recognised)"
    if "System error" in text and path.is_dir():
        return "a folder, not an audio file"
    return f"cannot be read as audio ({text.split(': ', 1)[-1].strip() or type(err).__name__})"


def read_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """(float32 samples of shape (n, channels), sample rate); AudioFileError in plain words."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise AudioFileError(path, "no such file")
    if path.is_dir():
        raise AudioFileError(path, "a folder, not an audio file")
    if suffix in OTHER_AUDIO_EXTENSIONS:
        raise AudioFileError(path, f"{suffix} files cannot be read here: convert to wav or flac first")
    if suffix == ".mp3" and not libsndfile_reads_mp3():
        raise AudioFileError(
            path,
            f"mp3 needs libsndfile >= 1.1 (this one is {sf.__libsndfile_version__}): convert to wav or flac",
        )
    if path.stat().st_size == 0:
        raise AudioFileError(path, "empty file (0 bytes)")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, TypeError
        raise AudioFileError(path, _plain_reason(path, err)) from err
    if audio.size == 0:
        raise AudioFileError(path, "empty (no samples)")
    if not np.all(np.isfinite(audio)):
        raise AudioFileError(path, "contains NaN or infinite samples")
    return audio, int(rate)


def to_mono(audio: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Mix (n, channels) down to mono; a note when channels were mixed (or one was taken)."""
    if audio.shape[1] == 1:
        return audio[:, 0], None
    mono = audio.mean(axis=1)
    rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2, axis=0))
    what = "stereo" if audio.shape[1] == 2 else f"{audio.shape[1]} channels"
    if float(np.sqrt(np.mean(mono.astype(np.float64) ** 2))) < 0.3 * float(rms.max()):
        best = int(rms.argmax())
        return audio[:, best], f"{what}: the channels cancel when mixed (out of phase?), used channel {best + 1}"
    return mono, f"{what}: mixed down to mono"


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
    """Mono float32 at ``sample_rate``; AudioFileError if unusable."""
    audio, rate = read_audio(path)
    return resample(to_mono(audio)[0], rate, sample_rate)


@dataclass(frozen=True)
class CheckConfig:
    sample_rate: int = 16000
    silence_below_peak_db: float = 50.0  # trim where the level is this far below the file's peak
    silent_peak_db: float = -70.0  # a file whose peak is below this is silent
    trim_margin_s: float = 0.3  # silence kept before the first and after the last sound
    min_seconds: float = 0.5  # less sound than this (after trimming) is too short to use


@dataclass
class Recording:
    """A checked recording: mono at the model's rate, leading/trailing silence trimmed."""

    path: Path
    audio: np.ndarray
    sample_rate: int
    source_rate: int
    channels: int
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


def trim_silence(audio: np.ndarray, sample_rate: int, below_peak_db: float, margin_s: float) -> np.ndarray:
    """Cut leading/trailing silence (keeping ``margin_s``); empty if all silent."""
    win = max(1, int(0.02 * sample_rate))
    n = len(audio) // win
    if n == 0:
        return audio[:0]
    rms_db = 10 * np.log10(np.mean(audio[: n * win].reshape(n, win) ** 2, axis=1) + 1e-20)
    peak_db = 20 * math.log10(float(np.max(np.abs(audio))) + 1e-20)
    loud = np.flatnonzero(rms_db > peak_db - below_peak_db)
    if len(loud) == 0:
        return audio[:0]
    margin = int(margin_s * sample_rate)
    start = max(0, loud[0] * win - margin)
    stop = min(len(audio), (loud[-1] + 1) * win + margin)
    return audio[start:stop]


def check_recording(path: Path | str, config: CheckConfig = CheckConfig()) -> Recording:
    """Read and check one recording (readable, audio, channels, level, length); AudioFileError
    with the reason when it cannot be used."""
    path = Path(path)
    raw, rate = read_audio(path)
    mono, note = to_mono(raw)
    peak = float(np.max(np.abs(mono)))
    if peak < 10 ** (config.silent_peak_db / 20):
        raise AudioFileError(path, f"silent (peak {20 * math.log10(peak + 1e-20):.0f} dBFS)")
    notes = [note] if note else []
    if peak >= 0.999:
        notes.append("peaks at 0 dBFS: check it did not clip while recording")
    audio = trim_silence(
        resample(mono, rate, config.sample_rate),
        config.sample_rate,
        config.silence_below_peak_db,
        config.trim_margin_s,
    )
    seconds = len(audio) / config.sample_rate
    if seconds < config.min_seconds:
        raise AudioFileError(
            path, f"too short: {seconds:.2f} s of sound after trimming silence, need at least {config.min_seconds} s"
        )
    return Recording(path, audio, config.sample_rate, rate, raw.shape[1], notes)
