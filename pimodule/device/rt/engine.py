"""The control process's handle on the real-time engine: the same surface as the onnxruntime
engine (:class:`pimodule.device.ort_engine.VoiceEngine`) over the shared block, so the daemon, its
model loader, OSC controller, pots and fx mode drive either one.

Nothing here runs in the audio process: setting a control, the gain, the mode is one store into
the block; a model swap writes the new voice's weights into a free slot and publishes it
(:mod:`.voices`); the statistics are read from counters the callback keeps.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from pimodule.core.controls import CV_NAMES, MODES
from pimodule.core.modelfile import ModelFileError
from pimodule.core.params import ParamTable
from pimodule.device.config import EngineConfig
from pimodule.device.rt import setup
from pimodule.device.rt import shared as L
from pimodule.device.rt.fxparams import FxChainWriter
from pimodule.device.rt.shm import Shared
from pimodule.device.rt.voices import Published, SlotWriter, compile_or_explain
from pimodule.device.session import ModelSession
from pimodule.device.voice.kernel import voice_frame

log = logging.getLogger(__name__)


class RtGuard:
    """Gain and mute of the output (the callback's guard reads them from the block)."""

    def __init__(self, block: Shared):
        self.block = block
        self.muted = False

    def set_gain_db(self, gain_db: float) -> float:
        if not math.isfinite(gain_db):
            raise ValueError(f"gain {gain_db} dB is not a finite number")
        setup.set_gain_db(self.block, gain_db)
        return gain_db

    def set_mute(self, muted: bool) -> None:
        self.muted = bool(muted)
        self.block.ih[L.I_MUTE] = int(self.muted)

    @property
    def n_nonfinite_blocks(self) -> int:
        return int(self.block.ih[L.I_N_NONFINITE])

    @property
    def n_limited_blocks(self) -> int:
        return int(self.block.ih[L.I_N_LIMITED])


class RtAnalysis:
    """Transfer mode's analysis runs in the callback: nothing to start; its counters."""

    def __init__(self, block: Shared):
        self.block = block

    def start(self) -> None:
        pass

    def stop(self, timeout_s: float = 2.0) -> None:
        pass

    @property
    def n_underruns(self) -> int:
        return int(self.block.ih[L.I_N_ANA_UNDERRUNS])


class SharedHistory:
    """The last ``n`` samples of input L or R from the callback's ring in the block (the fx
    analyzer's :class:`~pimodule.device.fx.mode.InputHistory`, read side only)."""

    def __init__(self, block: Shared, channel: str, n: int):
        self.block = block
        self.ring = block.buf("F_IN_L" if channel == "L" else "F_IN_R")
        if n > self.ring.shape[0]:
            raise ValueError(f"an analysis window of {n} samples exceeds the engine's input history")
        self.n = int(n)

    @property
    def n_written(self) -> int:
        return int(self.block.ih[L.I_IN_WRITE])

    @property
    def seq(self) -> int:
        """Even, and changed by every block the callback writes: paired snapshots (L and R) that
        saw the same value before and after come from the same blocks."""
        return 2 * int(self.block.ih[L.I_IN_WRITE])

    def snapshot_at(self) -> tuple[np.ndarray, int] | None:
        size = self.ring.shape[0]
        for _ in range(50):
            end = int(self.block.ih[L.I_IN_WRITE])
            start = end - self.n
            idx = np.arange(start, end) % size
            copy = self.ring[idx]
            # the writer must not have wrapped over what was copied meanwhile
            if int(self.block.ih[L.I_IN_WRITE]) - start <= size:
                return copy, end
        return None

    def snapshot(self) -> np.ndarray:
        got = self.snapshot_at()
        return got[0] if got is not None else np.zeros(self.n, np.float32)


class RtEngine:
    """:class:`pimodule.device.ort_engine.VoiceEngine`'s control surface over the shared block."""

    def __init__(self, block: Shared, *, config: EngineConfig | None = None, model_block: int = 64, cv_names=CV_NAMES):
        self.block = block
        self.config = config or EngineConfig()
        ih = block.ih
        self.device_rate_hz = int(ih[L.I_DEVICE_RATE])
        self.model_rate_hz = int(ih[L.I_MODEL_RATE])
        self.model_block = int(ih[L.I_HOP])
        self.max_block = int(ih[L.I_MAX_CHUNK])
        self.cv_names = tuple(cv_names)
        self.cv_values = block.buf("D_CV")[: len(self.cv_names)]
        self.gate_values = block.buf("D_GATE")
        setup.write_params(block, self.config, self.cv_names)
        ih[L.I_MODE_REQ] = ih[L.I_MODE_NOW] = MODES.index(self.config.mode)
        self.guard = RtGuard(block)
        self.analysis = RtAnalysis(block)
        self.slots = SlotWriter(block)
        self._waiting: Published | None = None  # latest-wins, until a slot is free
        self._desired: dict[str, float] = {}
        self.fx_history = None
        self.fx_other_history = None
        self.fx_matcher = None
        self._fx_writer: FxChainWriter | None = None
        self.retired = None

    # -- modes and controls ---------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return MODES[int(self.block.ih[L.I_MODE_REQ])]

    def set_mode(self, mode: str) -> str:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        setup.set_mode(self.block, mode)
        return mode

    @property
    def session(self):
        playing = self.slots.playing
        return playing.session if playing is not None else None

    @property
    def latest_session(self):
        if self._waiting is not None:
            return self._waiting.session
        pending = self.slots.slots[int(self.block.ih[L.I_PENDING])] if self.slots.pending else None
        return pending.session if pending is not None else self.session

    def controls(self) -> ParamTable | None:
        session = self.latest_session
        return session.info.controls if session is not None else None

    def set_control(self, name: str, value: float) -> float:
        session = self.latest_session
        if session is None:
            raise KeyError(f"no model loaded: cannot set {name!r}")
        used = session.set_control(name, value)
        self._desired[name] = used
        index = session.info.controls.index(name)
        for s, item in enumerate(self.slots.slots):
            if item is not None and name in item.session.info.controls:
                item.session.set_control(name, used)
                if index < L.N_CTRL:
                    self.slots.write_controls(s, item.session.controls)
        return used

    # -- models ---------------------------------------------------------------------------------
    def check_compatible(self, session) -> None:
        info = session.info
        info.require_voice(self.model_rate_hz, self.model_block)
        if len(info.controls) > L.N_CTRL:
            raise ModelFileError(f"{info.name}: {len(info.controls)} controls, the engine takes at most {L.N_CTRL}")

    def _prepare(self, session) -> Published:
        self.check_compatible(session)
        for name, value in self._desired.items():
            if name in session.info.controls:
                session.set_control(name, value)
        weights, why = compile_or_explain(session)
        if weights is None:
            log.warning(
                "%s plays through onnxruntime (%s): %d samples more latency",
                session.info.name,
                why,
                4 * self.model_block,
            )
        return Published(session, weights, why)

    def offer_model(self, session) -> None:
        """A loaded, validated voice: published at once if a slot is free, else when one is."""
        self._waiting = self._prepare(session)
        self.collect_retired()

    def install(self, session) -> None:
        self.offer_model(session)

    @property
    def swap_pending(self) -> bool:
        return self._waiting is not None or self.slots.pending

    def collect_retired(self) -> None:
        """Publish a waiting voice once a slot is free (called often from control threads)."""
        waiting = self._waiting
        if waiting is not None and self.slots.publish(waiting):
            self._waiting = None

    def compiled(self) -> bool | None:
        playing = self.slots.playing
        return None if playing is None else playing.weights is not None

    # -- counters -------------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return int(self.block.ih[L.I_N_SAMPLES])

    @property
    def n_frames(self) -> int:
        return int(self.block.ih[L.I_N_FRAMES])

    @property
    def n_swaps(self) -> int:
        return int(self.block.ih[L.I_N_SWAPS])

    @property
    def last_f0_hz(self) -> float:
        return float(self.block.buf("D_STATUS")[L.T_F0])

    @property
    def last_loudness_db(self) -> float:
        return float(self.block.buf("D_STATUS")[L.T_LOUDNESS])

    @property
    def n_bad_frames(self) -> int:
        """Frames of the voice that went non-finite (compiled in the callback, or onnxruntime's)."""
        ort = self.slots.ort
        return int(self.block.ih[L.I_N_VOICE_BAD]) + (ort.n_bad if ort is not None else 0)

    @property
    def latency_samples(self) -> int:
        up, down, taps = (int(self.block.ih[k]) for k in (L.I_UP_UP, L.I_UP_DOWN, L.I_UP_TAPS))
        return (taps * up // 2) // down

    def voice_cost(self, path: Path, n_frames: int = 400) -> dict:
        """The validator's ``engine_cost``: :func:`voice_cost`."""
        return voice_cost(path, n_frames)

    def attach_fx(self, matcher) -> None:
        """fx mode's matched chain: the matcher's targets go to the compiled chain in the block."""
        self.fx_matcher = matcher
        self._fx_writer = FxChainWriter(self.block)
        self._fx_writer.attach(matcher)

    def tick(self) -> None:
        """Called by the control loop (about 50 times a second): the matching switch, the fx
        chain's waiting publications, a voice waiting for a free slot."""
        matcher = self.fx_matcher
        if matcher is not None:
            self.block.ih[L.I_MATCH] = int(bool(matcher.matching))
            if self._fx_writer is not None:
                self._fx_writer.poll()
        self.collect_retired()

    def shared_history(self, channel: str, n: int) -> SharedHistory:
        return SharedHistory(self.block, channel, n)

    def stop(self) -> None:
        self.slots.stop()


def voice_cost(path: Path, n_frames: int = 400) -> dict:
    """Per-frame cost of a voice as this engine would play it (µs, p50 and p99 of frames run
    here): the compiled frame when it compiles, else onnxruntime's (the ring's worker).

    The cost is the frame's CPU time on this thread, as the child's validation measures it:
    the frame runs without the GIL, so its wall time here also holds the wait to take the GIL
    back from another thread of this process (the fx analysis, OSC) and any preemption by
    other processes; the audio process meets neither (its own process, a real-time thread).
    The wall times are reported beside it."""
    session = ModelSession(path)
    weights, _ = compile_or_explain(session)
    hop = session.info.block_size
    out = np.zeros(hop, np.float32)
    f0s = np.geomspace(55.0, 1760.0, n_frames)
    cpu, wall = np.zeros(n_frames), np.zeros(n_frames)
    if weights is not None:
        state, scratch = weights.initial_state(), weights.new_scratch()
        controls = session.controls.astype(np.float32)

        def frame(f0: float) -> None:
            voice_frame(weights.weights, weights.layout, controls, f0, -20.0, state, scratch, out)
    else:

        def frame(f0: float) -> None:
            session.process_frame(f0, -20.0, out)

    for i in range(n_frames + 20):
        t_cpu, t_wall = time.thread_time_ns(), time.perf_counter_ns()
        frame(float(f0s[i % n_frames]))
        if i >= 20:
            cpu[i - 20] = (time.thread_time_ns() - t_cpu) / 1e3
            wall[i - 20] = (time.perf_counter_ns() - t_wall) / 1e3
    return {
        "p50_us": float(np.percentile(cpu, 50)),
        "p99_us": float(np.percentile(cpu, 99)),
        "wall_p50_us": float(np.percentile(wall, 50)),
        "wall_p99_us": float(np.percentile(wall, 99)),
        "engine": "compiled" if weights is not None else "onnxruntime",
    }
