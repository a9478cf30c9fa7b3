"""Streaming f0, periodicity and loudness: block by block, frame for frame equal to the batch
functions of :mod:`pimodule.core.features` (numpy only; transfer mode on the module)."""

from __future__ import annotations

import numpy as np

from pimodule.core.features import (
    DEFAULT_HOP_SIZE,
    DEFAULT_SAMPLE_RATE,
    _check_sizes,
    _hold_unvoiced,
    _loudness_on_frames,
    _loudness_tables,
    _yin_on_frames,
    _yin_setup,
    default_loudness_n_fft,
    default_yin_window_size,
    tracker_settings,
)


class StreamingFeatures:
    """Block-by-block f0, periodicity and loudness, frame-for-frame equal to the batch functions.

    ``push(block)`` accepts any block size and returns the frames completed by it as
    ``(f0_hz, periodicity, loudness_db)`` float32 arrays (possibly empty). Frame ``i`` is
    returned once input reaches sample ``(i+1)*hop + latency_samples``: ``latency_samples`` is the
    look-ahead the analysis windows need past the frame's own samples (681 samples, 43 ms, at
    the defaults: 16 kHz, fmin 40 Hz; a higher ``fmin_hz`` shortens it).
    ``flush()`` pads zeros and returns the remaining frames of the input so far, as the batch
    functions would. Storage is a preallocated sliding buffer of one window plus ``max_chunk``.

    ``f0_every`` / ``loudness_every`` (frames; the second divides the first) analyse only every
    such frame (the knots) and draw straight lines between knots for the frames in between (f0 in
    log frequency, periodicity and loudness linearly); at the knots the values are the batch
    functions' own. A frame then waits for the next f0 knot: ``latency_samples`` grows by
    ``f0_every - 1`` hops. The module's transfer mode uses this to fit a small CPU
    (:data:`pimodule.device.analysis.DEVICE_EVERY`); 1 and 1 (the default) is every frame.
    """

    def __init__(
        self,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        hop_size: int = DEFAULT_HOP_SIZE,
        *,
        fmin_hz: float = 40.0,
        fmax_hz: float = 2000.0,
        window_size: int | None = None,
        threshold: float = 0.15,
        n_fft: int | None = None,
        oversample: int | None = None,
        max_chunk: int = 4096,
        f0_every: int = 1,
        loudness_every: int = 1,
    ) -> None:
        if loudness_every < 1 or f0_every < 1 or f0_every % loudness_every:
            raise ValueError(f"need loudness_every >= 1 dividing f0_every, got {loudness_every}, {f0_every}")
        self.f0_every, self.loudness_every = int(f0_every), int(loudness_every)
        self.sample_rate = sample_rate
        self.hop_size = hop_size
        self.threshold = threshold
        self.yin_window_size = window_size or default_yin_window_size(sample_rate, fmin_hz)
        self.n_fft = n_fft or default_loudness_n_fft(sample_rate)
        _check_sizes(hop_size, self.yin_window_size)
        _check_sizes(hop_size, self.n_fft)
        min_lag, max_lag, yin_left, self._oversample = _yin_setup(
            sample_rate, self.yin_window_size, fmin_hz, fmax_hz, oversample
        )
        self._lags = (min_lag, max_lag)
        self._tables = _loudness_tables(sample_rate, self.n_fft)
        # one common window per frame covering both analyses; each takes its part of it
        left = max(yin_left, self.n_fft // 2)
        right = max(self.yin_window_size - yin_left, self.n_fft - self.n_fft // 2)
        self._win = left + right
        self._yin_off = left - yin_left
        self._loud_off = left - self.n_fft // 2
        self._pad = left - hop_size // 2
        self.latency_samples = self._win - self._pad - hop_size + (self.f0_every - 1) * hop_size
        self._chunk = max(int(max_chunk), hop_size)
        # the windows of every frame from the last knot's next one to the next knot
        self._buf = np.zeros(self._win + self._chunk + (self.f0_every - 1) * hop_size, dtype=np.float64)
        self._empty = _concat([])  # returned by pushes that complete no frame
        self.reset()

    @classmethod
    def from_dataset_info(cls, info: dict, **overrides) -> StreamingFeatures:
        """The tracker a dataset's features were computed with (``dataset.json`` as a dict)."""
        kwargs = {
            "sample_rate": int(info.get("sample_rate", DEFAULT_SAMPLE_RATE)),
            "hop_size": int(info.get("hop_size", DEFAULT_HOP_SIZE)),
            **tracker_settings(info),
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    def reset(self) -> None:
        """Forget all input (as if newly built)."""
        self._buf[:] = 0.0
        self._fill = self._pad  # samples in the buffer; it starts with the left zero padding
        self._n_input = 0
        self._n_done = 0  # frames returned so far
        self._buf_frame0 = 0  # index of the frame whose window starts at self._buf[0]
        self._last_f0_hz: float | None = None
        self._knot: tuple[int, float, float, float] | None = None  # (frame, f0, periodicity, loudness)

    def _next_knot(self) -> int:
        """The first f0 knot not yet returned: the frame that the next frames wait for."""
        return -(-self._n_done // self.f0_every) * self.f0_every

    def _emit(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Compute every frame whose window is in the buffer, up to the last f0 knot."""
        hop, every = self.hop_size, self.f0_every
        n_ready = (self._fill - self._win) // hop + 1 if self._fill >= self._win else 0
        stop = self._buf_frame0 + n_ready
        stop = (stop - 1) // every * every + 1 if stop > 0 else 0  # through the last knot
        out = []
        if stop > self._n_done:
            first = self._n_done - self._buf_frame0
            view = np.lib.stride_tricks.sliding_window_view(self._buf[: self._fill], self._win)[::hop]
            frames = view[first : stop - self._buf_frame0]
            idx = np.arange(self._n_done, stop)
            at_f0 = np.flatnonzero(idx % every == 0)
            at_loud = np.flatnonzero(idx % self.loudness_every == 0)
            f0, per, voiced = _yin_on_frames(
                frames[at_f0, self._yin_off : self._yin_off + self.yin_window_size],
                self.sample_rate,
                *self._lags,
                self.threshold,
                self._oversample,
            )
            f0 = _hold_unvoiced(f0, voiced, self._last_f0_hz)
            if voiced.any():
                self._last_f0_hz = float(f0[len(voiced) - 1 - voiced[::-1].argmax()])
            loud = _loudness_on_frames(frames[at_loud, self._loud_off : self._loud_off + self.n_fft], self._tables)
            if len(at_f0) < len(idx) or len(at_loud) < len(idx):
                k = self._knot
                f0 = between(idx, at_f0, f0, None if k is None else (k[0], k[1]), log=True)
                per = between(idx, at_f0, per, None if k is None else (k[0], k[2]))
                loud = between(idx, at_loud, loud, None if k is None else (k[0], k[3]))
            self._knot = (int(idx[-1]), float(f0[-1]), float(per[-1]), float(loud[-1]))
            out.append((f0, per, loud))
            self._n_done = stop
        # slide: keep from the window start of the next frame to compute
        drop = (self._n_done - self._buf_frame0) * hop
        if drop > 0:
            keep = self._fill - drop
            self._buf[:keep] = self._buf[drop : self._fill]
            self._fill = keep
            self._buf_frame0 = self._n_done
        return out

    def push(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feed samples; return the frames they completed."""
        block = np.asarray(block, dtype=np.float64).reshape(-1)
        parts = []
        pos = 0
        while pos < len(block):
            n = min(len(block) - pos, len(self._buf) - self._fill)
            self._buf[self._fill : self._fill + n] = block[pos : pos + n]
            self._fill += n
            self._n_input += n
            pos += n
            # the next knot's window ends at this buffer position
            if self._fill >= (self._next_knot() - self._buf_frame0) * self.hop_size + self._win:
                parts += self._emit()
        return _concat(parts) if parts else self._empty

    def flush(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Zero-pad and return the frames still owed for the input so far (then reset)."""
        total = self._n_input // self.hop_size
        owed = total - self._n_done
        parts = []
        while self._n_done < total:
            n = min(len(self._buf) - self._fill, self._win)
            self._buf[self._fill : self._fill + n] = 0.0
            self._fill += n
            parts += self._emit()
        self.reset()
        return tuple(p[: max(owed, 0)] for p in _concat(parts))  # type: ignore[return-value]


def between(
    frames: np.ndarray, at: np.ndarray, values: np.ndarray, knot: tuple[int, float] | None, *, log: bool = False
) -> np.ndarray:
    """Values for every frame number in ``frames`` from those at ``frames[at]`` (the knots) and
    the previous knot ``(frame, value)``: the knots' own values, straight lines in between
    (``log``: in log2, for f0). The first frame is a knot or comes after ``knot``."""
    xp = frames[at].astype(np.float64)
    fp = values.astype(np.float64)
    if knot is not None:
        xp, fp = np.r_[float(knot[0]), xp], np.r_[knot[1], fp]
    g = np.log2(fp) if log else fp
    j = np.searchsorted(xp, frames, side="right") - 1  # the knot at or before each frame
    j[j > len(xp) - 2] = max(len(xp) - 2, 0)
    j[j < 0] = 0
    if len(xp) > 1:
        w = (frames - xp[j]) / (xp[j + 1] - xp[j])
        y = g[j] + (g[j + 1] - g[j]) * w
    else:
        y = g[j]
    out = np.exp2(y) if log else y
    out[at] = values
    return out


def _concat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not parts:
        empty = np.zeros(0, dtype=np.float32)
        return empty, empty.copy(), empty.copy()
    return tuple(np.concatenate([p[k] for p in parts]).astype(np.float32) for k in range(3))  # type: ignore[return-value]
