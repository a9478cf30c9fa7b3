"""The audio callback and its clocks: a sounddevice stream, or a simulated clock when no device
can be opened (``OfflineClock``), both driving the very same callback.

The callback (``AudioRunner.callback``) does: time stamp, status flags → xrun count, one call of
``engine.process`` (which runs one onnxruntime call per model block it needs), the mono voice
copied into every output channel, the optional recorder, the duration into a preallocated ring.
No logging, locks, I/O or array allocation; exceptions are counted, never raised (the block is
silenced). On its first call it tries SCHED_FIFO for its own thread and notes the result in
``rt_status`` (read by the status thread, which logs it).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time

import numpy as np

log = logging.getLogger(__name__)

RT_PRIORITY = 70  # SCHED_FIFO priority of the callback thread (below JACK's own, typically 80+)
SWITCH_INTERVAL_S = 0.001  # the GIL changes hands this often (default 5 ms)
N_TIMINGS = 4096


ANCHOR_WINDOW = 256  # as the compiled engine's (pimodule.device.rt.stream)


class CallbackStats:
    """Callback durations and responses in preallocated rings (audio thread writes, status thread
    reads). A block's *response* is the time from when it was due (the device's schedule, as the
    compiled engine defines it: pimodule.device.rt.stream) to the end of its callback; it includes
    any wait for the GIL before the callback could run, which its duration does not."""

    def __init__(self, n_timings: int = N_TIMINGS):
        self.durations_ns = np.zeros(n_timings, dtype=np.int64)
        self.responses_ns = np.full(n_timings, -1, dtype=np.int64)  # -1: no response known
        self.frames = np.zeros(n_timings, dtype=np.int64)
        self.n_callbacks = 0
        self.n_xruns = 0  # callbacks whose status flags reported an under/overflow
        self.n_exceptions = 0
        self.n_late = 0  # blocks whose response exceeded their period (after the warm-up)
        self.n_samples = 0
        self._wmin = [0, 0, 0]  # current window's min, previous window's min, count

    def record(self, duration_ns: int, frames: int, start_ns: int | None = None, rate_hz: int = 48000) -> None:
        i = self.n_callbacks % self.durations_ns.shape[0]
        self.durations_ns[i] = duration_ns
        self.frames[i] = frames
        if start_ns is not None:
            due_offset = self.n_samples * 1_000_000_000 // rate_hz
            offset = start_ns - due_offset
            w = self._wmin
            if self.n_callbacks == 0:
                w[0] = w[1] = offset
            elif w[2] >= ANCHOR_WINDOW:
                w[1], w[0], w[2] = w[0], offset, 0
            w[0] = min(w[0], offset)
            w[2] += 1
            anchor = min(w[0], w[1])
            response = start_ns + duration_ns - (anchor + due_offset)
            warm = self.n_callbacks >= 2 * ANCHOR_WINDOW  # the schedule is known from here on
            self.responses_ns[i] = response if warm else -1
            period_ns = frames * 1_000_000_000 // rate_hz
            if warm and response > period_ns:
                self.n_late += 1
            if offset - anchor > period_ns:  # woken a period late: the schedule is read afresh (as rt.stream)
                w[0] = w[1] = offset
                w[2] = 0
        self.n_samples += frames
        self.n_callbacks += 1

    def responses_us(self) -> np.ndarray:
        r = self.responses_ns[: min(self.n_callbacks, self.responses_ns.shape[0])]
        return r[r >= 0].astype(np.float64) / 1e3

    def summary(self, sample_rate_hz: int) -> dict:
        """Response (from each block's due time to the end of its callback) p50/p99/max in µs and
        late blocks; the callback's own duration (``duration_*``); cpu % of the block period."""
        n = min(self.n_callbacks, self.durations_ns.shape[0])
        out = {
            "callbacks": self.n_callbacks,
            "xruns": self.n_xruns,
            "exceptions": self.n_exceptions,
            "late_blocks": self.n_late,
            "p50_us": 0.0,
            "p99_us": 0.0,
            "max_us": 0.0,
            "cpu_percent": 0.0,
        }
        if n == 0:
            return out
        d_us = self.durations_ns[:n].astype(np.float64) / 1e3
        period_us = self.frames[:n].astype(np.float64) / sample_rate_hz * 1e6
        r_us = self.responses_us()
        r_us = r_us if r_us.size else d_us  # a clock that gives no start times: durations only
        out.update(
            p50_us=float(np.percentile(r_us, 50)),
            p99_us=float(np.percentile(r_us, 99)),
            max_us=float(r_us.max()),
            duration_p50_us=float(np.percentile(d_us, 50)),
            duration_p99_us=float(np.percentile(d_us, 99)),
            cpu_percent=float(100.0 * d_us.sum() / max(period_us.sum(), 1e-9)),
        )
        return out


class Recorder:
    """What was played, into a preallocated buffer (``--record``); written to a wav afterwards."""

    def __init__(self, sample_rate_hz: int, max_seconds: float):
        self.sample_rate_hz = sample_rate_hz
        self.buffer = np.zeros(int(math.ceil(max_seconds * sample_rate_hz)), dtype=np.float32)
        self.n = 0

    def write(self, x: np.ndarray) -> None:
        k = min(x.shape[0], self.buffer.shape[0] - self.n)
        if k > 0:
            self.buffer[self.n : self.n + k] = x[:k]
            self.n += k

    @property
    def audio(self) -> np.ndarray:
        return self.buffer[: self.n]

    def save(self, path) -> None:
        import soundfile

        soundfile.write(str(path), self.audio, self.sample_rate_hz, subtype="FLOAT")


def try_realtime_priority(priority: int = RT_PRIORITY) -> str:
    """SCHED_FIFO for the calling thread; returns 'fifo' or why not (never raises, never logs)."""
    if not hasattr(os, "sched_setscheduler"):
        return "unsupported"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, ValueError) as err:
        return f"denied ({err.__class__.__name__})"
    return "fifo"


