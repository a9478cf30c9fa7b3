"""An int8 variant of an exported model (onnxruntime dynamic quantization), with its error.

Weights of MatMul/Gemm nodes become int8 (activations are quantized on the fly), the metadata is
kept and marked, and the variant is checked against the original on a test signal: the report
gives the signal-to-error ratio so a musician can decide whether the saving is worth it.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from pimodule.core.modelfile import KEY_NAME, KEY_PROVENANCE
from pimodule.device.session import ModelSession


def quantize(src: Path, dst: Path) -> dict:
    src, dst = Path(src), Path(dst)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a line per tensor on the root logger
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "q.onnx"
        quantize_dynamic(str(src), str(raw), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        root.setLevel(level)
        proto = onnx.load(str(raw))
    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    provenance = json.loads(meta.get(KEY_PROVENANCE, "{}"))
    provenance["variant"] = {"quantized": "int8 dynamic (MatMul/Gemm weights)", "from": src.name}
    meta[KEY_PROVENANCE] = json.dumps(provenance, sort_keys=True)
    meta[KEY_NAME] = meta.get(KEY_NAME, src.stem) + "-int8"
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(dst), save_as_external_data=False)
    return compare(src, dst)


def compare(reference: Path, variant: Path, n_frames: int = 500) -> dict:
    """Signal-to-error ratio (dB) of the variant against the reference on a pitch/level sweep."""
    t = np.arange(n_frames) / 250
    f0 = 220 * 2 ** np.sin(2 * np.pi * 0.3 * t)
    loudness = -45 + 30 * np.abs(np.sin(2 * np.pi * 0.4 * t))
    ref = ModelSession(reference).process(f0, loudness)
    var = ModelSession(variant).process(f0, loudness)
    err = np.sqrt(np.mean((ref - var) ** 2))
    sig = np.sqrt(np.mean(ref**2))
    return {
        "snr_db": float(20 * np.log10(sig / max(err, 1e-12))),
        "bytes": {"fp32": reference.stat().st_size, "int8": variant.stat().st_size},
    }


EXAMPLES = (
    "pimodule quantize export/violin.onnx",
    "pimodule quantize export/violin.onnx --out out/violin-int8.onnx",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="exported .onnx model")
    parser.add_argument("--out", type=Path, help="output (default: NAME-int8.onnx beside it)")


def main(args: argparse.Namespace) -> int:
    out = args.out or args.model.with_name(args.model.stem + "-int8.onnx")
    report = quantize(args.model, out)
    print(
        f"{args.model} -> {out}: {report['bytes']['fp32'] / 1024:.0f} kB -> {report['bytes']['int8'] / 1024:.0f} kB, "
        f"signal-to-error {report['snr_db']:.1f} dB against fp32"
    )
    return 0
