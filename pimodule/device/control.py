"""The daemon's control side: the OSC :class:`~pimodule.device.io.controller.Controller` over the engine,
pots → model controls, and a simulated CV source (a CV melody through the real ADC encoding).
Everything here runs off the audio thread."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pimodule.core.controls import GAIN_SPEC
from pimodule.core.modelfile import ModelFileError
from pimodule.core.params import ParamTable
from pimodule.device.fx.mode import osc_messages

log = logging.getLogger(__name__)


class DaemonController:
    """The engine, model loader and statistics behind the OSC server (``pimodule.device.io.osc``)."""

    def __init__(
        self,
        engine,
        loader,
        runner,
        *,
        cv_snapshot: Callable[[], dict] | None = None,
        cv_override: Callable[[str, float], None] | None = None,
    ):
        self.engine = engine
        self.loader = loader
        self.runner = runner
        self.cv_snapshot = cv_snapshot or dict
        # /pimodule/cv/<name>: the CV reader's override (given, or the reader behind cv_snapshot)
        self.cv_override = cv_override or getattr(getattr(cv_snapshot, "__self__", None), "override", None)
        self.gain_db = GAIN_SPEC.clamp(engine.config.gain_db)
        self.mute = False
        self.fx = None  # the fx analyzer (pimodule.device.fx.mode.FxAnalyzer), if installed
        self._models: list[str] = []  # the voices' names as last listed (status reads this, no disk)
        try:
            self.list_models()
        except (OSError, AttributeError):
            pass

    def controls(self) -> ParamTable:
        table = self.engine.controls()
        return table if table is not None else ParamTable([])

    def set_control(self, name: str, value: float) -> float:
        return self.engine.set_control(name, value)

    def set_mode(self, mode: str) -> None:
        self.engine.set_mode(mode)

    def list_models(self) -> list[str]:
        """The installed voices (reads the models directory: the OSC server calls it on its
        request thread, and status() shows the list as it was last read)."""
        self._models = self.loader.store.list("ddsp")
        return list(self._models)

    def load_model(self, name: str) -> None:
        """Queue the voice ``name`` (a name, never a path: the OSC layer refuses anything else)."""
        try:
            self.loader.store.resolve(name)
        except ModelFileError as err:
            raise KeyError(str(err)) from None
        self.loader.request(name)

    def set_cv(self, name: str, volts: float) -> None:
        """A CV value from outside (``/pimodule/cv/<name>``, Pd reading the Tedium itself): it
        replaces the ADC reading of that input from now on (the engine reads it at once)."""
        names = tuple(getattr(self.engine, "cv_names", ()))
        if name not in names:
            raise KeyError(f"no CV input {name!r} ({', '.join(names)})")
        if self.cv_override is None:
            raise KeyError("this daemon reads its CV itself (no external CV)")
        self.cv_override(name, float(volts))

    @staticmethod
    def _model_name(session) -> str:
        """The playing voice as model/list and model/load name it (its file's name in the store),
        else the name its metadata gives."""
        if session is None:
            return ""
        path = getattr(session, "path", None)
        if path is not None and str(path).endswith(".onnx"):
            return Path(path).name[: -len(".onnx")]
        return session.info.name

    def control_values(self) -> dict[str, float]:
        """The current model's controls as they are now, in their units (pots and OSC both)."""
        session = getattr(self.engine, "latest_session", None)
        values = getattr(session, "controls", None)
        if session is None or values is None:
            return {}
        return {s.name: round(float(values[i]), 4) for i, s in enumerate(session.info.controls)}

    def set_gain_db(self, gain_db: float) -> float:
        self.gain_db = GAIN_SPEC.clamp(gain_db)
        self.engine.guard.set_gain_db(self.gain_db)
        return self.gain_db

    def set_mute(self, mute: bool) -> None:
        self.mute = bool(mute)
        self.engine.guard.set_mute(self.mute)

    def set_fx_match(self, on: bool) -> None:
        """Matching mode: apply the estimated chain to input R (fx mode)."""
        self._matcher().matching = bool(on)

    def _matcher(self):
        matcher = self.engine.fx_matcher
        if matcher is None:
            raise KeyError("no effect estimator installed (models dir has no fx model)")
        return matcher

    def set_fx_hold(self, on: bool) -> None:
        """Hold the matched chain as it is (True) or let it follow the estimates again (False)."""
        self._matcher().hold(on)

    def set_fx_value(self, effect: str, name: str, value: float | str) -> float | str:
        """One value of the matched chain (``active``, ``mode`` or a parameter in its unit); the
        chain then holds. Returns what was applied (clamped to the spec)."""
        return self._matcher().set_value(effect, name, value)

    def fx_matched_messages(self) -> list[tuple[str, tuple]]:
        """The matched chain's targets as OSC messages under ``/pimodule/fx/matched``, then
        ``/pimodule/fx/matched/hold i``."""

        matcher = self._matcher()
        return [
            *osc_messages(matcher.matched(), "/pimodule/fx/matched"),
            ("/pimodule/fx/matched/hold", (int(matcher.held),)),
        ]

    def list_fx_models(self) -> list[str]:
        return self.loader.store.list("fx")

    def set_fx_model(self, name_or_path: str) -> None:
        """Use another effect estimator: checked here that it is one, loaded and checked further
        by the analyzer's thread (a later failure goes to ``fx.on_error``; the current one stays)."""
        if self.fx is None:
            raise KeyError("no effect estimator installed (fx.model is empty or failed at start)")
        try:
            path = self.loader.store.resolve(name_or_path)
        except ModelFileError as err:
            raise KeyError(str(err)) from None
        kind = self.loader.store.kind_of(path)
        if kind is None:
            raise KeyError(f"{path.name} is not a readable pimodule model")
        if kind != "fx":
            raise KeyError(f"{path.name} is a {kind} model, not an effect estimator")
        self.fx.request_estimator(path)

    def fx_messages(self) -> list[tuple[str, tuple]]:
        """The latest effect estimate as OSC messages (empty before the first estimate)."""

        return osc_messages(self.fx.latest) if self.fx is not None else []

    def status(self) -> dict:
        stats = self.runner.stats.summary(self.runner.sample_rate_hz)
        engine = self.engine
        session = engine.session
        checker = getattr(self.fx, "checker", None)
        return {
            "cpu_percent": round(stats["cpu_percent"], 2),
            "callback_p50_us": round(stats["p50_us"], 1),
            "callback_p99_us": round(stats["p99_us"], 1),
            "callback_max_us": round(stats["max_us"], 1),
            "xruns": stats["xruns"],
            "late_blocks": stats.get("late_blocks", 0),
            # the response split: deadline to the callback's start (the server and the system),
            # and the callback's own work; late blocks already late when their callback began
            "late_at_wake": stats.get("late_at_wake", 0),
            "callback_wake_p99_us": round(stats.get("wake_p99_us", 0.0), 1),
            "callback_work_p99_us": round(stats.get("work_p99_us", 0.0), 1),
            "exceptions": stats["exceptions"],
            "model": self._model_name(session),
            "mode": engine.mode,
            "gain_db": self.gain_db,
            "mute": int(self.mute),
            "models": list(self._models),
            "control": self.control_values(),
            "f0_hz": round(engine.last_f0_hz, 2),
            "loudness_db": round(engine.last_loudness_db, 2),
            "swaps": engine.n_swaps,
            "models_refused": self.loader.n_refused,
            "nonfinite_blocks": engine.guard.n_nonfinite_blocks,
            "rt": self.runner.rt_status,
            "backend": self.runner.backend,
            "cv": {k: round(v, 4) for k, v in self.cv_snapshot().items()},
            "analysis_underruns": engine.analysis.n_underruns,
            "fx_match": int(bool(engine.fx_matcher is not None and engine.fx_matcher.matching)),
            "fx_hold": int(bool(engine.fx_matcher is not None and engine.fx_matcher.held)),
            "fx_model": self.fx.name if self.fx is not None else "",
            "fx_inputs": self.fx.estimator.inputs if self.fx is not None else "",
            "fx_estimates": self.fx.n_runs if self.fx is not None else 0,
            "fx_estimate_ms": round(self.fx.last_run_ms, 2) if self.fx is not None else 0.0,
            "fx_lag_ms": round(self.fx.lag_ms, 1) if self.fx is not None else 0.0,
            "fx_checks": checker.n_checks if checker is not None else 0,
            "fx_check_ms": round(checker.last_check_ms, 1) if checker is not None else 0.0,
        }


class PotMapper:
    """Pots → model controls through the spec's ``from_unit``; a pot acts once it has moved
    (``pickup``), so OSC values are not overwritten by a pot nobody touches."""

    def __init__(
        self,
        engine,
        cv_values,
        cv_names: Sequence[str],
        pots: Sequence[tuple[str, str]],
        *,
        volts_range: tuple[float, float],
        pickup: float = 0.01,
        ready: Callable[[], bool] | None = None,
    ):
        self.engine = engine
        self.cv_values = cv_values
        # the reference is the first value the CV reader published, not the array's initial zeros:
        # otherwise the real position arriving a poll later counts as a move and takes over
        self.ready = ready
        self.volts_range = volts_range
        self.pickup = pickup
        self._pots = [(cv_names.index(pot), control) for pot, control in pots if control and pot in cv_names]
        self._last = [math.nan] * len(self._pots)

    def unit_of(self, volts: float) -> float:
        lo, hi = self.volts_range
        return min(max((volts - lo) / (hi - lo), 0.0), 1.0)

    def poll(self) -> int:
        """Apply pots that moved; returns how many controls were set."""
        if self.ready is not None and not self.ready():
            return 0
        table = self.engine.controls()
        n_set = 0
        for k, (index, control) in enumerate(self._pots):
            u = self.unit_of(float(self.cv_values[index]))
            if math.isnan(self._last[k]):
                self._last[k] = u  # the first reading is the reference, not a move
                continue
            if abs(u - self._last[k]) < self.pickup or table is None or control not in table:
                continue
            self._last[k] = u
            try:
                self.engine.set_control(control, table[control].from_unit(u))
                n_set += 1
            except (KeyError, ValueError):
                pass
        return n_set


@dataclass(frozen=True)
class Note:
    volts: float  # CV1, 1 V/oct
    seconds: float
    gate: bool = True
    loudness_v: float = 4.0  # CV2


# A short phrase (C major arpeggio up and down) for demos and the simulated CV source.
DEMO_MELODY = tuple(
    Note(semitones / 12.0, 0.3, True, 3.0 + 0.5 * (i % 3))
    for i, semitones in enumerate((0, 4, 7, 12, 16, 12, 7, 4, -5, 0))
) + (Note(0.0, 0.3, False, 0.0),)


class SimulatedCV:
    """A clearly simulated CV source: plays a CV melody into a FakeMCP3208 (through the Tedium's
    real encoding: volts → inverted 12-bit code) and the gate into a FakeGpio trigger pin.

    Time is the audio clock (``clock_s()``, e.g. samples played / rate), so the melody keeps its
    rhythm whether the audio runs on a device, a simulated clock, or JACK freewheel.
    """

    def __init__(
        self,
        fake_adc,
        adc_config,
        calibrations: dict,
        *,
        clock_s: Callable[[], float],
        melody: Sequence[Note] = DEMO_MELODY,
        gpio=None,
        gate_pin: int | None = None,
        poll_hz: float = 500.0,
    ):
        self.fake_adc = fake_adc
        self.adc = adc_config
        self.calibrations = calibrations
        self.clock_s = clock_s
        self.melody = tuple(melody)
        self.period_s = sum(n.seconds for n in self.melody)
        self.gpio = gpio
        self.gate_pin = gate_pin
        self.poll_s = 1.0 / poll_hz
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gate: bool | None = None
        self.note_index = -1

    def set_volts(self, name: str, volts: float) -> None:
        """Put ``volts`` at a jack: the code the ADC would read there (inverse of the Tedium chain)."""
        ch = self.adc.channel(name)
        cal = self.calibrations[name]
        value = (volts - cal.offset_v) / cal.scale_v_per_step
        value = min(max(value, 0.0), float(self.adc.max_code))
        self.fake_adc.set_code(ch.channel, int(round(self.adc.invert_from - value)))

    def note_at(self, t_s: float) -> tuple[int, Note]:
        t = t_s % self.period_s if self.period_s > 0 else 0.0
        for i, note in enumerate(self.melody):
            if t < note.seconds:
                return i, note
            t -= note.seconds
        return len(self.melody) - 1, self.melody[-1]

    def update(self) -> None:
        log_ = getattr(self.fake_adc, "transactions", None)
        if log_ is not None and len(log_) > 1024:  # the fake logs every transfer: keep it bounded
            del log_[:]
        i, note = self.note_at(self.clock_s())
        if i != self.note_index:
            self.note_index = i
            self.set_volts("cv1", note.volts)
            self.set_volts("cv2", note.loudness_v)
        if self.gpio is not None and self.gate_pin is not None and note.gate != self._gate:
            self._gate = note.gate
            self.gpio.drive(self.gate_pin, not note.gate)  # trigger inputs are active low

    def start(self) -> None:
        if self._thread is None:
            for name in ("cv3", "pot1", "pot2", "pot3"):  # untouched jacks and pots sit at 0 V
                if name in self.adc.names and name in self.calibrations:
                    self.set_volts(name, 0.0)
            self.update()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="pimodule-simcv", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.update()
            except Exception:  # noqa: BLE001 - a demo source must not die silently
                log.exception("simulated CV failed")
                time.sleep(0.1)