class AudioRunner:
    """Owns the callback's buffers and drives an engine from a device or a simulated clock."""

    def __init__(
        self,
        engine,
        *,
        sample_rate_hz: int,
        n_output_channels: int = 2,
        input_channel: int = 0,
        recorder: Recorder | None = None,
        realtime_priority: bool = True,
    ):
        self.engine = engine
        self.sample_rate_hz = int(sample_rate_hz)
        self.n_output_channels = int(n_output_channels)
        self.input_channel = int(input_channel)
        self.recorder = recorder
        self.stats = CallbackStats()
        self.rt_status = "not tried" if realtime_priority else "off"
        self._mono = np.zeros(engine.max_block, dtype=np.float32)
        self.stream = None
        self.backend = "none"

    # -- the callback (audio thread) -----------------------------------------------------------
    def callback(self, indata, outdata, frames, time_info, status) -> None:
        t0 = time.perf_counter_ns()
        if self.rt_status == "not tried":
            self.rt_status = try_realtime_priority()
        if status:
            self.stats.n_xruns += 1
        max_block = self._mono.shape[0]
        start = 0
        while start < frames:
            stop = min(frames, start + max_block)
            mono = self._mono[: stop - start]
            x = x_aux = None
            if indata is not None and indata.shape[1] > self.input_channel:
                x = indata[start:stop, self.input_channel]
                if indata.shape[1] > 1:  # the other input: what fx matching processes
                    x_aux = indata[start:stop, 1 - min(self.input_channel, 1)]
            try:
                self.engine.process(x, mono, x_aux)
            except Exception:  # noqa: BLE001 - the audio thread must survive anything
                self.stats.n_exceptions += 1
                mono.fill(0.0)
            outdata[start:stop, :] = mono[:, None]
            if self.recorder is not None:
                self.recorder.write(mono)
            start = stop
        self.stats.record(time.perf_counter_ns() - t0, frames, t0, self.sample_rate_hz)

    # -- a real device ---------------------------------------------------------------------------
    def open_stream(
        self,
        *,
        device=None,
        block_size: int = 128,
        n_input_channels: int = 2,
        latency: str = "low",
        cpus: str | None = None,
    ):
        """Open (not start) a sounddevice stream; raises sounddevice's errors if it cannot.
        ``cpus`` is ignored: this engine's audio shares the daemon's process, nothing to pin."""
        import sounddevice as sd

        sys.setswitchinterval(SWITCH_INTERVAL_S)
        kwargs = dict(samplerate=self.sample_rate_hz, blocksize=block_size, dtype="float32", latency=latency)
        stream = None
        if n_input_channels > 0:
            try:
                stream = sd.Stream(
                    device=(device, device),
                    channels=(n_input_channels, self.n_output_channels),
                    callback=self.callback,
                    **kwargs,
                )
            except (sd.PortAudioError, ValueError) as err:
                log.warning(
                    "cannot open %d input channel(s) (%s); output only (transfer/fx hear silence)",
                    n_input_channels,
                    err,
                )
        if stream is None:

            def out_only(outdata, frames, time_info, status):
                self.callback(None, outdata, frames, time_info, status)

            stream = sd.OutputStream(device=device, channels=self.n_output_channels, callback=out_only, **kwargs)
        self.stream = stream
        index = stream.device[1] if isinstance(stream.device, (tuple, list)) else stream.device
        info = sd.query_devices(index)
        self.backend = f"{info['name']} ({sd.query_hostapis(info['hostapi'])['name']})"
        return stream

    # -- a simulated clock -----------------------------------------------------------------------
    def run_offline(
        self,
        duration_s: float,
        *,
        block_size: int = 128,
        realtime: bool = True,
        input_signal: np.ndarray | None = None,
        should_stop=lambda: False,
    ) -> None:
        """Call the callback block by block for ``duration_s`` of audio (``inf``: until
        ``should_stop()``), paced like a device when ``realtime``, with ``input_signal`` (device
        rate; mono: input L, ``(samples, 2)``: inputs L and R) or silence as input."""
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.backend = "offline (simulated clock)"
        self.rt_status = "off (offline)"
        n_total = int(round(duration_s * self.sample_rate_hz)) if math.isfinite(duration_s) else None
        stereo = input_signal is not None and np.ndim(input_signal) == 2
        aux = 1 - min(self.input_channel, 1)  # the channel the callback reads as input R
        indata = np.zeros((block_size, max(2 if stereo else 1, self.input_channel + 1)), dtype=np.float32)
        outdata = np.zeros((block_size, self.n_output_channels), dtype=np.float32)
        period_s = block_size / self.sample_rate_hz
        t_start = time.monotonic()
        done = 0
        while (n_total is None or done < n_total) and not should_stop():
            n = block_size if n_total is None else min(block_size, n_total - done)
            indata.fill(0.0)
            if input_signal is not None and done < len(input_signal):
                k = min(n, len(input_signal) - done)
                if stereo:
                    indata[:k, self.input_channel] = input_signal[done : done + k, 0]
                    indata[:k, aux] = input_signal[done : done + k, 1]
                else:
                    indata[:k, self.input_channel] = input_signal[done : done + k]
            self.callback(indata[:n], outdata[:n], n, None, None)
            done += n
            if realtime:
                wait_s = t_start + done / self.sample_rate_hz - time.monotonic()
                if wait_s > 0:
                    time.sleep(wait_s)
                elif wait_s < -10 * period_s:
                    self.stats.n_xruns += 1  # a device would have dropped out here
                    t_start = time.monotonic() - done / self.sample_rate_hz
