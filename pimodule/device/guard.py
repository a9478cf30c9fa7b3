"""Output safety and smooth transitions, in place on preallocated float32 buffers.

- :class:`OutputGuard`: NaN/inf → silence (counted), gain and mute with a smoothed ramp (no
  clicks), a peak limiter with instant attack and smooth release, and a final hard clip, so
  whatever a model does the output is finite and within ``[-ceiling, ceiling]`` ⊂ [-1, 1].
- :class:`Crossfade`: a raised-cosine crossfade from one source to another over a fixed number
  of samples, spread over as many blocks as it takes (used for model swaps).

Nothing here allocates arrays after construction; blocks may be any size up to ``max_block``.
"""

from __future__ import annotations

import math

import numpy as np

from pimodule.core.controls import GAIN_SPEC

GAIN_RANGE_DB = (GAIN_SPEC.min, GAIN_SPEC.max)  # the output gain's range lives in GAIN_SPEC
DEFAULT_CEILING = 0.98  # limiter ceiling (linear, just under full scale)
DEFAULT_GAIN_TIME_MS = 20.0  # gain/mute smoothing time constant
DEFAULT_RELEASE_MS = 150.0  # limiter release time constant
# a ufunc reduction called directly: a few µs cheaper per block than np.max(...)
_max = np.maximum.reduce


def db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


class OutputGuard:
    """In-place NaN guard + smoothed gain/mute + peak limiter + hard clip for one mono stream."""

    def __init__(
        self,
        sample_rate_hz: int,
        max_block: int,
        *,
        ceiling: float = DEFAULT_CEILING,
        gain_time_ms: float = DEFAULT_GAIN_TIME_MS,
        release_ms: float = DEFAULT_RELEASE_MS,
    ):
        if not 0.0 < ceiling <= 1.0:
            raise ValueError(f"ceiling must be in (0, 1], got {ceiling}")
        self.sample_rate_hz = int(sample_rate_hz)
        self.max_block = int(max_block)
        self.ceiling = float(ceiling)
        self._gain_tau_samples = gain_time_ms * 1e-3 * sample_rate_hz
        self._release_tau_samples = release_ms * 1e-3 * sample_rate_hz
        self._ramp = np.arange(1, self.max_block + 1, dtype=np.float32)  # 1..n, scaled per block
        self._env = np.zeros(self.max_block, dtype=np.float32)
        self._finite = np.zeros(self.max_block, dtype=bool)
        self._mag = np.zeros(self.max_block, dtype=np.float32)  # |x|, scratch
        # written by control threads (plain float stores are atomic under the GIL)
        self.target_gain = 1.0
        self.muted = False
        # read by the status thread
        self.n_nonfinite_blocks = 0
        self.n_limited_blocks = 0
        self._gain = 1.0  # current smoothed gain
        self._lim = 1.0  # current limiter gain

    def set_gain_db(self, gain_db: float) -> float:
        """Set the output gain (clamped to :data:`GAIN_RANGE_DB`); returns the value used."""
        if not math.isfinite(gain_db):
            raise ValueError(f"gain {gain_db} dB is not a finite number")
        gain_db = min(max(float(gain_db), GAIN_RANGE_DB[0]), GAIN_RANGE_DB[1])
        self.target_gain = db_to_gain(gain_db)
        return gain_db

    def set_mute(self, muted: bool) -> None:
        self.muted = bool(muted)

    def reset(self) -> None:
        self._gain = 0.0 if self.muted else self.target_gain
        self._lim = 1.0

    def process(self, x: np.ndarray) -> None:
        """Make ``x`` (1-D float32, len ≤ max_block) safe, in place."""
        with np.errstate(all="ignore"):  # no warnings machinery (I/O) on the audio thread
            self.process_unchecked(x)

    def process_unchecked(self, x: np.ndarray) -> None:
        """:meth:`process` for callers already inside ``np.errstate(all="ignore")`` (the engine).

        The common case (gain settled, nothing above the ceiling, all finite) costs two numpy
        calls: ``|x|`` into a scratch buffer and its maximum, which is NaN if any sample is NaN
        and inf if any is infinite, so it is also the finiteness check."""
        n = x.shape[0]
        if n == 0:
            return
        # 1. gain/mute, ramped linearly across the block towards a one-pole-smoothed target
        target = 0.0 if self.muted else self.target_gain
        g0 = self._gain
        if g0 != target:
            g1 = target + (g0 - target) * math.exp(-n / self._gain_tau_samples)
            if abs(g1 - target) < 1e-5:
                g1 = target
            env = self._env[:n]
            np.multiply(self._ramp[:n], (g1 - g0) / n, out=env)
            env += g0
            x *= env
            self._gain = g1
        elif g0 != 1.0:
            x *= g0
        # 2. NaN/inf (from the model, or finite values the gain overflowed): zero those samples
        mag = self._mag[:n]
        np.abs(x, out=mag)
        peak = float(_max(mag))
        if not math.isfinite(peak):
            finite = self._finite[:n]
            np.isfinite(x, out=finite)
            np.logical_not(finite, out=finite)
            np.copyto(x, 0.0, where=finite)
            np.abs(x, out=mag)
            peak = float(_max(mag))
            self.n_nonfinite_blocks += 1
        # 3. peak limiter: instant attack to ceiling/peak, exponential release towards unity
        l0 = self._lim
        if peak <= self.ceiling and l0 == 1.0:
            return  # nothing to limit, nothing above the ceiling: done
        needed = self.ceiling / peak if peak > self.ceiling else 1.0
        released = 1.0 + (l0 - 1.0) * math.exp(-n / self._release_tau_samples)
        l1 = min(needed, released)
        if l1 < 1.0 or l0 < 1.0:
            # ramp from the previous gain to the new one (never above what the peak needs)
            env = self._env[:n]
            np.multiply(self._ramp[:n], (l1 - l0) / n, out=env)
            env += l0
            x *= env
            self.n_limited_blocks += needed < 1.0
        self._lim = l1 if l1 < 1.0 - 1e-6 else 1.0
        # 4. safety net: the ramp's start may still exceed the ceiling for one block
        np.clip(x, -self.ceiling, self.ceiling, out=x)


