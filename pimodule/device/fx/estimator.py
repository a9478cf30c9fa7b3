"""The exported estimator (kind ``fx``) run by onnxruntime: torch-free, for the module and CLIs.

Inputs ``wet`` (and ``other`` for dry/reference-conditioned models) ``(batch, window)`` float32;
outputs ``active`` ``(batch, n_effects)`` probabilities, ``mode`` ``(batch, n_modes)`` and
``unit`` ``(batch, n_params)`` in [0, 1]. The metadata's ``pimodule.controls`` table (names
``effect.param``) maps ``unit`` to physical units; ``pimodule.fx.chain`` lists the effects in order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pimodule.core.modelfile import ModelFileError, parse_metadata

KEY_CHAIN = "pimodule.fx.chain"
KEY_CONDITIONING = "pimodule.fx.conditioning"


class OnnxEstimator:
    def __init__(self, path: Path, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ModelFileError(f"{path}: not a loadable ONNX model ({err})") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = parse_metadata(meta, str(path))
        if self.info.kind != "fx":
            raise ModelFileError(f"{path}: model kind {self.info.kind!r}, expected 'fx'")
        self.chain = json.loads(meta.get(KEY_CHAIN, "[]"))
        self.conditioning = meta.get(KEY_CONDITIONING, "blind")
        self.sample_rate = self.info.sample_rate
        self.window = self.info.block_size
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, wet: np.ndarray, other: np.ndarray | None = None):
        """``(batch, window)`` arrays -> ``(active, mode, unit)`` numpy arrays."""
        feeds = {"wet": np.ascontiguousarray(wet, dtype=np.float32)}
        if "other" in self.input_names:
            if other is None:
                raise ValueError(f"this estimator is {self.conditioning}-conditioned: needs a second signal")
            feeds["other"] = np.ascontiguousarray(other, dtype=np.float32)
        active, mode, unit = self.session.run(["active", "mode", "unit"], feeds)
        return active, mode, unit

    def describe(self, active: np.ndarray, mode: np.ndarray, unit: np.ndarray) -> dict:
        """One example's estimate as ``{effect: {"active", "probability", "params", ("mode")}}``."""
        out, col = {}, 0
        specs = list(self.info.controls)
        for i, entry in enumerate(self.chain):
            params = {}
            for name in entry["params"]:
                spec = specs[col]
                params[name] = float(spec.from_unit(float(unit[col])))
                col += 1
            p = float(active[i])
            item = {"active": p >= 0.5, "probability": round(p, 4), "params": params}
            if entry.get("modes"):
                item["mode"] = entry["modes"][int(np.argmax(mode))]
            out[entry["effect"]] = item
        return out
