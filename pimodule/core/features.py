"""Control features of audio: f0 (YIN), periodicity and A-weighted loudness, batch (streaming:
:mod:`pimodule.core.streaming_features`).

numpy/scipy only (no torch): the same code computes the training set's features on the laptop
and the live features on the module in transfer mode, so the model sees on the device exactly
the kind of f0 and loudness it was trained on.

Frame alignment (all features): frame ``i`` describes samples ``[i*hop, (i+1)*hop)``; its
analysis window is centred on sample ``i*hop + hop//2`` and zero-padded beyond the signal's
edges. ``n_frames = len(audio) // hop_size``.

Why YIN (de Cheveigné & Kawahara 2002) rather than CREPE or pYIN:

- accurate to a few cents on monophonic, harmonic instruments (the DDSP use case), thanks to the
  cumulative-mean-normalised difference and parabolic interpolation of the dip;
- no model, no weights: deterministic and identical on laptop and Pi;
- cheap: four window-sized FFTs per frame, vectorised over frames (CREPE's full model is far
  too slow for a Pi, its tiny model still costs a network run per frame). On the device,
  ``oversample=1`` and an instrument-specific ``fmin_hz`` (smaller window) cut the cost further;
- bounded latency: a frame is known as soon as about half an analysis window of look-ahead
  has arrived (``latency_samples`` of :class:`pimodule.core.streaming_features.StreamingFeatures`); pYIN's HMM (Viterbi) smoothing needs look-ahead of many frames or a whole file.

Unvoiced frames (no dip below ``threshold``, or near silence) get periodicity 0, and their f0 is
held from the previous voiced frame (DDSP needs a continuous f0). The hold is causal so batch and
streaming agree; the batch function back-fills the frames before the first voiced one with that
frame's f0, the streaming one (which cannot see the future) uses :data:`DEFAULT_F0_HZ` there. A
signal with no voiced frame gets :data:`DEFAULT_F0_HZ` throughout.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_SAMPLE_RATE = 16000
DEFAULT_HOP_SIZE = 64
DEFAULT_F0_HZ = 220.0  # f0 of frames with no voiced frame to hold from
LOUDNESS_FLOOR_DB = -100.0
SILENCE_RMS_DB = -80.0  # frames quieter than this (dBFS RMS over the YIN window) are unvoiced
_FRAMES_PER_CHUNK = 256  # batch functions work on this many frames at a time (bounded memory)


# --------------------------------------------------------------------------------------------
# Window sizes and frame extraction


def _next_pow2(n: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1.0, n))))


def default_yin_window_size(sample_rate: int, fmin_hz: float) -> int:
    """Analysis window for YIN: a power of two holding at least 2.5 periods of ``fmin_hz``."""
    return _next_pow2(2.5 * sample_rate / fmin_hz)


def default_loudness_n_fft(sample_rate: int) -> int:
    """About 64 ms (1024 samples at 16 kHz), a power of two."""
    return _next_pow2(0.064 * sample_rate)


def _check_sizes(hop_size: int, window_size: int) -> None:
    if hop_size < 1:
        raise ValueError(f"hop_size must be >= 1, got {hop_size}")
    if window_size < hop_size:
        raise ValueError(f"window size {window_size} must be >= hop_size {hop_size}")


def _frames(audio: np.ndarray, window_size: int, left: int, hop_size: int, start: int, stop: int) -> np.ndarray:
    """Windows of frames ``start..stop-1`` (copied, float64), zero-padded at the edges.

    Frame i's window starts ``left`` samples before its centre ``i*hop + hop//2``.
    """
    pad = left - hop_size // 2
    lo = start * hop_size - pad  # first sample (signal coordinates) needed
    hi = (stop - 1) * hop_size - pad + window_size
    seg = np.zeros(hi - lo, dtype=np.float64)
    a, b = max(lo, 0), min(hi, len(audio))
    if b > a:
        seg[a - lo : b - lo] = audio[a:b]
    view = np.lib.stride_tricks.sliding_window_view(seg, window_size)[::hop_size]
    return np.array(view[: stop - start])


# --------------------------------------------------------------------------------------------
# YIN on a matrix of frames


def _yin_lags(sample_rate: int, window_size: int, fmin_hz: float, fmax_hz: float) -> tuple[int, int]:
    if not 0 < fmin_hz < fmax_hz:
        raise ValueError(f"need 0 < fmin_hz < fmax_hz, got {fmin_hz}, {fmax_hz}")
    max_lag = min(math.ceil(sample_rate / fmin_hz) + 1, window_size // 2)
    min_lag = max(2, math.floor(sample_rate / fmax_hz))
    if min_lag + 2 > max_lag:
        raise ValueError(f"window_size {window_size} too short for fmin_hz={fmin_hz} at {sample_rate} Hz")
    return min_lag, max_lag


def default_oversample(sample_rate: int, fmax_hz: float) -> int:
    """Oversampling of the YIN lag axis so the shortest period spans at least ~12 samples.

    At whole-sample lags a short period (e.g. 6.4 samples for 2.5 kHz at 16 kHz) leaves a large
    residual in the difference function, the dip at the true period misses the threshold and
    YIN jumps an octave down; band-limited 2x oversampling of each window cures that.
    """
    return int(min(4, max(1, math.ceil(12.0 * fmax_hz / sample_rate))))


def _yin_setup(
    sample_rate: int, window_size: int, fmin_hz: float, fmax_hz: float, oversample: int | None
) -> tuple[int, int, int, int]:
    """(min_lag, max_lag) in oversampled units, the window's ``left`` and the oversampling."""
    os_ = oversample or default_oversample(sample_rate, fmax_hz)
    if os_ < 1:
        raise ValueError(f"oversample must be >= 1, got {oversample}")
    _, max_lag = _yin_lags(sample_rate, window_size, fmin_hz, fmax_hz)
    min_lag_up, _ = _yin_lags(sample_rate * os_, window_size * os_, fmin_hz, fmax_hz)
    return min_lag_up, max_lag * os_, _yin_left(window_size, max_lag), os_


