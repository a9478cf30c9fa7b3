"""The voice engine: control frames → model → ring buffer → resampler → device-rate output.

One :class:`VoiceEngine` is driven by the audio callback (``process``, real-time) and controlled
from other threads (``set_mode``, ``set_control``, ``offer_model``, ``guard.set_gain_db`` …)
through single stores of Python objects or numpy slots: no locks on the audio thread.

Modes
- ``synth``: CV1 volts (1 V/oct, calibrated by the CV reader) → f0_hz; loudness from CV2
  (``engine.cv2_range_v`` → ``engine.loudness_range_db``) or from an attack/release envelope
  driven by the gate (trigger input 1).
- ``transfer``: the input is resampled to the model rate, :class:`pimodule.core.streaming_features.StreamingFeatures`
  turns it into (f0, loudness) frames, queued behind a look-ahead so the voice never waits; in the
  daemon the analysis runs in its own thread (pimodule.device.analysis); CV1 transposes by octaves.
- ``fx``: input L feeds the effect estimator's history (analysed off the audio thread); the
  output is input R, through the estimated chain when matching is on (pimodule.device.fx.mode).

Model frames are rendered on demand: whenever the output ring holds fewer samples than the
device block needs, one model frame is run (one onnxruntime call) and upsampled into the ring,
so any device block size works and the output does not depend on it.

Model swaps: a loader thread builds, validates and warms a :class:`ModelSession`, then calls
``offer_model``; the callback takes it at the next frame boundary and crossfades old → new over
``crossfade_ms`` (both models run during the fade). The callback never drops the last reference
to a session (that would run onnxruntime's destructor on the audio thread): the old one is
parked in ``retired`` for the loader thread to release (``collect_retired``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from pimodule.core.controls import CV_NAMES, MODES
from pimodule.core.params import ParamTable
from pimodule.device.analysis import InlineAnalysis, ThreadedAnalysis, device_features
from pimodule.device.config import EngineConfig
from pimodule.device.guard import Crossfade, Fader, OutputGuard
from pimodule.device.resample import StreamingResampler
from pimodule.device.ring import FrameQueue, SampleRing

MODE_SWITCH_FADE_MS = 5.0
SILENCE_DB = -100.0


class VoiceEngine:
    """Mono voice at the device rate; see the module docstring."""

    def __init__(
        self,
        *,
        device_rate_hz: int,
        max_block: int,
        config: EngineConfig | None = None,
        model_rate_hz: int = 16000,
        model_block: int = 64,
        crossfade_ms: float = 20.0,
        cv_values: np.ndarray | None = None,
        cv_names: Sequence[str] = CV_NAMES,
        gate_values: np.ndarray | None = None,
        gate_index: int = 0,
        features_factory: Callable[[int, int], object] | None = None,
        analysis_thread: bool = False,
    ):
        self.config = config or EngineConfig()
        cfg = self.config
        self.device_rate_hz = int(device_rate_hz)
        self.max_block = int(max_block)
        self.model_rate_hz = int(model_rate_hz)
        self.model_block = int(model_block)
        # CV / gate hand-offs (written by the CV and GPIO threads)
        self.cv_values = cv_values if cv_values is not None else np.zeros(len(cv_names), np.float64)
        self.cv_names = tuple(cv_names)
        self._i_cv1 = self.cv_names.index("cv1")
        self._i_cv2 = self.cv_names.index("cv2")
        self.gate_values = gate_values if gate_values is not None else np.zeros(1, np.int8)
        self._gate_index = gate_index
        # model side
        self.session = None  # the model playing
        self._old = None  # the model fading out
        self._pending = None  # offered by the loader, taken at the next frame boundary
        self.retired = None  # released by the loader thread
        self._desired: dict[str, float] = {}  # controls set by the user, carried across swaps
        self._frame = np.zeros(self.model_block, np.float32)
        self._frame_old = np.zeros(self.model_block, np.float32)
        self._crossfade = Crossfade(max(1, round(crossfade_ms * 1e-3 * self.model_rate_hz)))
        self._up = StreamingResampler(self.model_rate_hz, self.device_rate_hz, max_block_in=self.model_block)
        self._up_out = np.zeros(self._up.max_out(self.model_block), np.float32)
        self._ring = SampleRing(self.max_block + 2 * self._up_out.shape[0])
        # transfer side
        self._down = StreamingResampler(self.device_rate_hz, self.model_rate_hz, max_block_in=self.max_block)
        self._down_out = np.zeros(self._down.max_out(self.max_block) + 1, np.float32)
        if features_factory is None:
            features_factory = device_features
        self._features = features_factory(self.model_rate_hz, self.model_block)
        # frames wait in a queue this deep, so that the voice never runs ahead of the analysis
        analysis_latency = self._features.latency_samples + self._down.latency_out_samples
        self.transfer_lookahead_frames = -(-analysis_latency // self.model_block) + 2
        max_frames_per_block = -(-self.max_block * self.model_rate_hz // (self.device_rate_hz * self.model_block)) + 1
        if analysis_thread:  # the daemon: FFTs off the audio thread (start/stop self.analysis)
            self.analysis = ThreadedAnalysis(self._features, capacity_samples=4 * self.model_rate_hz)
        else:  # offline, bench, tests: deterministic, in the callback
            burst = getattr(self._features, "f0_every", 1)  # frames come out up to a knot at a time
            frames = FrameQueue(self.transfer_lookahead_frames + 2 * max_frames_per_block + burst + 4)
            self.analysis = InlineAnalysis(self._features, frames, self.transfer_lookahead_frames)
        # synth side
        self._env = 0.0
        frame_s = self.model_block / self.model_rate_hz
        self._attack_coef = 1.0 - math.exp(-frame_s / (cfg.attack_ms * 1e-3))
        self._release_coef = 1.0 - math.exp(-frame_s / (cfg.release_ms * 1e-3))
        # output
        self.guard = OutputGuard(self.device_rate_hz, self.max_block)
        self.guard.set_gain_db(cfg.gain_db)
        self._fader = Fader(max(1, round(MODE_SWITCH_FADE_MS * 1e-3 * self.device_rate_hz)), self.max_block)
        self._mode = MODES.index(cfg.mode)
        self._requested_mode = self._mode
        self._reset_mode_state()
        # fx mode (set by the daemon when an estimator is installed; see pimodule.device.fx.mode)
        self.fx_history = None
        self.fx_other_history = None  # input R, for conditioned estimators
        self.fx_matcher = None
        # counters and last values, read by the status thread
        self.n_frames = 0
        self.n_samples = 0
        self.n_swaps = 0
        self.last_f0_hz = 0.0
        self.last_loudness_db = SILENCE_DB

    # -- control side (any thread but the audio thread) ----------------------------------------
    @property
    def mode(self) -> str:
        return MODES[self._requested_mode]

    def set_mode(self, mode: str) -> str:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        self._requested_mode = MODES.index(mode)
        return mode

    @property
    def latest_session(self):
        """The model offered last (pending) or else the one playing (None without a model)."""
        return self._pending or self.session

    def controls(self) -> ParamTable | None:
        session = self.latest_session
        return session.info.controls if session is not None else None

    def set_control(self, name: str, value: float) -> float:
        """Clamp to the playing model's spec and hand it over; remembered across model swaps."""
        session = self.session if self._pending is None else self._pending
        if session is None:
            raise KeyError(f"no model loaded: cannot set {name!r}")
        used = session.set_control(name, value)  # KeyError / ValueError with a clear message
        self._desired[name] = used
        for other in (self.session, self._pending):
            if other is not None and other is not session and name in other.info.controls:
                other.set_control(name, used)
        return used

    def check_compatible(self, session) -> None:
        """Refuse a model the engine cannot play (ModelFileError)."""
        session.info.require_voice(self.model_rate_hz, self.model_block)

    def offer_model(self, session) -> None:
        """Hand a loaded, validated, warmed session to the audio thread (loader thread only)."""
        self.check_compatible(session)
        for name, value in self._desired.items():
            if name in session.info.controls:
                session.set_control(name, value)
        previous, self._pending = self._pending, session
        del previous  # if the callback did not take it, it is released here, not on the audio thread

    def install(self, session) -> None:
        """Set the playing model directly: only before the audio stream starts (or in tests)."""
        self.check_compatible(session)
        for name, value in self._desired.items():
            if name in session.info.controls:
                session.set_control(name, value)
        self.session = session

    @property
    def swap_pending(self) -> bool:
        return self._pending is not None

    def collect_retired(self) -> None:
        """Release a model the callback has finished with (call from a non-audio thread)."""
        retired, self.retired = self.retired, None
        del retired

    # -- audio side ----------------------------------------------------------------------------
    def _reset_mode_state(self) -> None:
        self._ring.clear()
        self._up.reset()
        self._down.reset()
        self.analysis.reset()

    def process(self, x_in: np.ndarray | None, out: np.ndarray, x_aux: np.ndarray | None = None) -> None:
        """Real time: fill ``out`` (1-D float32, len ≤ max_block) from ``x_in`` (same length or
        None); ``x_aux`` is the other input (fx matching processes it)."""
        n = out.shape[0]
        with np.errstate(all="ignore"):
            if self._requested_mode != self._mode and self._fader.target != 0.0:
                self._fader.target = 0.0
            mode = MODES[self._mode]
            if mode == "fx":
                self._process_fx(x_in, x_aux, out)
            else:
                if mode == "transfer":
                    self._feed_transfer(x_in, n)
                while self._ring.available < n:
                    self._render_frame(mode)
                self._ring.read_into(out)
            self._fader.process(out)
            if self._fader.level == 0.0 and self._requested_mode != self._mode:
                self._mode = self._requested_mode
                self._reset_mode_state()
                self._fader.target = 1.0
            self.guard.process_unchecked(out)
        self.n_samples += n

    def _process_fx(self, x_in: np.ndarray | None, x_aux: np.ndarray | None, out: np.ndarray) -> None:
        """fx mode: input L feeds the analyzer's history; output is input R (or L on a one-input
        device), through the estimated chain when matching is on (pimodule.device.fx.mode)."""
        history, matcher, other = self.fx_history, self.fx_matcher, self.fx_other_history
        if x_in is not None and history is not None:
            history.write(x_in)
        if x_aux is not None and other is not None:
            other.write(x_aux)
        src = x_aux if x_aux is not None else x_in
        if src is None:
            out.fill(0.0)
            return
        out[:] = src
        if matcher is not None and matcher.matching:
            matcher.process(out)

    def _feed_transfer(self, x_in: np.ndarray | None, n: int) -> None:
        if x_in is None:
            return
        k = self._down.process(x_in, self._down_out)
        if k:
            self.analysis.feed(self._down_out[:k])

    def _control_frame(self, mode: str) -> tuple[float, float]:
        cfg = self.config
        cv1 = float(self.cv_values[self._i_cv1])
        if mode == "synth":
            f0_hz = cfg.hz_at_0v * 2.0 ** min(max(cv1, -10.0), 10.0)
            lo_db, hi_db = cfg.loudness_range_db
            if cfg.loudness_source == "cv2":
                v_lo, v_hi = cfg.cv2_range_v
                u = (float(self.cv_values[self._i_cv2]) - v_lo) / (v_hi - v_lo)
                u = min(max(u, 0.0), 1.0) if math.isfinite(u) else 0.0
                loudness_db = lo_db + (hi_db - lo_db) * u
            else:
                gate = self.gate_values[self._gate_index] != 0
                coef = self._attack_coef if gate else self._release_coef
                self._env += coef * ((1.0 if gate else 0.0) - self._env)
                floor = 10.0 ** ((lo_db - hi_db) / 20.0)
                loudness_db = hi_db + 20.0 * math.log10(max(self._env, floor))
        else:  # transfer
            f0_hz, loudness_db = self.analysis.pop()
            if cfg.transpose_with_cv1 and math.isfinite(cv1):
                f0_hz *= 2.0 ** min(max(round(cv1), -4), 4)
        lo_hz, hi_hz = cfg.f0_range_hz
        f0_hz = min(max(f0_hz, lo_hz), hi_hz) if math.isfinite(f0_hz) else lo_hz
        if not math.isfinite(loudness_db):
            loudness_db = SILENCE_DB
        return f0_hz, loudness_db

    def _render_frame(self, mode: str) -> None:
        if self._pending is not None and self._old is None and self.retired is None:
            self._old, self.session, self._pending = self.session, self._pending, None
            if self._old is not None:
                self._crossfade.start()
            self.n_swaps += 1
        f0_hz, loudness_db = self._control_frame(mode)
        frame = self._frame
        session = self.session
        if session is None:
            frame.fill(0.0)
        else:
            session.process_frame(f0_hz, loudness_db, frame)
        old = self._old
        if old is not None:
            if self._crossfade.active:
                old.process_frame(f0_hz, loudness_db, self._frame_old)
                self._crossfade.mix(self._frame_old, frame)
            if not self._crossfade.active and self.retired is None:
                self.retired, self._old = old, None
        del old  # the callback's local reference; `retired` keeps the object alive
        k = self._up.process(frame, self._up_out)
        self._ring.write(self._up_out[:k])
        self.n_frames += 1
        self.last_f0_hz = f0_hz
        self.last_loudness_db = loudness_db

    @property
    def latency_samples(self) -> int:
        """Device-rate latency of the synth path (resampler) — transfer adds its look-ahead."""
        return self._up.latency_out_samples

    def transfer_latency_samples(self) -> int:
        """Device-rate delay from input to output in transfer mode (look-ahead + both resamplers)."""
        ratio = self.device_rate_hz / self.model_rate_hz
        model_side = self.transfer_lookahead_frames * self.model_block + self._down.latency_out_samples
        return int(round(model_side * ratio)) + self._up.latency_out_samples
