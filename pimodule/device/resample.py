"""Streaming polyphase FIR resampler (numpy, preallocated, real-time safe after construction).

The filter is a Kaiser-windowed sinc (the same design as ``scipy.signal.resample_poly``'s
default), split into ``up`` polyphase branches of ``n_taps_per_phase`` taps. Feeding a signal
block by block gives exactly the first samples of ``scipy.signal.upfirdn(taps, x, up, down)``:
the output is causal and delayed by :attr:`StreamingResampler.latency_out_samples` (output-rate
samples), i.e. it equals ``resample_poly(x, up, down, window=taps)`` shifted by that latency.

Usage::

    rs = StreamingResampler(16000, 48000, max_block_in=64)
    out = np.zeros(rs.max_out(64), np.float32)
    n = rs.process(block_16k, out)      # out[:n] are the new 48 kHz samples

``process`` allocates no arrays: the input goes into a preallocated history buffer and each
polyphase branch is one ``np.matmul`` of a slice of a sliding-window view (made once) into a slice
of ``out``; integer upsampling of whole ``max_block_in`` blocks (the engine's model frames) is one
dense matrix-vector product instead (2 vs 5 µs for 64 → 192 samples).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

DEFAULT_ZERO_CROSSINGS = 10  # filter half-length in units of the slower rate's period
DEFAULT_KAISER_BETA = 5.0
DENSE_MAX_ENTRIES = 1 << 16  # 256 kB of float32: the largest block matrix worth keeping


def design_taps(
    up: int, down: int, *, zero_crossings: int = DEFAULT_ZERO_CROSSINGS, kaiser_beta: float = DEFAULT_KAISER_BETA
) -> tuple[np.ndarray, int]:
    """Low-pass taps (gain ``up``) for resampling by ``up/down`` and their half-length.

    The half-length is rounded up to a multiple of ``down`` so that the latency is a whole
    number of output samples.
    """
    from scipy.signal import firwin  # design time only

    if up == down == 1:
        return np.ones(1, dtype=np.float64), 0
    max_rate = max(up, down)
    half_len = math.ceil(zero_crossings * max_rate / down) * down
    taps = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", kaiser_beta)) * up
    return taps, half_len


class StreamingResampler:
    """Rational-ratio resampler ``rate_in_hz -> rate_out_hz`` for a mono float32 stream."""

    def __init__(
        self,
        rate_in_hz: int,
        rate_out_hz: int,
        *,
        max_block_in: int = 1024,
        zero_crossings: int = DEFAULT_ZERO_CROSSINGS,
        kaiser_beta: float = DEFAULT_KAISER_BETA,
    ):
        if rate_in_hz <= 0 or rate_out_hz <= 0:
            raise ValueError(f"sample rates must be positive, got {rate_in_hz} -> {rate_out_hz}")
        if max_block_in <= 0:
            raise ValueError(f"max_block_in must be positive, got {max_block_in}")
        g = math.gcd(int(rate_in_hz), int(rate_out_hz))
        self.rate_in_hz = int(rate_in_hz)
        self.rate_out_hz = int(rate_out_hz)
        self.up = self.rate_out_hz // g
        self.down = self.rate_in_hz // g
        taps, half_len = design_taps(self.up, self.down, zero_crossings=zero_crossings, kaiser_beta=kaiser_beta)
        self.taps = taps
        #: delay of the output against an ideal zero-phase resampling, in output samples
        self.latency_out_samples = half_len // self.down
        #: the same delay in input samples (may be fractional)
        self.latency_in_samples = half_len / self.up
        k = -(-len(taps) // self.up)  # taps per branch
        self.n_taps_per_phase = k
        padded = np.zeros(k * self.up, dtype=np.float64)
        padded[: len(taps)] = taps
        # branch p holds taps[p + t*up], t = 0..k-1; stored reversed so a forward view dots it
        self._branches = np.ascontiguousarray(padded.reshape(k, self.up).T[:, ::-1], dtype=np.float32)
        self._branches_t = np.ascontiguousarray(self._branches.T)  # (k, up): integer upsampling
        self._hist = k - 1
        self._chunk = max(int(max_block_in), self._hist, 1)
        self._buf = np.zeros(self._hist + 2 * self._chunk, dtype=np.float32)
        # every k-sample window of the buffer, made once: slicing it costs far less than as_strided
        self._windows = sliding_window_view(self._buf, self.n_taps_per_phase)
        # integer upsampling of whole max_block_in blocks (the engine's model frames): one dense
        # matrix-vector product over the contiguous history + block, when the matrix is small
        self._dense = None
        n = int(max_block_in)
        if self.down == 1 and self.up > 1 and n * self.up * (n + self._hist) <= DENSE_MAX_ENTRIES:
            dense = np.zeros((n * self.up, n + self._hist), np.float32)
            for i in range(n):
                dense[i * self.up : (i + 1) * self.up, i : i + k] = self._branches
            self._dense = dense
        self._dense_n = n if self._dense is not None else -1
        self.reset()

    def reset(self) -> None:
        """Back to silence (zero history) and time zero."""
        self._buf[:] = 0.0
        self._wp = self._hist  # write position: buf[wp - hist : wp] is the newest history
        self._n_in = 0  # input samples consumed so far
        self._n_out = 0  # output samples produced so far

    def max_out(self, n_in: int) -> int:
        """An upper bound for the outputs one ``process`` call on ``n_in`` inputs can give."""
        return -(-n_in * self.up // self.down) + 1

    def n_out_for(self, n_in: int) -> int:
        """How many outputs the next ``process`` call on ``n_in`` inputs gives."""
        return -(-(self._n_in + n_in) * self.up // self.down) - self._n_out

    def process(self, x_in: np.ndarray, out: np.ndarray) -> int:
        """Consume ``x_in`` (1-D), write the new output samples to ``out[:n]``, return ``n``."""
        n_in = x_in.shape[0]
        if (
            n_in == self._dense_n and out.flags.c_contiguous
        ):  # a whole model frame, integer upsampling: the engine's case
            return self._process_dense(x_in, out)
        n_total = 0
        start = 0
        while start < n_in:
            stop = min(start + self._chunk, n_in)
            n_total += self._process_chunk(x_in[start:stop], out[n_total:])
            start = stop
        return n_total

    def _process_dense(self, x: np.ndarray, out: np.ndarray) -> int:
        """:meth:`_process_chunk` for one ``max_block_in`` block with the dense matrix (few
        Python steps: this runs once per model frame in the audio callback)."""
        n, hist, wp = x.shape[0], self._hist, self._wp
        buf = self._buf
        if wp + n > buf.shape[0]:  # compact: move the newest history to the front
            buf[:hist] = buf[wp - hist : wp]
            wp = hist
        buf[wp : wp + n] = x
        n_out = self._dense.shape[0]
        np.dot(self._dense, buf[wp - hist : wp + n], out=out[:n_out])
        self._wp = wp + n
        self._n_in += n
        self._n_out += n_out
        return n_out

    def _process_chunk(self, x: np.ndarray, out: np.ndarray) -> int:
        n = x.shape[0]
        buf, hist = self._buf, self._hist
        if self._wp + n > buf.shape[0]:  # compact: move the newest history to the front
            buf[:hist] = buf[self._wp - hist : self._wp]
            self._wp = hist
        buf[self._wp : self._wp + n] = x
        base = self._n_in - self._wp  # global input index held in buf[0]
        self._wp += n
        self._n_in += n
        up, down = self.up, self.down
        m0 = self._n_out
        m_end = -(-self._n_in * up // down)
        n_out = m_end - m0
        if n_out > out.shape[0]:
            raise ValueError(f"out has room for {out.shape[0]} samples, {n_out} are due")
        if down == 1 and n_out == n * up and out.flags.c_contiguous:
            # integer upsampling: every input sample gives `up` outputs, one matmul for all of them
            first = self._n_in - n - hist - base
            if self._dense is not None and self._dense.shape[0] == n_out:
                np.dot(self._dense, buf[first : first + n + hist], out=out[:n_out])
                self._n_out = m_end
                return n_out
            np.matmul(self._windows[first : first + n], self._branches_t, out=out[:n_out].reshape(n, up))
            self._n_out = m_end
            return n_out
        for r in range(min(up, n_out)):
            m = m0 + r
            i0 = (m * down) // up
            phase = (m * down) % up
            n_j = (n_out - r + up - 1) // up
            first = i0 - hist - base  # buf index of x[i0 - (k - 1)]
            view = self._windows[first : first + (n_j - 1) * down + 1 : down]
            np.matmul(view, self._branches[phase], out=out[r : r + (n_j - 1) * up + 1 : up])
        self._n_out = m_end
        return n_out
