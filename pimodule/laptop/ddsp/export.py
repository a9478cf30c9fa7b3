"""Export a DDSP voice to one self-contained streaming ONNX file (``pimodule export``; an
effect-estimator run folder is handed to pimodule.laptop.fx.export).

The graph runs one frame (``block_size`` = hop samples) per call: control frame + state in,
audio block + next state out; the runtime owns the state. Metadata follows pimodule.core.modelfile.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import subprocess
import warnings
from pathlib import Path

import onnx
import torch

from pimodule.core import modelfile
from pimodule.core.controls import DDSP_CONTROLS
from pimodule.laptop.ddsp.frame import FrameVoice
from pimodule.laptop.ddsp.model import DDSPConfig, DDSPVoice
from pimodule.laptop.ddsp.recipe import load_run
from pimodule.laptop.ddsp.train import summarize_info

log = logging.getLogger(__name__)
OPSET = 18  # onnxscript's exporter emits 18; the contract asks for >= 17
FRAME_INPUTS = ("f0_hz", "loudness_db", "controls")


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def model_info(model: DDSPVoice, name: str, provenance: dict) -> modelfile.ModelInfo:
    c = model.config
    return modelfile.ModelInfo(
        kind="ddsp",
        name=name,
        sample_rate=c.sample_rate,
        block_size=c.hop_size,
        controls=DDSP_CONTROLS,
        state=model.state_specs(),
        version=modelfile.FORMAT_VERSION,
        # One hop of control ramp plus half the noise FIR (linear phase).
        latency_samples=c.hop_size + (c.n_noise_bands - 1),
        provenance={"commit": git_commit(), "config": c.to_dict(), **provenance},
    )


def export_onnx(model: DDSPVoice, path: str | Path, *, name: str, provenance: dict | None = None) -> Path:
    """Write ``model`` as a streaming ONNX file with pimodule metadata; returns the path."""
    model = model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = model.initial_state(1)
    args = (torch.full((1, 1), 220.0), torch.full((1, 1), -30.0), model.controls_tensor(1)) + state
    specs = model.state_specs()
    input_names = list(FRAME_INPUTS) + [s.name for s in specs]
    output_names = ["audio"] + [s.name + modelfile.NEXT_SUFFIX for s in specs]
    buf = io.BytesIO()
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    graph = FrameVoice(model).eval()  # the same function for one frame, fewer and cheaper nodes
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph,
            args,
            input_names=input_names,
            output_names=output_names,
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    program.save(buf)
    proto = onnx.load_model_from_string(buf.getvalue())
    # the exporter also lists the weights' shapes as value_info: redundant, and tools that rewrite
    # weights (onnxruntime's quantizer transposes them) then fail shape inference on the stale entry
    weights = {init.name for init in proto.graph.initializer}
    shapes = [vi for vi in proto.graph.value_info if vi.name not in weights]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(shapes)
    info = model_info(model, name, provenance or {})
    del proto.metadata_props[:]
    for key, value in info.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "pimodule"
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    log.info("wrote %s (%.0f kB)", path, path.stat().st_size / 1024)
    return path


def build_test_model(path: str | Path, seed: int = 0, config: DDSPConfig | None = None) -> Path:
    """A small untrained but valid DDSP model file, for tests and fixtures."""
    torch.manual_seed(seed)
    model = DDSPVoice(config or DDSPConfig(hidden_size=32))
    return export_onnx(model, path, name=f"test-{seed}", provenance={"data": "none (untrained test model)"})


def main(args: argparse.Namespace) -> int:

    model, meta = load_run(args.run, args.checkpoint)
    name = args.name or args.out.stem
    provenance = {
        "run": str(args.run),
        "data": summarize_info(meta.get("data", {})),
        "steps": meta.get("step"),
        "metrics": meta.get("metrics", {}),
        "train_seconds": meta.get("train_seconds"),
    }
    if (args.run / "pruned.json").is_file():  # a `pimodule prune` run: where it was cut from
        provenance["pruned_from"] = json.loads((args.run / "pruned.json").read_text())["origin"]
    export_onnx(model, args.out, name=name, provenance=provenance)
    print(f"exported {args.run} -> {args.out}")
    print(json.dumps(provenance.get("metrics", {}), indent=1))
    return 0