def _upsample(spec: np.ndarray, n: int, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Band-limited upsampling of rows from their rfft ``spec`` (length ``n``): zero-padded
    spectrum. Returns (upsampled rows, their rfft)."""
    up = np.zeros((spec.shape[0], n * factor // 2 + 1), dtype=spec.dtype)
    up[:, : spec.shape[1]] = spec * factor
    if n % 2 == 0:
        up[:, spec.shape[1] - 1] *= 0.5  # split the old Nyquist bin between +/- frequencies
    up[:, 0] = up[:, 0].real
    return np.fft.irfft(up, n * factor, axis=1), up


def _yin_left(window_size: int, max_lag: int) -> int:
    """Where a YIN window starts relative to the frame centre.

    The difference function compares ``x[0:W]`` with ``x[tau:tau+W]`` (``W = window - max_lag``),
    so what it measures is centred near ``W/2 + tau/2``, not at the middle of the window: the
    window is placed so that the integration part ``x[0:W]`` is centred on the frame centre
    (at most half a period late), otherwise f0 would lag the audio by ~10 ms on vibrato.
    """
    return (window_size - max_lag) // 2


def _yin_on_frames(
    frames: np.ndarray, sample_rate: int, min_lag: int, max_lag: int, threshold: float, oversample: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw YIN per frame: (f0_hz, periodicity, voiced) — no holding of unvoiced frames.

    ``min_lag``/``max_lag`` are in units of the ``oversample``-times finer lag grid.
    """
    spec_all = np.fft.rfft(frames, axis=1)
    if oversample > 1:  # band-limited upsampling through the spectrum already at hand
        frames, spec_all = _upsample(spec_all, frames.shape[1], oversample)
        sample_rate = sample_rate * oversample
    n_frames, window_size = frames.shape
    integ = window_size - max_lag  # integration length of the difference function
    # r(tau) = sum_{j<integ} x[j] x[j+tau]: a circular correlation of the window with its head
    # never wraps for tau <= max_lag (j + tau < window_size), so one window-sized FFT suffices
    spec_head = np.fft.rfft(frames[:, :integ], window_size, axis=1)
    corr = np.fft.irfft(spec_all * np.conj(spec_head), window_size, axis=1)[:, : max_lag + 1]
    sq = np.concatenate([np.zeros((n_frames, 1)), np.cumsum(frames * frames, axis=1)], axis=1)
    lags = np.arange(max_lag + 1)
    energy_lag = sq[:, lags + integ] - sq[:, lags]  # sum of x^2 over [tau, tau+integ)
    diff = np.maximum(energy_lag[:, :1] + energy_lag - 2.0 * corr, 0.0)
    # cumulative mean normalised difference d'(tau) = d(tau) * tau / sum_{k=1..tau} d(k)
    csum = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    ok = csum > 1e-12 * (energy_lag[:, :1] + 1e-30)
    cmnd[:, 1:] = np.where(ok, diff[:, 1:] * lags[1:] / np.where(ok, csum, 1.0), 1.0)

    # first lag in [min_lag, max_lag] that is below threshold and a local minimum
    # (equivalent to YIN's "first dip below threshold, then walk down to its bottom")
    seg = cmnd[:, min_lag : max_lag + 1]
    left = cmnd[:, min_lag - 1 : max_lag]
    right = np.concatenate([cmnd[:, min_lag + 1 : max_lag + 1], np.full((n_frames, 1), np.inf)], axis=1)
    cand = (seg < threshold) & (seg <= left) & (seg < right)
    has = cand.any(axis=1)
    tau = np.where(has, cand.argmax(axis=1), seg.argmin(axis=1)) + min_lag

    rows = np.arange(n_frames)
    t_lo = np.maximum(tau - 1, 0)
    t_hi = np.minimum(tau + 1, max_lag)
    a, b, c = diff[rows, t_lo], diff[rows, tau], diff[rows, t_hi]  # parabola through raw d
    denom = a - 2.0 * b + c
    shift = np.where(denom > 1e-20, 0.5 * (a - c) / np.where(denom > 1e-20, denom, 1.0), 0.0)
    shift = np.clip(shift, -1.0, 1.0)
    shift = np.where((tau > 0) & (tau < max_lag), shift, 0.0)
    period = tau + shift
    f0_hz = sample_rate / period

    rms_db = 10.0 * np.log10(sq[:, -1] / window_size + 1e-30)
    voiced = has & (rms_db > SILENCE_RMS_DB)
    periodicity = np.where(voiced, np.clip(1.0 - cmnd[rows, tau], 0.0, 1.0), 0.0)
    return f0_hz, periodicity, voiced


def _hold_unvoiced(f0_hz: np.ndarray, voiced: np.ndarray, last_f0_hz: float | None) -> np.ndarray:
    """Causal hold: unvoiced frames take the previous voiced frame's f0 (or ``last_f0_hz``)."""
    out = f0_hz.copy()
    idx = np.where(voiced, np.arange(len(f0_hz)), -1)
    np.maximum.accumulate(idx, out=idx)
    held = idx >= 0
    out[held] = f0_hz[idx[held]]
    out[~held] = DEFAULT_F0_HZ if last_f0_hz is None else last_f0_hz
    return out


def yin_f0(
    audio: np.ndarray,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    *,
    hop_size: int = DEFAULT_HOP_SIZE,
    fmin_hz: float = 40.0,
    fmax_hz: float = 2000.0,
    window_size: int | None = None,
    threshold: float = 0.15,
    oversample: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """f0 (Hz) and periodicity (0..1) per frame of a mono signal, by YIN.

    ``window_size`` is the whole analysis window (lags up to ``sample_rate / fmin_hz`` plus the
    integration length); default :func:`default_yin_window_size`. ``oversample`` refines the
    lag grid (default :func:`default_oversample`: 2 at 16 kHz). Returns float32 arrays of
    ``len(audio) // hop_size`` frames.
    """
    audio = _as_mono(audio)
    window_size = window_size or default_yin_window_size(sample_rate, fmin_hz)
    _check_sizes(hop_size, window_size)
    min_lag, max_lag, left, oversample = _yin_setup(sample_rate, window_size, fmin_hz, fmax_hz, oversample)
    n_frames = len(audio) // hop_size
    f0 = np.empty(n_frames)
    per = np.empty(n_frames)
    voiced = np.zeros(n_frames, dtype=bool)
    for start in range(0, n_frames, _FRAMES_PER_CHUNK):
        stop = min(start + _FRAMES_PER_CHUNK, n_frames)
        fr = _frames(audio, window_size, left, hop_size, start, stop)
        f0[start:stop], per[start:stop], voiced[start:stop] = _yin_on_frames(
            fr, sample_rate, min_lag, max_lag, threshold, oversample
        )
    first = f0[voiced.argmax()] if voiced.any() else None
    return _hold_unvoiced(f0, voiced, first).astype(np.float32), per.astype(np.float32)


# --------------------------------------------------------------------------------------------
# A-weighted loudness


def a_weighting_db(freq_hz: np.ndarray) -> np.ndarray:
    """IEC 61672 A-weighting in dB (0 dB at 1 kHz); -inf at 0 Hz is floored to -200 dB."""
    f2 = np.asarray(freq_hz, dtype=np.float64) ** 2
    num = (12194.0**2) * f2 * f2
    den = (f2 + 20.6**2) * np.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2)
    with np.errstate(divide="ignore"):
        db = 20.0 * np.log10(np.maximum(num / den, 1e-300)) + 2.0
    return np.maximum(db, -200.0)


def _loudness_tables(sample_rate: int, n_fft: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(window, A-weight as power per rfft bin, reference dB of a full-scale 1 kHz sine)."""
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    weight = 10.0 ** (a_weighting_db(freqs) / 10.0)
    # A full-scale sine puts (by Parseval) about n_fft * sum(w^2) / 4 of power into the one-sided
    # spectrum, all of it near 1 kHz where the A weight is 0 dB; averaged over the bins:
    ref_power = n_fft * float(np.sum(window**2)) / 4.0 / len(freqs)
    return window, weight, 10.0 * math.log10(ref_power)


def _loudness_on_frames(frames: np.ndarray, tables: tuple[np.ndarray, np.ndarray, float]) -> np.ndarray:
    window, weight, ref_db = tables
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mean = (power * weight).mean(axis=1)
    db = 10.0 * np.log10(mean + 1e-30) - ref_db
    return np.maximum(db, LOUDNESS_FLOOR_DB)


def a_weighted_loudness_db(
    audio: np.ndarray,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    *,
    hop_size: int = DEFAULT_HOP_SIZE,
    n_fft: int | None = None,
) -> np.ndarray:
    """A-weighted loudness per frame in dB (full-scale 1 kHz sine ≈ 0 dB, floor -100 dB)."""
    audio = _as_mono(audio)
    n_fft = n_fft or default_loudness_n_fft(sample_rate)
    _check_sizes(hop_size, n_fft)
    tables = _loudness_tables(sample_rate, n_fft)
    n_frames = len(audio) // hop_size
    out = np.empty(n_frames)
    for start in range(0, n_frames, _FRAMES_PER_CHUNK):
        stop = min(start + _FRAMES_PER_CHUNK, n_frames)
        out[start:stop] = _loudness_on_frames(_frames(audio, n_fft, n_fft // 2, hop_size, start, stop), tables)
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Comparing pitch tracks


def cents(f_hz: np.ndarray, ref_hz: np.ndarray | float) -> np.ndarray:
    """Pitch difference in cents (1200 * log2(f / ref)); non-positive inputs give NaN."""
    f = np.asarray(f_hz, dtype=np.float64)
    r = np.asarray(ref_hz, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1200.0 * np.log2(f / r)
    return np.where((f > 0) & (r > 0), out, np.nan)


def median_abs_cents(
    f0_hz: np.ndarray, ref_f0_hz: np.ndarray, ref_periodicity: np.ndarray, *, min_periodicity: float = 0.5
) -> float:
    """Median |cents| between two f0 tracks over the reference's voiced frames (NaN if none)."""
    n = min(len(f0_hz), len(ref_f0_hz), len(ref_periodicity))
    voiced = np.asarray(ref_periodicity[:n]) >= min_periodicity
    err = np.abs(cents(np.asarray(f0_hz[:n])[voiced], np.asarray(ref_f0_hz[:n])[voiced]))
    err = err[np.isfinite(err)]
    return float(np.median(err)) if len(err) else float("nan")


def _as_mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"expected a mono 1-D signal, got shape {audio.shape}")
    return audio.astype(np.float64, copy=False)


def tracker_settings(info: dict) -> dict:
    """The f0/loudness tracker arguments a dataset's features were made with (``dataset.json``
    as a dict): keyword arguments for :func:`yin_f0` (``fmin_hz``, ``fmax_hz``, ``window_size``,
    ``oversample``) plus ``n_fft`` for the loudness."""
    feats = info.get("features", {})
    keys = {
        "fmin_hz": "fmin_hz",
        "fmax_hz": "fmax_hz",
        "yin_window_size": "window_size",
        "oversample": "oversample",
        "loudness_n_fft": "n_fft",
    }
    return {arg: feats[key] for key, arg in keys.items() if feats.get(key) is not None}
