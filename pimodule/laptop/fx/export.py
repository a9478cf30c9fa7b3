"""Export a trained estimator to one ONNX file (kind ``fx``, fixed analysis window).

``pimodule export``-style entry (``configure``/``main``): ``RUN --out NAME.onnx``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import torch

from pimodule.core.fx_specs import DISTORTION_MODES, EFFECT_NAMES, EFFECTS_VERSION, SPECS
from pimodule.core.modelfile import FORMAT_VERSION, MIN_OPSET, ModelInfo
from pimodule.core.params import ParamSpec, ParamTable
from pimodule.device.fx.estimator import KEY_CHAIN, KEY_CONDITIONING, KEY_EFFECTS, OnnxEstimator
from pimodule.laptop.fx.chain import PARAM_SLICES
from pimodule.laptop.fx.model import WINDOW_S, Estimator, analysis_samples
from pimodule.laptop.fx.run import load_run

log = logging.getLogger(__name__)


class _Wrapper(torch.nn.Module):
    def __init__(self, model: Estimator):
        super().__init__()
        self.model = model

    def forward(self, wet: torch.Tensor, other: torch.Tensor | None = None):
        chain, _, _ = self.model(wet, other)
        return chain.active, chain.mode_weights, chain.unit


def chain_controls() -> ParamTable:
    """All chain parameters as one table, names ``effect.param``, in the ``unit`` vector's order."""
    specs = []
    for name in EFFECT_NAMES:
        for s in SPECS[name]:
            specs.append(ParamSpec(f"{name}.{s.name}", s.unit, s.min, s.max, s.default, s.scale, s.doc))
    return ParamTable(specs)


def chain_layout() -> list[dict]:
    return [
        {
            "effect": n,
            "params": SPECS[n].names,
            "start": PARAM_SLICES[n].start,
            "modes": list(DISTORTION_MODES) if n == "distortion" else [],
        }
        for n in EFFECT_NAMES
    ]


def share_constants(graph) -> int:
    """Keep one of each set of equal ``Constant`` nodes (tracing a module called twice writes its
    constants twice); uses of the others read the first. Returns how many were dropped."""
    from onnx import numpy_helper

    first: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    keep = []
    for node in graph.node:
        attrs = list(node.attribute)
        if node.op_type == "Constant" and len(attrs) == 1 and attrs[0].name == "value":
            t = attrs[0].t
            key = (t.data_type, tuple(t.dims), numpy_helper.to_array(t).tobytes())
            if key in first:
                rename[node.output[0]] = first[key]
                continue
            first[key] = node.output[0]
        keep.append(node)
    for node in keep:
        node.input[:] = [rename.get(name, name) for name in node.input]
    del graph.node[:]
    graph.node.extend(keep)
    return len(rename)


def export_onnx(
    model: Estimator,
    out: Path,
    name: str = "fx",
    provenance: dict | None = None,
    opset: int = MIN_OPSET,
    effects_version: int = EFFECTS_VERSION,
) -> Path:
    """``model`` as one ONNX file with its metadata; ``effects_version``: the version of the
    effects' definition it was trained for (a run's checkpoint says; see ``EFFECTS_VERSION``)."""
    import onnx

    cfg = model.config
    window = analysis_samples(cfg, WINDOW_S)
    model.eval()
    wrapper = _Wrapper(model)
    wet = torch.zeros(1, window)
    args = (wet,) if cfg.conditioning == "blind" else (wet, torch.zeros(1, window))
    inputs = ["wet"] if cfg.conditioning == "blind" else ["wet", "other"]
    model.export_form(True)  # DFTs as matmuls, dense histograms
    try:
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.onnx"
            torch.onnx.export(
                wrapper,
                args,
                str(raw),
                input_names=inputs,
                output_names=["active", "mode", "unit"],
                opset_version=opset,
                dynamic_axes={k: {0: "batch"} for k in inputs + ["active", "mode", "unit"]},
                dynamo=False,
            )
            proto = onnx.load(str(raw))
    finally:
        model.export_form(False)
    share_constants(proto.graph)  # the frontend runs once per input: one DFT matrix, not two
    info = ModelInfo(
        kind="fx",
        name=name,
        sample_rate=cfg.sample_rate,
        block_size=window,
        controls=chain_controls(),
        state=(),
        version=FORMAT_VERSION,
        latency_samples=window,
        provenance=provenance or {},
    )
    meta = info.to_metadata()
    meta[KEY_CHAIN] = json.dumps(chain_layout())
    meta[KEY_CONDITIONING] = cfg.conditioning
    meta[KEY_EFFECTS] = str(int(effects_version))
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(proto)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(out), save_as_external_data=False)
    OnnxEstimator(out)  # validates the metadata round trip
    return out


def main(args: argparse.Namespace) -> int:
    model, config, meta = load_run(args.run, args.checkpoint)
    provenance = {
        "run": str(args.run),
        "objective": config.objective,
        "conditioning": config.model.conditioning,
        "steps": meta.get("step"),
        "data": list(config.kinds),
        "seconds_per_step": meta.get("seconds_per_step"),
        "train_seconds": meta.get("train_seconds"),
    }
    # a checkpoint saved before runs recorded it was trained for the first version of the effects
    effects_version = int(meta.get("effects_version", 1))
    out = export_onnx(model, args.out, args.name or args.out.stem, provenance, effects_version=effects_version)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
