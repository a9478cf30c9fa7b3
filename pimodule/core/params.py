"""Parameter specs: the one table that maps [0, 1] to physical units.

Networks output [0, 1]; a :class:`ParamSpec` maps that to physical units (``lin`` or ``log``).
CV, OSC, PureData sliders and training all go through the same table. No torch here: the
functions work on floats and numpy arrays, and on torch tensors too (they only use arithmetic,
``clip``/``clamp`` and ``log``/``exp`` of the array's own namespace).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SCALES = ("lin", "log")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name (with its unit in the name), unit, range, default and scale."""

    name: str
    unit: str
    min: float
    max: float
    default: float
    scale: str = "lin"
    doc: str = ""

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"{self.name}: scale must be one of {SCALES}, not {self.scale!r}")
        if not self.min < self.max:
            raise ValueError(f"{self.name}: min {self.min} must be below max {self.max}")
        if self.scale == "log" and self.min <= 0:
            raise ValueError(f"{self.name}: a log scale needs min > 0, got {self.min}")
        if not self.min <= self.default <= self.max:
            raise ValueError(f"{self.name}: default {self.default} outside [{self.min}, {self.max}]")

    # -- mapping -------------------------------------------------------------------------------
    def from_unit(self, u: Any) -> Any:
        """[0, 1] → physical units (values outside [0, 1] are clipped)."""
        u = _clip(u, 0.0, 1.0)
        if self.scale == "lin":
            return self.min + (self.max - self.min) * u
        lo, hi = math.log(self.min), math.log(self.max)
        return _exp(lo + (hi - lo) * u)

    def to_unit(self, value: Any) -> Any:
        """Physical units → [0, 1] (values outside the range are clipped)."""
        value = _clip(value, self.min, self.max)
        if self.scale == "lin":
            return (value - self.min) / (self.max - self.min)
        lo, hi = math.log(self.min), math.log(self.max)
        return (_log(value) - lo) / (hi - lo)

    def clamp(self, value: float) -> float:
        """Clamp a physical value into range; NaN/inf are refused with ValueError."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{self.name}: {value} is not a finite number")
        return min(max(value, self.min), self.max)

    def to_dict(self) -> dict:
        return asdict(self)


def _clip(x: Any, lo: float, hi: float) -> Any:
    if isinstance(x, (int, float)):
        return min(max(float(x), lo), hi)
    if hasattr(x, "clamp"):  # torch tensor, without importing torch
        return x.clamp(lo, hi)
    return np.clip(x, lo, hi)


def _exp(x: Any) -> Any:
    if isinstance(x, float):
        return math.exp(x)
    return x.exp() if hasattr(x, "exp") and not isinstance(x, np.ndarray) else np.exp(x)


def _log(x: Any) -> Any:
    if isinstance(x, float):
        return math.log(x)
    return x.log() if hasattr(x, "log") and not isinstance(x, np.ndarray) else np.log(x)


class ParamTable:
    """An ordered, immutable table of specs with lookup by name."""

    def __init__(self, specs: Iterable[ParamSpec]):
        self._specs: tuple[ParamSpec, ...] = tuple(specs)
        names = [s.name for s in self._specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names in {names}")
        self._index = {s.name: i for i, s in enumerate(self._specs)}

    def __iter__(self):
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __getitem__(self, name: str) -> ParamSpec:
        try:
            return self._specs[self._index[name]]
        except KeyError:
            raise KeyError(f"unknown parameter {name!r}; known: {', '.join(self.names)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        self[name]  # raises a clear KeyError
        return self._index[name]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._specs]

    def defaults(self) -> np.ndarray:
        return np.array([s.default for s in self._specs], dtype=np.float32)

    def clamp_vector(self, values: Sequence[float]) -> np.ndarray:
        return np.array([s.clamp(v) for s, v in zip(self._specs, values)], dtype=np.float32)

    def from_mapping(self, values: Mapping[str, float]) -> np.ndarray:
        """A full vector from defaults, overridden (and clamped) by the given names."""
        out = self.defaults()
        for name, v in values.items():
            out[self.index(name)] = self[name].clamp(v)
        return out

    def to_json(self) -> str:
        return json.dumps([s.to_dict() for s in self._specs])

    @classmethod
    def from_json(cls, text: str) -> ParamTable:
        return cls(ParamSpec(**d) for d in json.loads(text))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParamTable) and self._specs == other._specs

    def __repr__(self) -> str:
        return f"ParamTable({self.names})"
