"""What the OSC server (and anything else that controls the module) talks to: the ``Controller``.

The daemon implements :class:`Controller`; :class:`pimodule.device.io.osc.OscServer` calls it from its
own threads, never from the audio callback. Methods return quickly: ``load_model`` starts a load
in the background (refusing at once only what is obviously wrong) and reports later failures
through ``OscServer.notify_error``. Errors are raised as ``KeyError`` (unknown control/model) or
``ValueError`` (bad value/mode); the server turns them into ``/pimodule/error`` replies. Models
are named (``[a-z0-9][a-z0-9_-]{0,63}``), never given as paths: the server checks the name
before a controller sees it.

:class:`MemoryController` is a small, real controller over a :class:`~pimodule.core.params.ParamTable`
(state in memory, no audio, an fx chain that only remembers values): tests,
``python -m pimodule.device.io.osc_tool --serve`` and Pd patch work.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

from pimodule.core.controls import CV_NAMES, DDSP_CONTROLS, GAIN_SPEC, MODES
from pimodule.core.fx_specs import DISTORTION_MODES, SPECS
from pimodule.core.params import ParamTable


class Controller(Protocol):
    """The daemon's control surface, in physical units."""

    def controls(self) -> ParamTable:
        """The current model's control table (changes when a model is swapped)."""

    def set_control(self, name: str, value: float) -> float:
        """Set a control; returns the value applied (clamped to the spec). KeyError if unknown."""

    def set_mode(self, mode: str) -> None:
        """One of MODES; ValueError otherwise."""

    def load_model(self, name: str) -> None:
        """Start loading the model ``name`` (from list_models()); KeyError if there is none. Called
        on the OSC server's request thread: it may read the models directory, but must not load
        or validate the file itself (hand that to the loader's queue, newest request first)."""

    def list_models(self) -> list[str]: ...

    def set_gain_db(self, gain_db: float) -> float:
        """Output gain; returns the value applied (clamped to GAIN_SPEC)."""

    def set_mute(self, mute: bool) -> None: ...

    def set_cv(self, name: str, volts: float) -> None:
        """Optional. A CV value from outside (Pd reading the Tedium itself): overrides the ADC
        reading of that channel (names as in hardware/terminal_tedium.toml). KeyError if unknown.
        A controller without this method answers /pimodule/cv/... with an error."""

    def status(self) -> dict:
        """Flat or nested dict of str -> float | int | str | list of str. At least: cpu_percent,
        callback_p99_us, xruns, model, mode, gain_db, mute, swaps (models swapped in so far),
        models (the installed voices' names), control: {name: value in its unit, ...} (the
        current model's controls as they are now), cv: {cv1: volts, ...}. Called at the status
        rate on the OSC thread, off the callback: no file access here."""


def estimate_messages(estimate: dict, prefix: str = "/pimodule/fx") -> list[tuple[str, tuple]]:
    """An estimate (``{effect: {active, probability?, mode?, params}}``) as OSC messages, as the
    daemon's fx mode sends them (docs/osc.md)."""
    out = []
    for effect, item in estimate.items():
        base = f"{prefix}/{effect}"
        out.append((f"{base}/active", (int(bool(item["active"])),)))
        if "probability" in item:
            out.append((f"{base}/probability", (float(item["probability"]),)))
        if "mode" in item:
            out.append((f"{base}/mode", (str(item["mode"]),)))
        out += [(f"{base}/{name}", (float(value),)) for name, value in item["params"].items()]
    return out


