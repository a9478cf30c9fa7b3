"""An int8 variant of an exported model: its matrices stored as int8 with one scale per output
channel (``DequantizeLinear``, standard ONNX), everything else as it was; with its error.

Only the weights change: activations stay float32, so the file runs everywhere the original does
(onnxruntime dequantizes the weights on every run: about 2.5x the float32 file's time there), and
the module's compiled voice reads the int8 matrices as they are, at a quarter of the bytes (the
violin's decoder 1.1 MB -> about 290 kB: inside a Cortex-A53's 512 KB L2), at the price of
widening each weight before its multiply-add (``make pi-bench``: 111 M aarch64 instructions per
second of audio against the float32 violin's 39 M). Scales are symmetric (zero point 0),
``max |w| / 127`` per output channel. Bases that are not learned (a DDSP voice's noise-filter
basis) stay float32. The variant is checked against the original on a test signal: the report
gives the signal-to-error ratio so a musician can decide whether the saving is worth it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from pimodule.core.modelfile import KEY_NAME, KEY_PROVENANCE, ModelFileError
from pimodule.device.modelcheck import check_file
from pimodule.device.session import ModelSession

KEEP_FLOAT = ("fir_basis",)  # a fixed window basis: its error would go straight to the noise
MIN_ELEMENTS = 1024  # smaller matrices save nothing worth a scale table


def quantize(src: Path, dst: Path) -> dict:
    src, dst = Path(src), Path(dst)
    proto = onnx.load(str(src))
    names = _quantize_weights(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    provenance = json.loads(meta.get(KEY_PROVENANCE, "{}"))
    provenance["variant"] = {"quantized": "int8 weights per output channel", "from": src.name, "tensors": names}
    meta[KEY_PROVENANCE] = json.dumps(provenance, sort_keys=True)
    meta[KEY_NAME] = meta.get(KEY_NAME, src.stem) + "-int8"
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(dst), save_as_external_data=False)
    return compare(src, dst) | {"tensors": names}


def _quantize_weights(proto) -> list[str]:
    """Each float32 MatMul/Gemm weight (a constant) becomes int8 + scales + DequantizeLinear."""
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    axes: dict[str, int] = {}
    for node in g.node:
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2 or node.input[1] not in inits:
            continue
        name = node.input[1]
        value = numpy_helper.to_array(inits[name])
        if name in KEEP_FLOAT or value.dtype != np.float32 or value.ndim < 2 or value.size < MIN_ELEMENTS:
            continue
        if node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axis = 0 if trans_b else 1
        else:
            axis = value.ndim - 1
        if axes.setdefault(name, axis) != axis:
            axes[name] = -1  # read along two different axes: leave it float
    nodes = []
    for name, axis in sorted(axes.items()):
        if axis < 0:
            continue
        value = numpy_helper.to_array(inits[name])
        reduce = tuple(a for a in range(value.ndim) if a != axis)
        peak = np.abs(value).max(axis=reduce)
        scale = np.where(peak > 0, peak / 127, 1).astype(np.float32)
        shape = [1] * value.ndim
        shape[axis] = -1
        q = np.clip(np.rint(value / scale.reshape(shape)), -127, 127).astype(np.int8)
        g.initializer.remove(inits[name])
        g.initializer.extend(
            [
                numpy_helper.from_array(q, name + "_int8"),
                numpy_helper.from_array(scale, name + "_scale"),
                numpy_helper.from_array(np.zeros(scale.size, np.int8), name + "_zero"),
            ]
        )
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [name + "_int8", name + "_scale", name + "_zero"],
                [name],
                axis=axis,
                name=name + "_dq",
            )
        )
    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old)
    return [n.output[0] for n in nodes]


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
    try:  # the module's own check first: a file that is not one of its models is refused by name
        check_file(args.model)
    except ModelFileError as err:
        print(f"pimodule quantize: {err}")
        return 2
    report = quantize(args.model, out)
    print(
        f"{args.model} -> {out}: {report['bytes']['fp32'] / 1024:.0f} kB -> {report['bytes']['int8'] / 1024:.0f} kB, "
        f"signal-to-error {report['snr_db']:.1f} dB against fp32"
    )
    return 0
