"""Mel filters and the level-matched log-mel distance in numpy: the quantity chain selection is
labelled by (:mod:`pimodule.laptop.fx.batch`), computed as :func:`pimodule.laptop.fx.losses.log_mel_db` does
(Hann window, hop n_fft / 4, centred frames with reflection padding, power, floor -80 dB), for
the module's check of an estimate (:mod:`pimodule.device.fx.check`), which never imports torch."""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 30.0) -> np.ndarray:
    """Triangular filters on the HTK mel scale, ``(n_mels, n_fft // 2 + 1)``, area-normalised."""

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(sample_rate / 2), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return (fb / np.maximum(fb.sum(1, keepdims=True), 1e-9)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _tables(sample_rate: int, n_fft: int, n_mels: int):
    """Hann window and the filterbank as its nonzero entries grouped by band: (window, bins,
    weights, the start of each band's entries), for a sum without BLAS (whose threads would
    compete with the audio callback for the cores)."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    fb = mel_filterbank(sample_rate, n_fft, n_mels).astype(np.float64)
    band, bins = np.nonzero(fb)
    starts = np.searchsorted(band, np.arange(n_mels))
    if np.any(np.diff(np.append(starts, band.size)) == 0):
        raise ValueError(f"{n_mels} mel bands are too many for n_fft {n_fft} at {sample_rate} Hz")
    return window, bins, fb[band, bins], starts


def unit_rms(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(np.square(x), -1, keepdims=True)) + 1e-9)


def log_mel_db(x: np.ndarray, sample_rate: int, n_fft: int = 1024, n_mels: int = 64) -> np.ndarray:
    """``(..., samples)`` -> ``(..., frames, n_mels)`` log-mel power in dB (floor -80 dB)."""
    window, bins, weights, starts = _tables(int(sample_rate), n_fft, n_mels)
    pad = n_fft // 2
    x = np.pad(np.asarray(x, np.float64), [(0, 0)] * (np.ndim(x) - 1) + [(pad, pad)], mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[..., :: n_fft // 4, :]
    spec = scipy.fft.rfft(frames * window, axis=-1)
    power = spec.real**2 + spec.imag**2 + 1e-14  # = max(|X| (+ eps), 1e-7) squared, as in torch
    mel = np.add.reduceat(power[..., bins] * weights, starts, axis=-1)
    return 10 * np.log10(mel + 1e-8)


def mel_distance_db(a: np.ndarray, b: np.ndarray, sample_rate: int) -> np.ndarray:
    """Level-matched log-mel distance (mean abs dB) of ``a`` and ``b`` ``(..., samples)``."""
    return np.abs(log_mel_db(unit_rms(a), sample_rate) - log_mel_db(unit_rms(b), sample_rate)).mean((-2, -1))
