"""Running a trained estimator on recordings of any length and sample rate.

The signal is resampled to the model's rate, cut into the model's fixed analysis windows (short
inputs are zero-padded), and the windows' probabilities and [0, 1] parameters are averaged over the
windows that are not silent. Works with a training run folder (torch) or an exported ``.onnx``
file (onnxruntime).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from pimodule.device.fx.estimator import OnnxEstimator
from pimodule.device.fx.twin_chain import ChainTwin
from pimodule.laptop.fx.chain import Chain
from pimodule.laptop.fx.model import WINDOW_S, analysis_samples
from pimodule.laptop.fx.refine import RefineConfig, refine
from pimodule.laptop.fx.run import load_run

log = logging.getLogger(__name__)
REFINE_S = 4.0  # seconds of wet and dry audio an estimate is refined on
SILENCE_RMS = 10 ** (-60 / 20)


class LoadedEstimator:
    def __init__(self, path: Path):
        path = Path(path)
        if path.suffix == ".onnx":
            self.backend = OnnxEstimator(path)
            self.sample_rate = self.backend.sample_rate
            self.window = self.backend.window
            self.conditioning = self.backend.conditioning
        else:
            self.model, self.config, _ = load_run(path)
            self.backend = None
            self.sample_rate = self.config.model.sample_rate
            self.window = analysis_samples(self.config.model, WINDOW_S)
            self.conditioning = self.config.model.conditioning

    def _windows(self, audio: np.ndarray) -> np.ndarray:
        n = self.window
        count = max(1, len(audio) // n)
        padded = np.zeros(count * n, dtype=np.float32)
        padded[: min(len(audio), count * n)] = audio[: count * n]
        return padded.reshape(count, n)

    def estimate(
        self, wet: np.ndarray, sample_rate: int, other: np.ndarray | None = None, other_rate: int | None = None
    ) -> Chain:
        """Mono float arrays in; the averaged chain (probabilities, unit params) out."""
        if self.conditioning != "blind" and other is None:
            raise ValueError(f"this estimator is {self.conditioning}-conditioned: give --dry or --reference")
        if other is not None and self.conditioning == "blind":
            log.warning("a blind estimator: the second signal is ignored")
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


def refine_estimate(
    estimator: LoadedEstimator,
    chain: Chain,
    wet: np.ndarray,
    sample_rate: int,
    dry: np.ndarray,
    dry_rate: int,
    config=None,
) -> Chain:
    """``chain`` (the estimate of ``wet`` from ``dry``) refined by analysis by synthesis
    (:mod:`pimodule.laptop.fx.refine`) on up to :data:`REFINE_S` seconds from the first loud window."""

    rate = estimator.sample_rate
    y, x = to_rate(wet, sample_rate, rate), to_rate(dry, dry_rate, rate)
    n = min(len(x), len(y))
    if n < rate // 10:
        raise ValueError("--refine needs at least 0.1 s of aligned wet and dry audio")
    x, y = x[:n], y[:n]
    w = min(estimator.window, n)
    loud = np.flatnonzero(np.sqrt(np.mean(y[: n // w * w].reshape(-1, w) ** 2, 1)) > SILENCE_RMS)
    start = int(loud[0]) * w if loud.size else 0
    seg = slice(start, start + max(w, int(REFINE_S * rate)))
    refined, _ = refine(
        torch.from_numpy(x[seg].copy())[None],
        torch.from_numpy(y[seg].copy())[None],
        rate,
        chain,
        config or RefineConfig(),
    )
    return refined


def to_rate(audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(1)
    return audio if sr == target else soxr.resample(audio, sr, target).astype(np.float32)


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as err:
        raise ValueError(f"{path}: cannot read audio ({err})") from err
    if audio.shape[0] == 0:
        raise ValueError(f"{path}: empty audio file")
    return audio.mean(1), sr


def apply_estimate(description: dict, audio: np.ndarray, sample_rate: int, block_size: int = 4096) -> np.ndarray:
    """Render an estimate (:func:`pimodule.laptop.fx.chain.describe`) on ``(samples, channels)`` audio with
    the real-time twin chain, as the module would."""

    audio = np.asarray(audio, dtype=np.float64)
    x = audio.T.copy() if audio.ndim == 2 else audio[None].copy()
    chain = ChainTwin(
        sample_rate, channels=x.shape[0], distortion_mode=description.get("distortion", {}).get("mode", "tanh")
    )
    chain.apply(description, immediate=True)
    for start in range(0, x.shape[-1], block_size):
        chain.process(x[:, start : start + block_size])
    return x.T if audio.ndim == 2 else x[0]