class MemoryController:
    """A real controller with its state in memory (no audio): values, mode, model, gain, mute,
    external CV, and an fx chain that remembers what it is set to (estimates come from
    ``fx_estimate``, which tests set)."""

    def __init__(
        self,
        table: ParamTable = DDSP_CONTROLS,
        models: dict[str, ParamTable] | None = None,
        model_dir: Path | None = None,
        fx_models: tuple[str, ...] = ("fx", "fx-dry"),
    ):
        self._models = dict(models or {"default": table})
        self.model_dir = model_dir
        self.model = next(iter(self._models))
        self._table = table
        self.values = {s.name: s.default for s in table}
        self.mode = "synth"
        self.gain_db = GAIN_SPEC.default
        self.mute = False
        self.swaps = 0
        self.cv: dict[str, float] = {n: 0.0 for n in CV_NAMES}
        self.extra_status: dict = {}  # tests add fields (cpu ...)
        self.fx_models = tuple(fx_models)
        self.fx_model = self.fx_models[0] if self.fx_models else ""
        self.fx_match = False
        self.fx_hold = False
        self.fx_estimate: dict = {}  # the latest estimate (tests set it)
        self.fx_chain = {
            effect: {"active": False, "params": {s.name: s.default for s in specs}} for effect, specs in SPECS.items()
        }
        self.fx_chain["distortion"]["mode"] = DISTORTION_MODES[0]

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

    def load_model(self, name: str) -> None:
        if name not in self.list_models():
            raise KeyError(f"no model {name!r}")
        self.model = name
        self._table = self._models.get(name, self._table)
        self.values = {s.name: s.default for s in self._table}
        self.swaps += 1

    def set_gain_db(self, gain_db: float) -> float:
        self.gain_db = GAIN_SPEC.clamp(gain_db)
        return self.gain_db

    def set_mute(self, mute: bool) -> None:
        self.mute = bool(mute)

    def set_cv(self, name: str, volts: float) -> None:
        if name not in self.cv:
            raise KeyError(f"no CV input {name!r}")
        self.cv[name] = float(volts)

    # -- fx mode (values only: nothing is estimated or played) --------------------------------
    def set_fx_match(self, on: bool) -> None:
        self.fx_match = bool(on)

    def set_fx_hold(self, on: bool) -> None:
        self.fx_hold = bool(on)

    def set_fx_value(self, effect: str, name: str, value: float | str) -> float | str:
        if effect not in self.fx_chain:
            raise KeyError(f"no effect {effect!r} ({', '.join(self.fx_chain)})")
        item = self.fx_chain[effect]
        if name == "active":
            if isinstance(value, str):
                raise ValueError("active needs a number")
            item["active"] = bool(value)
            applied: float | str = float(bool(value))
        elif name == "mode":
            if effect != "distortion" or value not in DISTORTION_MODES:
                raise ValueError(f"mode is the distortion's curve, one of {', '.join(DISTORTION_MODES)}")
            item["mode"] = applied = str(value)
        else:
            specs = SPECS[effect]
            if name not in specs:
                raise KeyError(f"{effect} has no parameter {name!r}")
            if isinstance(value, str):
                raise ValueError(f"{name} needs a number")
            item["params"][name] = applied = float(specs[name].clamp(value))
        self.fx_hold = True
        return applied

    def fx_matched_messages(self) -> list[tuple[str, tuple]]:
        return [
            *estimate_messages(self.fx_chain, "/pimodule/fx/matched"),
            ("/pimodule/fx/matched/hold", (int(self.fx_hold),)),
        ]

    def list_fx_models(self) -> list[str]:
        return list(self.fx_models)

    def set_fx_model(self, name: str) -> None:
        if name not in self.fx_models:
            raise KeyError(f"no effect estimator {name!r}")
        self.fx_model = name

    def fx_messages(self) -> list[tuple[str, tuple]]:
        return estimate_messages(self.fx_estimate)

    def status(self) -> dict:
        out = {
            "cpu_percent": 0.0,
            "callback_p99_us": 0.0,
            "xruns": 0,
            "model": self.model,
            "mode": self.mode,
            "gain_db": self.gain_db,
            "mute": int(self.mute),
            "swaps": self.swaps,
            "models": self.list_models(),
            "control": dict(self.values),
            "cv": dict(self.cv),
            "fx_model": self.fx_model,
            "fx_match": int(self.fx_match),
            "fx_hold": int(self.fx_hold),
        }
        out.update(self.extra_status)
        return out


def is_finite_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