class Crossfade:
    """Raised-cosine crossfade over ``n_samples``: ``mix(old, new)`` writes into ``new`` in place."""

    def __init__(self, n_samples: int):
        if n_samples <= 0:
            raise ValueError(f"a crossfade needs at least one sample, got {n_samples}")
        self.n_samples = int(n_samples)
        t = (np.arange(self.n_samples, dtype=np.float64) + 1.0) / self.n_samples
        self._fade_in = (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)
        self._tmp = np.zeros(self.n_samples, dtype=np.float32)
        self.position = self.n_samples  # done

    @property
    def active(self) -> bool:
        return self.position < self.n_samples

    def start(self) -> None:
        self.position = 0

    def mix(self, old: np.ndarray, new: np.ndarray) -> None:
        """``new[i] = old[i] + (new[i] - old[i]) * fade_in[pos + i]``; past the end ``new`` stays."""
        n = min(new.shape[0], self.n_samples - self.position)
        if n <= 0:
            return
        fade = self._fade_in[self.position : self.position + n]
        tmp = self._tmp[:n]
        np.subtract(new[:n], old[:n], out=tmp)
        tmp *= fade
        np.add(old[:n], tmp, out=new[:n])
        self.position += n


class Fader:
    """A linear fade between silence (0) and full level (1), in place; for click-free mode switches.

    Set :attr:`target` to 0.0 or 1.0; ``process`` moves the level towards it by ``1/n_samples``
    per sample. ``level`` is exactly 0.0 once faded out.
    """

    def __init__(self, n_samples: int, max_block: int):
        if n_samples <= 0:
            raise ValueError(f"a fade needs at least one sample, got {n_samples}")
        self.step = 1.0 / n_samples
        self._ramp = np.arange(1, max_block + 1, dtype=np.float32)
        self._tmp = np.zeros(max_block, dtype=np.float32)
        self.level = 1.0
        self.target = 1.0

    @property
    def settled(self) -> bool:
        return self.level == self.target

    def process(self, x: np.ndarray) -> None:
        n = x.shape[0]
        if self.level == self.target:
            if self.level == 0.0:
                x.fill(0.0)
            return
        direction = 1.0 if self.target > self.level else -1.0
        tmp = self._tmp[:n]
        np.multiply(self._ramp[:n], direction * self.step, out=tmp)
        tmp += self.level
        np.clip(tmp, 0.0, 1.0, out=tmp)
        x *= tmp
        end = self.level + direction * self.step * n
        self.level = min(max(end, 0.0), 1.0)
