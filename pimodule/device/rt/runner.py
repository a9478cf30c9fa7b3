"""Running the audio: the audio process (a device, or its simulated clock) supervised from the
control process, or the compiled clock in a thread of this process (tests, bench, offline runs).

:class:`RtRunner` offers :class:`pimodule.device.audio.AudioRunner`'s surface: ``stats``,
``rt_status``, ``backend``, ``recorder``, ``open_stream`` and ``run_offline``. If the audio process
dies while it should play, :meth:`RtRunner.supervise` starts it again and says so.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soundfile

from pimodule.device.rt import shared as L
from pimodule.device.rt import stream as rt_stream
from pimodule.device.rt.shm import Shared

log = logging.getLogger(__name__)
READY_TIMEOUT_S = 300.0  # the first start on a Pi may compile the callback (numba) for minutes
STOP_TIMEOUT_S = 5.0


class RtStats:
    """The callback's statistics, read from the block (any thread of the control process)."""

    def __init__(self, block: Shared):
        self.block = block
        self._seen = 0  # responses already summarised by cpu_percent's window
        self.n_exceptions = 0  # compiled code cannot raise

    @property
    def n_callbacks(self) -> int:
        return int(self.block.ih[L.I_N_CALLBACKS])

    @property
    def n_xruns(self) -> int:
        return int(self.block.ih[L.I_N_XRUNS])

    @property
    def n_late(self) -> int:
        return int(self.block.ih[L.I_N_LATE])

    @property
    def n_late_at_wake(self) -> int:
        """Late blocks whose callback began after their period had passed (the server or the
        system woke it too late; no work in the callback could have saved them)."""
        return int(self.block.ih[L.I_N_LATE_WAKE])

    def responses_us(self, last: int | None = None) -> np.ndarray:
        return self.response_and_wake_us(last)[0]

    def response_and_wake_us(self, last: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The last blocks' responses and wake-ups (from the deadline to the callback's end and to
        its start) in µs, read at one write position (their difference is the callback's work)."""
        resp, wake = self.block.buf("I_RESP"), self.block.buf("I_WAKE")
        w = int(self.block.ih[L.I_RESP_WRITE])
        n = min(w, resp.shape[0], last or resp.shape[0])
        idx = np.arange(w - n, w) % resp.shape[0]
        return resp[idx].astype(np.float64) / 1e3, wake[idx].astype(np.float64) / 1e3

    def summary(self, sample_rate_hz: int, block_size: int | None = None) -> dict:
        """Response (from each block's due time to the end of its callback) p50/p99/max in µs,
        late blocks, and the share of the period the callback uses (p50 over the period)."""
        r, wake = self.response_and_wake_us()
        out = {
            "callbacks": self.n_callbacks,
            "xruns": self.n_xruns,
            "exceptions": 0,
            "late_blocks": self.n_late,
            "late_at_wake": self.n_late_at_wake,
            "p50_us": 0.0,
            "p99_us": 0.0,
            "max_us": 0.0,
            "cpu_percent": 0.0,
            "max_ever_us": int(self.block.ih[L.I_MAX_RESP_NS]) / 1e3,
        }
        if r.size == 0:
            return out
        n_cb = max(self.n_callbacks, 1)
        period_us = (int(self.block.ih[L.I_N_SAMPLES]) / n_cb) / sample_rate_hz * 1e6
        out.update(
            p50_us=float(np.percentile(r, 50)),
            p99_us=float(np.percentile(r, 99)),
            max_us=float(r.max()),
            cpu_percent=float(100.0 * np.mean(r) / max(period_us, 1e-9)),
            wake_p99_us=float(np.percentile(wake, 99)),
            work_p99_us=float(np.percentile(r - wake, 99)),
        )
        return out


class RtRecorder:
    """What was played, from the block's recording ring (``--record``)."""

    def __init__(self, block: Shared, sample_rate_hz: int):
        self.block, self.sample_rate_hz = block, sample_rate_hz
        block.ih[L.I_RECORD] = 1

    @property
    def n(self) -> int:
        return int(self.block.ih[L.I_REC_WRITE])

    @property
    def buffer(self) -> np.ndarray:
        return self.block.buf("F_REC")

    @property
    def audio(self) -> np.ndarray:
        return self.buffer[: self.n].copy()

    def save(self, path) -> None:
        soundfile.write(str(path), self.audio, self.sample_rate_hz, subtype="FLOAT")


class AudioProcess:
    """One run of ``python -m pimodule.device.rt.audio_main``."""

    def __init__(self, block: Shared, args: list[str]):
        self.block, self.args = block, args
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self.started_at = 0.0
        self.cold_start_s = math.nan
        self._stderr_thread: threading.Thread | None = None

    def start(self) -> dict:
        self.block.ih[L.I_STOP] = 0
        cmd = [sys.executable, "-m", "pimodule.device.rt.audio_main", self.block.name, *self.args]
        self.started_at = time.monotonic()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self._stderr_thread = threading.Thread(target=self._pump_stderr, daemon=True, name="pimodule-audio-log")
        self._stderr_thread.start()
        line = self._read_line(READY_TIMEOUT_S)
        if not line:
            self.stop()
            raise OSError("the audio process did not start (no ready line); see the log above")
        self.info = json.loads(line)
        if not self.info.get("ready"):
            self.stop()
            raise OSError(f"the audio process could not start: {self.info.get('error', 'unknown error')}")
        self.cold_start_s = time.monotonic() - self.started_at
        return self.info

    def _read_line(self, timeout_s: float) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        return result[0].strip() if result else ""

    def _pump_stderr(self) -> None:
        for line in self.proc.stderr:  # the audio process's own messages, into our log
            line = line.rstrip()
            if line:
                log.warning("audio process: %s", line[:500])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout_s: float | None = None) -> int | None:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.block.ih[L.I_STOP] = 1
        if self.wait(STOP_TIMEOUT_S) is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)


