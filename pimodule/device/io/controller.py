"""What the OSC server (and anything else that controls the module) talks to: the ``Controller``.

The daemon implements :class:`Controller`; :class:`pimodule.device.io.osc.OscServer` calls it from its
own thread, never from the audio callback. Methods return quickly: ``load_model`` starts a load
in the background (refusing at once only what is obviously wrong) and reports later failures
through ``OscServer.notify_error``. Errors are raised as ``KeyError`` (unknown control/model) or
``ValueError`` (bad value/mode); the server turns them into ``/pimodule/error`` replies.

:class:`MemoryController` is a small, real controller over a :class:`~pimodule.core.params.ParamTable`
(state in memory, no audio): tests, ``python -m pimodule.device.io.osc --serve`` and Pd patch work.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

from pimodule.core.controls import CV_NAMES, DDSP_CONTROLS, GAIN_SPEC, MODES
from pimodule.core.params import ParamTable


class Controller(Protocol):
    """The daemon's control surface, in physical units."""

    def controls(self) -> ParamTable:
        """The current model's control table (changes when a model is swapped)."""

    def set_control(self, name: str, value: float) -> float:
        """Set a control; returns the value applied (clamped to the spec). KeyError if unknown."""

    def set_mode(self, mode: str) -> None:
        """One of MODES; ValueError otherwise."""

    def load_model(self, name_or_path: str) -> None:
        """Start loading a model (name from list_models() or a path). KeyError if not found."""

    def list_models(self) -> list[str]: ...

    def set_gain_db(self, gain_db: float) -> float:
        """Output gain; returns the value applied (clamped to GAIN_SPEC)."""

    def set_mute(self, mute: bool) -> None: ...

    def set_cv(self, name: str, volts: float) -> None:
        """Optional. A CV value from outside (Pd reading the Tedium itself): overrides the ADC
        reading of that channel (names as in hardware/terminal_tedium.toml). KeyError if unknown.
        A controller without this method answers /pimodule/cv/... with an error."""

    def status(self) -> dict:
        """Flat or nested dict of str -> float | int | str (e.g. cpu_percent, callback_p99_us,
        xruns, model, mode, cv: {cv1: volts, ...}). Called at the status rate, off the callback."""


class MemoryController:
    """A real controller with its state in memory (no audio): values, mode, model, gain, mute."""

    def __init__(
        self,
        table: ParamTable = DDSP_CONTROLS,
        models: dict[str, ParamTable] | None = None,
        model_dir: Path | None = None,
    ):
        self._models = dict(models or {"default": table})
        self.model_dir = model_dir
        self.model = next(iter(self._models))
        self._table = table
        self.values = {s.name: s.default for s in table}
        self.mode = "synth"
        self.gain_db = GAIN_SPEC.default
        self.mute = False
        self.cv: dict[str, float] = {n: 0.0 for n in CV_NAMES}
        self.extra_status: dict = {}  # tests add fields (cpu ...)

    def controls(self) -> ParamTable:
        return self._table

    def set_control(self, name: str, value: float) -> float:
        applied = self._table[name].clamp(value)  # KeyError / ValueError (NaN)
        self.values[name] = applied
        return applied

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.mode = mode

    def list_models(self) -> list[str]:
        names = set(self._models)
        if self.model_dir is not None and self.model_dir.is_dir():
            names |= {p.stem for p in self.model_dir.glob("*.onnx")}
        return sorted(names)

    def load_model(self, name_or_path: str) -> None:
        stem = Path(name_or_path).stem if name_or_path.endswith(".onnx") else name_or_path
        if stem not in self.list_models():
            raise KeyError(f"no model {name_or_path!r}")
        self.model = stem
        self._table = self._models.get(stem, self._table)
        self.values = {s.name: s.default for s in self._table}

    def set_gain_db(self, gain_db: float) -> float:
        self.gain_db = GAIN_SPEC.clamp(gain_db)
        return self.gain_db

    def set_mute(self, mute: bool) -> None:
        self.mute = bool(mute)

    def set_cv(self, name: str, volts: float) -> None:
        if name not in self.cv:
            raise KeyError(f"no CV input {name!r}")
        self.cv[name] = float(volts)

    def status(self) -> dict:
        out = {
            "cpu_percent": 0.0,
            "callback_p99_us": 0.0,
            "xruns": 0,
            "model": self.model,
            "mode": self.mode,
            "gain_db": self.gain_db,
            "mute": int(self.mute),
            "cv": dict(self.cv),
        }
        out.update(self.extra_status)
        return out


def is_finite_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
