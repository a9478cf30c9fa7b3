"""The model-file contract: one ONNX file, metadata keys, state description. No torch.

A streaming model takes frame inputs (for ``ddsp``: ``f0_hz`` and ``loudness_db``, each
``(batch, n_frames)``), a ``controls`` vector ``(batch, n_controls)`` in physical units, and its
state tensors; it returns ``audio`` ``(batch, n_frames * block_size)`` and the next state, each
state output named ``<state name>_next``. The runtime owns the state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pimodule.core.params import ParamTable

FORMAT_VERSION = "1"
KINDS = ("ddsp", "fx")
MIN_OPSET = 17
NEXT_SUFFIX = "_next"

KEY_KIND = "pimodule.kind"
KEY_SAMPLE_RATE = "pimodule.sample_rate"
KEY_BLOCK_SIZE = "pimodule.block_size"
KEY_CONTROLS = "pimodule.controls"
KEY_STATE = "pimodule.state"
KEY_VERSION = "pimodule.version"
KEY_PROVENANCE = "pimodule.provenance"
KEY_NAME = "pimodule.name"
KEY_LATENCY = "pimodule.latency_samples"
REQUIRED_KEYS = (KEY_KIND, KEY_SAMPLE_RATE, KEY_BLOCK_SIZE, KEY_CONTROLS, KEY_STATE, KEY_VERSION)


class ModelFileError(ValueError):
    """A model file that does not meet the contract (message says what is wrong)."""


@dataclass(frozen=True)
class StateSpec:
    name: str
    shape: tuple[int, ...]  # with batch 1
    dtype: str  # numpy dtype name
    init: float = 0.0

    def initial(self) -> np.ndarray:
        return np.full(self.shape, self.init, dtype=np.dtype(self.dtype))

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "init": self.init}


@dataclass(frozen=True)
class ModelInfo:
    """What the metadata of a model file says."""

    kind: str
    name: str
    sample_rate: int
    block_size: int
    controls: ParamTable
    state: tuple[StateSpec, ...]
    version: str
    latency_samples: int
    provenance: dict

    def initial_state(self) -> dict[str, np.ndarray]:
        return {s.name: s.initial() for s in self.state}

    def require_voice(self, sample_rate: int, block_size: int) -> None:
        """ModelFileError unless this is a voice (kind ``ddsp``) at this rate and model block."""
        if self.kind != "ddsp":
            raise ModelFileError(f"{self.name}: a {self.kind!r} model cannot be the voice (needs 'ddsp')")
        if self.sample_rate != sample_rate:
            raise ModelFileError(f"{self.name}: runs at {self.sample_rate} Hz, the engine at {sample_rate} Hz")
        if self.block_size != block_size:
            raise ModelFileError(f"{self.name}: block of {self.block_size} samples, the engine uses {block_size}")

    def to_metadata(self) -> dict[str, str]:
        return {
            KEY_KIND: self.kind,
            KEY_NAME: self.name,
            KEY_SAMPLE_RATE: str(self.sample_rate),
            KEY_BLOCK_SIZE: str(self.block_size),
            KEY_CONTROLS: self.controls.to_json(),
            KEY_STATE: json.dumps([s.to_dict() for s in self.state]),
            KEY_VERSION: self.version,
            KEY_LATENCY: str(self.latency_samples),
            KEY_PROVENANCE: json.dumps(self.provenance, sort_keys=True),
        }


def parse_metadata(meta: Mapping[str, str], source: str = "model") -> ModelInfo:
    """Validate and parse ``metadata_props``; raise :class:`ModelFileError` with a clear reason."""
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelFileError(f"{source}: not a pimodule model file (missing metadata {missing})")
    kind = meta[KEY_KIND]
    if kind not in KINDS:
        raise ModelFileError(f"{source}: unknown model kind {kind!r} (expected one of {KINDS})")
    if meta[KEY_VERSION] != FORMAT_VERSION:
        raise ModelFileError(
            f"{source}: model format version {meta[KEY_VERSION]!r}, this runtime reads {FORMAT_VERSION!r}"
        )
    try:
        sample_rate = int(meta[KEY_SAMPLE_RATE])
        block_size = int(meta[KEY_BLOCK_SIZE])
        controls = ParamTable.from_json(meta[KEY_CONTROLS])
        state = tuple(
            StateSpec(d["name"], tuple(int(n) for n in d["shape"]), d["dtype"], float(d.get("init", 0.0)))
            for d in json.loads(meta[KEY_STATE])
        )
        provenance = json.loads(meta.get(KEY_PROVENANCE, "{}"))
        latency = int(meta.get(KEY_LATENCY, "0"))
    except (ValueError, TypeError, KeyError) as err:
        raise ModelFileError(f"{source}: malformed pimodule metadata: {err}") from err
    if not 8000 <= sample_rate <= 192000 or block_size <= 0:
        raise ModelFileError(f"{source}: implausible sample_rate {sample_rate} / block_size {block_size}")
    return ModelInfo(
        kind=kind,
        name=meta.get(KEY_NAME, Path(source).stem),
        sample_rate=sample_rate,
        block_size=block_size,
        controls=controls,
        state=state,
        version=meta[KEY_VERSION],
        latency_samples=latency,
        provenance=provenance,
    )
