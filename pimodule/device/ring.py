"""Preallocated FIFOs for the audio thread: samples (:class:`SampleRing`) and control frames
(:class:`FrameQueue`). Single producer and single consumer on the same thread; no allocation
of arrays after construction."""

from __future__ import annotations

import numpy as np


class SampleRing:
    """A float32 ring buffer of fixed capacity."""

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self._buf = np.zeros(capacity, dtype=np.float32)
        self.capacity = capacity
        self._read = 0
        self.available = 0

    def clear(self) -> None:
        self._read = 0
        self.available = 0

    def write(self, x: np.ndarray) -> None:
        n = x.shape[0]
        if n > self.capacity - self.available:
            raise OverflowError(f"ring full: {self.available} + {n} > {self.capacity}")
        start = (self._read + self.available) % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start : start + first] = x[:first]
        if first < n:
            self._buf[: n - first] = x[first:]
        self.available += n

    def read_into(self, out: np.ndarray) -> None:
        n = out.shape[0]
        if n > self.available:
            raise ValueError(f"ring has {self.available} samples, {n} asked for")
        first = min(n, self.capacity - self._read)
        out[:first] = self._buf[self._read : self._read + first]
        if first < n:
            out[first:] = self._buf[: n - first]
        self._read = (self._read + n) % self.capacity
        self.available -= n


class FrameQueue:
    """A FIFO of (f0_hz, loudness_db) frames; popping an empty queue repeats the last frame."""

    def __init__(self, capacity: int):
        self._f0 = np.zeros(capacity, dtype=np.float64)
        self._loud = np.zeros(capacity, dtype=np.float64)
        self.capacity = capacity
        self._read = 0
        self.available = 0
        self.n_underruns = 0
        self.n_overruns = 0
        self.last = (0.0, -100.0)

    def clear(self, fill: int = 0, f0_hz: float = 0.0, loudness_db: float = -100.0) -> None:
        """Empty the queue, then queue ``fill`` copies of one frame (a fixed look-ahead delay)."""
        self._read = 0
        self.available = 0
        self.last = (f0_hz, loudness_db)
        for _ in range(fill):
            self.push(f0_hz, loudness_db)

    def push_many(self, f0_hz: np.ndarray, loudness_db: np.ndarray) -> None:
        for i in range(f0_hz.shape[0]):
            self.push(float(f0_hz[i]), float(loudness_db[i]))

    def push(self, f0_hz: float, loudness_db: float) -> None:
        if self.available == self.capacity:  # drop the oldest: stay current
            self._read = (self._read + 1) % self.capacity
            self.available -= 1
            self.n_overruns += 1
        i = (self._read + self.available) % self.capacity
        self._f0[i] = f0_hz
        self._loud[i] = loudness_db
        self.available += 1

    def pop(self) -> tuple[float, float]:
        if self.available == 0:
            self.n_underruns += 1
            return self.last
        i = self._read
        self._read = (i + 1) % self.capacity
        self.available -= 1
        self.last = (float(self._f0[i]), float(self._loud[i]))
        return self.last
