"""Running a trained estimator on recordings of any length and sample rate.

The signal is resampled to the model's rate, cut into the model's fixed analysis windows (short
inputs are zero-padded), and the windows' probabilities and [0, 1] parameters are averaged over the
windows that are not silent. Works with a training run folder (torch) or an exported ``.onnx``
file (onnxruntime).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import soxr
import torch

from pimodule.device.fx.align import Lag, find_lag, line_up
from pimodule.device.fx.estimator import OnnxEstimator
from pimodule.device.fx.twin_chain import ChainTwin
from pimodule.device.fx.twin_core import EQ_SECTIONS
from pimodule.laptop.data.audio_files import AudioFileError, read_audio
from pimodule.laptop.fx.chain import Chain
from pimodule.laptop.fx.model import WINDOW_S, analysis_samples
from pimodule.laptop.fx.refine import RefineConfig, Refined, refine_one
from pimodule.laptop.fx.run import load_run
from pimodule.laptop.fx.style import choose_for_reference

log = logging.getLogger(__name__)
KEEP_FILE = "keep.json"  # a run folder's calibrated keep thresholds (pimodule.laptop.fx.calibrate)
STRENGTH_FILE = "strength.json"  # and the strengths of what is kept
SILENCE_RMS = 10 ** (-60 / 20)


class LoadedEstimator:
    def __init__(self, path: Path):
        path = Path(path)
        if path.suffix == ".onnx":
            self.backend = OnnxEstimator(path)
            if self.backend.warning:
                log.warning("%s", self.backend.warning)
            self.sample_rate = self.backend.sample_rate
            self.window = self.backend.window
            self.conditioning = self.backend.conditioning
            self.keep = dict(self.backend.keep)
            self.strength = dict(self.backend.strength)
        else:
            self.model, self.config, _ = load_run(path)
            self.backend = None
            self.sample_rate = self.config.model.sample_rate
            self.window = analysis_samples(self.config.model, WINDOW_S)
            self.conditioning = self.config.model.conditioning
            keep, strength = path / KEEP_FILE, path / STRENGTH_FILE
            self.keep = json.loads(keep.read_text()) if keep.is_file() else {}
            self.strength = json.loads(strength.read_text()) if strength.is_file() else {}

    def _windows(self, audio: np.ndarray) -> np.ndarray:
        """The model's analysis windows over the whole signal, half overlapping, the last one
        ending with the signal (a short signal is zero-padded into one window)."""
        n = self.window
        if len(audio) <= n:
            return np.pad(np.asarray(audio, np.float32), (0, n - len(audio)))[None]
        starts = list(range(0, len(audio) - n + 1, n // 2))
        if starts[-1] != len(audio) - n:
            starts.append(len(audio) - n)
        return np.stack([np.asarray(audio[s : s + n], np.float32) for s in starts])

    def estimate(
        self, wet: np.ndarray, sample_rate: int, other: np.ndarray | None = None, other_rate: int | None = None
    ) -> Chain:
        """Mono float arrays in; the averaged chain (probabilities, unit params) out."""
        if self.conditioning != "blind" and other is None:
            raise ValueError(f"this estimator is {self.conditioning}-conditioned: give --dry or --reference")
        if other is not None and self.conditioning == "blind":
            raise ValueError("a blind estimator hears the wet signal only: it takes no second signal")
        w = self._windows(to_rate(wet, sample_rate, self.sample_rate))
        o = None
        if other is not None and self.conditioning != "blind":
            o = self._windows(to_rate(other, other_rate or sample_rate, self.sample_rate))
            k = min(len(w), len(o))
            w, o = w[:k], o[:k]
        loud = np.sqrt(np.mean(w**2, 1)) > SILENCE_RMS
        if loud.any():
            w, o = w[loud], (o[loud] if o is not None else None)
        if self.backend is not None:
            active, mode, unit = self.backend.run(w, o)
            chain = Chain(torch.from_numpy(active), torch.from_numpy(unit), torch.from_numpy(mode))
        else:
            with torch.no_grad():
                chain, _, _ = self.model(torch.from_numpy(w), None if o is None else torch.from_numpy(o))
        return Chain(
            chain.active.mean(0, keepdim=True),
            chain.unit.mean(0, keepdim=True),
            chain.mode_weights.mean(0, keepdim=True),
        )


def lined_up(wet: np.ndarray, sample_rate: int, dry: np.ndarray, dry_rate: int, rate: int):
    """Wet and dry (mono) at ``rate``, the wet moved by how late it is on the dry
    (:func:`pimodule.device.fx.align.find_lag`: re-amping, a digital pedal, files trimmed apart) and
    both cut to the part they share; with the lag found. Fewer than :data:`MIN_SECONDS` in common:
    ValueError. A file at a rate below ``rate`` holds nothing above its Nyquist frequency: the other
    one is band-limited alike (through that rate), so that the missing top is not read as an effect."""
    low = min(sample_rate, dry_rate)
    if low < rate:
        wet, sample_rate = to_rate(wet, sample_rate, low), low
        dry, dry_rate = to_rate(dry, dry_rate, low), low
    y, x = to_rate(wet, sample_rate, rate), to_rate(dry, dry_rate, rate)
    lag = find_lag(x, y, rate)
    x, y = line_up(x, y, lag.samples)
    if len(x) < MIN_SECONDS * rate:
        raise ValueError(f"the wet and dry files need at least {MIN_SECONDS:g} s in common")
    return y, x, lag


def flat_above(description: dict, limit_hz: float) -> tuple[dict, list[str]]:
    """``description`` with every EQ band at or above ``limit_hz`` set to 0 dB (the EQ switched off
    when nothing of it is left), and the bands so flattened. An input that stops at ``limit_hz`` (a
    file at a lower rate) says nothing of what an EQ does above it: whatever the estimate holds there
    was never heard, and rendered on a full-band file it would be played."""
    eq = description.get("eq")
    if not eq or not eq.get("active"):
        return description, []
    params, flat = dict(eq["params"]), []
    for _, freq, gain, _ in EQ_SECTIONS:
        if gain in params and params.get(freq, 0.0) >= limit_hz and params[gain] != 0.0:
            params[gain] = 0.0
            flat.append(gain.removesuffix("_gain_db"))
    if not flat:
        return description, []
    left = any(abs(params.get(gain, 0.0)) >= 0.05 for _, _, gain, _ in EQ_SECTIONS)
    return {**description, "eq": {**eq, "params": params, "active": left}}, flat


def limited(description: dict, model_rate: int, *rates: int) -> tuple[dict, list[str]]:
    """:func:`flat_above` at the top of the inputs at ``rates`` when it is below what the model at
    ``model_rate`` hears, with what a user should be told (nothing when the inputs are full band)."""
    if min(rates) >= model_rate:
        return description, []
    limit = min(rates) / 2
    description, flat = flat_above(description, limit)
    if not flat:
        return description, []
    return description, [
        f"EQ {', '.join(flat)} at or above {limit / 1000:g} kHz left flat: the input stops there, so it was not heard"
    ]


def lag_note(lag: Lag, rate: int) -> str | None:
    """What the user is told about the lining up (None when the files started together)."""
    if not lag.found:
        return (
            "the files' start could not be checked (no clear peak in their cross-correlation: a repetitive "
            "or very noisy recording?): used as they are, make sure they start together"
        )
    if abs(lag.samples) <= 1:
        return None
    side = "late" if lag.samples > 0 else "early"
    ms = abs(lag.ms(rate))
    how = f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"
    return f"the input is {how} {side} on the dry file: lined up before estimating"


def refine_estimate(
    estimator: LoadedEstimator,
    chain: Chain,
    wet: np.ndarray,
    dry: np.ndarray,
    config: RefineConfig | None = None,
    progress=None,
) -> Refined:
    """``chain`` (the network's estimate of ``wet`` from ``dry``, both lined up at the model's rate:
    :func:`lined_up`) refined by analysis by synthesis (:func:`pimodule.laptop.fx.refine.refine_one`)."""
    return refine_one(
        torch.from_numpy(np.array(dry, np.float32)),
        torch.from_numpy(np.array(wet, np.float32)),
        estimator.sample_rate,
        chain,
        config or RefineConfig(),
        progress,
    )


def styled_estimate(
    estimator: LoadedEstimator, x: np.ndarray, x_rate: int, reference: np.ndarray, reference_rate: int
) -> Refined:
    """A reference-conditioned estimator's chain for the input ``x`` to sound like ``reference``,
    checked on the audio (:func:`pimodule.laptop.fx.style.choose_for_reference`: only what brings
    ``x`` closer to the reference's sound than ``x`` as it is stays on; the reference's level)."""
    chain = estimator.estimate(reference, reference_rate, other=x, other_rate=x_rate)
    rate = estimator.sample_rate
    return choose_for_reference(
        torch.from_numpy(to_rate(x, x_rate, rate)),
        torch.from_numpy(to_rate(reference, reference_rate, rate)),
        rate,
        chain.hard(),
        chain.active,
    )


def _envelope_db(x: np.ndarray, rate: int) -> np.ndarray:
    frame = max(1, rate // 50)  # 20 ms
    n = len(x) // frame
    return 10 * np.log10(np.mean(x[: n * frame].reshape(n, frame) ** 2, 1) + 1e-10) if n else np.zeros(0)


#: below this the dry and wet level envelopes are taken as unrelated (effects of the benchmark's
#: chains keep it above 0.5; unrelated recordings sit around 0-0.3)
MATCH_CORRELATION = 0.4


def dry_mismatch(wet: np.ndarray, dry: np.ndarray, rate: int) -> list[str]:
    """Why ``dry`` may not be the source of ``wet`` (both mono at ``rate``), as warnings: lengths
    that differ, levels 40 dB apart, level envelopes (20 ms frames, dB) that do not go together
    (best correlation within ±100 ms below :data:`MATCH_CORRELATION`). Empty when they match."""
    out = []
    if abs(len(wet) - len(dry)) > 0.5 * rate + 0.1 * max(len(wet), len(dry)):
        out.append(f"the files' lengths differ ({len(dry) / rate:.1f} s dry, {len(wet) / rate:.1f} s wet)")
    n = min(len(wet), len(dry))
    level = 10 * np.log10((np.mean(wet[:n] ** 2) + 1e-12) / (np.mean(dry[:n] ** 2) + 1e-12))
    if abs(level) > 40:
        out.append(f"their levels are {abs(level):.0f} dB apart")
    a, b = _envelope_db(wet[:n], rate), _envelope_db(dry[:n], rate)
    if len(a) >= 10:
        best = -1.0
        for lag in range(-5, 6):
            u, v = (a[lag:], b[: len(b) - lag]) if lag >= 0 else (a[:lag], b[-lag:])
            if len(u) > 5 and np.std(u) > 1e-6 and np.std(v) > 1e-6:
                best = max(best, float(np.corrcoef(u, v)[0, 1]))
        if best < MATCH_CORRELATION:
            out.append(f"their level envelopes do not go together (correlation {best:.2f})")
    return out


def is_silent(audio: np.ndarray, rate: int) -> bool:
    """No signal: no 20 ms of it reaches -60 dBFS (RMS)."""
    env = _envelope_db(np.asarray(audio, np.float64), rate)
    return len(env) == 0 or float(np.max(env)) < 20 * np.log10(SILENCE_RMS)


def to_rate(audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(1)
    return audio if sr == target else soxr.resample(audio, sr, target).astype(np.float32)


#: shorter than this there is nothing to estimate from (a reverb's tail, a compressor's release)
MIN_SECONDS = 0.1


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    """A recording to estimate from, mixed to mono: unreadable, empty, non-finite (NaN, inf) or
    shorter than :data:`MIN_SECONDS` files are refused in plain words (``AudioFileError``)."""
    audio, sr = read_audio(path)
    if audio.shape[0] < MIN_SECONDS * sr:
        raise AudioFileError(
            path,
            f"too short to estimate from ({1000 * audio.shape[0] / sr:.0f} ms; at least {MIN_SECONDS:g} s)",
        )
    return without_dc(audio.mean(1)), sr


def without_dc(audio: np.ndarray) -> np.ndarray:
    """``audio`` (mono) less its mean: a DC offset is not sound, no effect of the chain makes one, and
    the distances would weigh it as a tone (the lowest bins)."""
    audio = np.asarray(audio, np.float64)
    return (audio - audio.mean()).astype(np.float32)


PEAK_DB = -1.0  # --apply-to output: peaks above this are normalised down to it


def peak_safe(audio: np.ndarray, peak_db: float = PEAK_DB) -> tuple[np.ndarray, float]:
    """``audio`` scaled down so that its peak is at most ``peak_db`` dBFS (never up), and the gain
    applied in dB (0 when it was already below; non-finite samples become 0)."""
    audio = np.nan_to_num(np.asarray(audio, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    ceiling = 10 ** (peak_db / 20)
    if peak <= ceiling:
        return audio, 0.0
    return audio * (ceiling / peak), 20 * np.log10(ceiling / peak)


def apply_estimate(description: dict, audio: np.ndarray, sample_rate: int, block_size: int = 4096) -> np.ndarray:
    """Render an estimate (:func:`pimodule.laptop.fx.chain.describe`) on ``(samples, channels)`` audio with
    the real-time twin chain, as the module would (no peak limit: see :func:`peak_safe`)."""

    audio = np.asarray(audio, dtype=np.float64)
    x = audio.T.copy() if audio.ndim == 2 else audio[None].copy()
    chain = ChainTwin(
        sample_rate, channels=x.shape[0], distortion_mode=description.get("distortion", {}).get("mode", "tanh")
    )
    for name in chain.stages:  # what the estimate does not name is not played (a chain starts all on)
        if name not in description:
            chain.set_active(name, False, immediate=True)
    chain.apply(description, immediate=True)
    for start in range(0, x.shape[-1], block_size):
        chain.process(x[:, start : start + block_size])
    return x.T if audio.ndim == 2 else x[0]