class _ProcessStream:
    """What :meth:`RtRunner.open_stream` returns: start/stop/close like a sounddevice stream."""

    def __init__(self, runner: RtRunner, args: list[str]):
        self.runner, self.args = runner, args

    def start(self) -> None:
        self.runner._start_process(self.args)  # noqa: SLF001

    def stop(self) -> None:
        self.runner._stop_process()  # noqa: SLF001

    def close(self) -> None:
        pass


class RtRunner:
    """Drives the compiled callback: a device through the audio process, or a simulated clock."""

    def __init__(
        self,
        engine,
        block: Shared,
        *,
        sample_rate_hz: int,
        recorder: RtRecorder | None = None,
        realtime_priority: bool = True,
        input_channel: int = 0,
        n_output_channels: int = 2,
    ):
        self.engine, self.block = engine, block
        self.sample_rate_hz = int(sample_rate_hz)
        self.recorder = recorder
        self.realtime_priority = realtime_priority
        self.stats = RtStats(block)
        self.backend = "none"
        self.process: AudioProcess | None = None
        self.n_restarts = 0
        self.cold_start_s = math.nan
        self._should_run = False
        self._args: list[str] = []

    @property
    def rt_status(self) -> str:
        return L.RT_NAMES.get(int(self.block.ih[L.I_RT_STATUS]), "?")

    # -- a device, through the audio process ------------------------------------------------------
    def open_stream(
        self,
        *,
        device=None,
        block_size: int = 128,
        n_input_channels: int = 2,
        latency: str = "low",
        cpus: str | None = None,
    ):
        """The audio process's stream; ``cpus``: the CPUs it is pinned to (None: not pinned)."""
        args = ["--block-size", str(block_size or 128), "--input-channels", str(n_input_channels), "--latency", latency]
        if cpus:
            args += ["--cpus", cpus]
        if device is not None and device != "":
            args += ["--device", str(device)]
        if not self.realtime_priority:
            args.append("--no-realtime")
        return _ProcessStream(self, args)

    def _start_process(self, args: list[str]) -> None:
        self._args = args
        self.process = AudioProcess(self.block, args)
        info = self.process.start()
        self.backend = info.get("backend", "?")
        self.cold_start_s = self.process.cold_start_s
        if "cpu_latency" in info:
            log.info("audio process on %s; CPU wake-up latency (PM QoS) %s", self.backend, info["cpu_latency"])
        self._should_run = True

    def _stop_process(self) -> None:
        self._should_run = False
        if self.process is not None:
            self.process.stop()

    def supervise(self) -> str | None:
        """Restart the audio process if it died while it should play; a message when it did."""
        if not self._should_run or self.process is None or self.process.alive():
            return None
        code = self.process.proc.returncode
        self.n_restarts += 1
        log.error("the audio process died (exit %s); restarting it (%d restarts so far)", code, self.n_restarts)
        try:
            self._start_process(self._args)
        except OSError as err:
            log.error("restarting the audio process failed: %s", err)
            return f"audio process died (exit {code}) and could not be restarted: {err}"
        return f"audio process died (exit {code}) and was restarted"

    # -- the simulated clock ------------------------------------------------------------------------
    def run_offline(
        self,
        duration_s: float,
        *,
        block_size: int = 128,
        realtime: bool = True,
        input_signal: np.ndarray | None = None,
        should_stop=lambda: False,
        separate_process: bool = False,
    ):
        """``duration_s`` of audio (``inf``: until ``should_stop()``) on the simulated clock, paced
        like a device when ``realtime``, with ``input_signal`` (mono: input L; ``(samples, 2)``:
        L and R) or silence: in this process (the compiled clock releases the GIL) or in the audio
        process (``separate_process``: as the daemon runs it)."""
        block_size = block_size or 128
        self.backend = "offline (simulated clock)"
        ih = self.block.ih
        rate = self.sample_rate_hz
        n_total = int(round(duration_s * rate)) if math.isfinite(duration_s) else -1
        if separate_process:
            args = ["--offline", "--block-size", str(block_size), "--duration", str(duration_s if n_total >= 0 else -1)]
            if not realtime:
                args.append("--freewheel")
            self._start_process(args)
            self._should_run = n_total < 0  # a run of fixed length ends by itself: no restart then
            while self.process.alive():
                if should_stop():
                    ih[L.I_STOP] = 1
                time.sleep(0.02)
            self._should_run = False
            return
        sim = _interleave(input_signal)
        inp, out = rt_stream.clock_buffers(block_size, int(ih[L.I_N_OUT_CH]))
        ih[L.I_STOP] = 0
        done = threading.Event()

        def watch():  # turns should_stop() into the block's stop flag
            while not done.wait(0.01):
                if should_stop():
                    ih[L.I_STOP] = 1
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            rt_stream.run_clock(ih, self.block.dh, self.block.fh, sim, inp, out, block_size, n_total, realtime)
        finally:
            done.set()
            watcher.join(1.0)


def _interleave(x: np.ndarray | None) -> np.ndarray:
    if x is None:
        return np.zeros(0, np.float32)
    x = np.asarray(x, np.float32)
    if x.ndim == 1:
        x = np.stack([x, np.zeros_like(x)], axis=1)
    return np.ascontiguousarray(x[:, :2]).reshape(-1)


def block_path_hint(block: Shared) -> Path:
    return Path("/dev/shm") / block.name
