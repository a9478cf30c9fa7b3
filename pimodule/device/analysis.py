"""Transfer mode's input analysis (streaming f0 + loudness), in the callback or beside it.

:class:`InlineAnalysis` runs :class:`pimodule.core.streaming_features.StreamingFeatures` inside the callback:
deterministic (offline renders, tests, ``bench``), but numpy's FFTs allocate temporaries there.
:class:`ThreadedAnalysis` is what the daemon uses: the callback only copies the (model-rate) input
into a preallocated single-producer/single-consumer ring and pops ready frames from another; an
analysis thread does the FFTs. Each index of a ring is advanced by one side only, after the data is
in place, so no lock is needed (CPython's GIL makes each store atomic). When the thread falls
behind, the voice holds the last frame (counted as an underrun) instead of waiting.
"""

from __future__ import annotations

import numpy as np

from pimodule.core.streaming_features import StreamingFeatures
from pimodule.device.io.worker import BackgroundThread

SILENCE_DB = -100.0
# Transfer mode on the module analyses f0 every 4th frame (16 ms at 16 kHz, hop 64) and loudness
# every 2nd, with straight lines between (StreamingFeatures' f0_every / loudness_every): a third
# of the instructions of analysing every frame, for 3 more frames (12 ms) of look-ahead. Against
# every-frame analysis on 90 % of frames: f0 within 0.5 cents on a flute recording (9.5 over ten
# real recordings, speech and chords included), loudness within 0.25 dB (`make transfer-eval`).
DEVICE_EVERY = (4, 2)


def device_features(sample_rate: int, hop_size: int) -> StreamingFeatures:
    """The tracker transfer mode uses on the module (both engines)."""
    return StreamingFeatures(sample_rate, hop_size, f0_every=DEVICE_EVERY[0], loudness_every=DEVICE_EVERY[1])


class InlineAnalysis:
    """Analysis in the callback, frames delayed by a fixed look-ahead (a prefilled queue)."""

    def __init__(self, features, frames, lookahead_frames: int):
        self.features, self.frames, self.lookahead_frames = features, frames, lookahead_frames

    def reset(self) -> None:
        self.features.reset()
        self.frames.clear(self.lookahead_frames, 0.0, SILENCE_DB)

    def feed(self, x: np.ndarray) -> None:
        f0, _periodicity, loudness = self.features.push(x)
        self.frames.push_many(f0, loudness)

    def pop(self) -> tuple[float, float]:
        return self.frames.pop()

    @property
    def n_underruns(self) -> int:
        return self.frames.n_underruns


class ThreadedAnalysis(BackgroundThread):
    """Analysis in its own thread; the callback side is ``reset``, ``feed`` and ``pop``."""

    def __init__(
        self,
        features,
        *,
        capacity_samples: int,
        capacity_frames: int = 512,
        prime_frames: int = 2,
        chunk: int = 4096,
        poll_s: float = 0.001,
    ):
        super().__init__("pimodule-analysis")
        self.features = features
        self.poll_s = poll_s
        self.prime_frames = prime_frames
        self._in = np.zeros(capacity_samples, np.float32)
        self._in_written = 0  # callback only
        self._in_read = 0  # analysis thread only
        self._f0 = np.zeros(capacity_frames, np.float64)
        self._loudness = np.zeros(capacity_frames, np.float64)
        self._out_written = 0  # analysis thread only
        self._out_read = 0  # callback only
        self._chunk = np.zeros(chunk, np.float32)
        self._epoch = 0  # callback: bumped by reset
        self._reset_at = 0  # callback: input count at the last reset
        self._seen_epoch = 0  # analysis thread
        self._primed = False
        self.last = (0.0, SILENCE_DB)
        self.n_underruns = 0
        self.n_dropped_samples = 0
        self.n_dropped_frames = 0

    # -- callback side (no allocation, no waiting) ------------------------------------------------
    def reset(self) -> None:
        self._reset_at = self._in_written  # input from here on belongs to the new epoch
        self._epoch += 1  # published last
        self._out_read = self._out_written  # queued frames belong to the old input
        self._primed = False
        self.last = (0.0, SILENCE_DB)

    def feed(self, x: np.ndarray) -> None:
        n, cap = x.shape[0], self._in.shape[0]
        if n > cap - (self._in_written - self._in_read):
            self.n_dropped_samples += n  # the analysis thread is stalled: drop, never block
            return
        start = self._in_written % cap
        first = min(n, cap - start)
        self._in[start : start + first] = x[:first]
        self._in[: n - first] = x[first:]
        self._in_written += n  # published after the data

    def pop(self) -> tuple[float, float]:
        available = self._out_written - self._out_read
        if not self._primed:
            if available < self.prime_frames:
                return self.last
            self._primed = True
        if available == 0:
            self.n_underruns += 1
            return self.last
        i = self._out_read % self._f0.shape[0]
        self.last = (float(self._f0[i]), float(self._loudness[i]))
        self._out_read += 1
        return self.last

    # -- analysis thread ---------------------------------------------------------------------------
    def step(self) -> int:
        """Analyse whatever input is waiting; returns the number of frames produced."""
        epoch = self._epoch
        if epoch != self._seen_epoch:
            self._seen_epoch = epoch
            self._in_read = self._reset_at
            self.features.reset()
        produced = 0
        cap = self._in.shape[0]
        while (available := self._in_written - self._in_read) > 0:
            n = min(available, self._chunk.shape[0])
            start = self._in_read % cap
            first = min(n, cap - start)
            self._chunk[:first] = self._in[start : start + first]
            self._chunk[first:n] = self._in[: n - first]
            self._in_read += n
            f0, _periodicity, loudness = self.features.push(self._chunk[:n])
            if self._epoch != epoch:  # reset meanwhile: these frames are stale
                return produced
            produced += self._publish(f0, loudness)
        return produced

    def _publish(self, f0: np.ndarray, loudness: np.ndarray) -> int:
        cap = self._f0.shape[0]
        n = 0
        for k in range(f0.shape[0]):
            if self._out_written - self._out_read >= cap:
                self.n_dropped_frames += 1
                continue
            i = self._out_written % cap
            self._f0[i] = f0[k]
            self._loudness[i] = loudness[k]
            self._out_written += 1  # published after the data
            n += 1
        return n

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """True once all input fed so far has been analysed (tests, offline use)."""
        import time

        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self._in_read == self._in_written and self._seen_epoch == self._epoch:
                return True
            time.sleep(0.0005)
        return False

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.step()
