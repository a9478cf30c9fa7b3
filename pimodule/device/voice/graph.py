"""Recognise the exported ``FrameVoice`` graph in an ONNX file and read its weights and constants.

The compiled kernel reproduces one specific function (``pimodule.laptop.ddsp.frame.FrameVoice``).
A file is accepted only if it *is* that function: pimodule ``ddsp`` metadata with the expected
state, the expected graph inputs and outputs, exactly the expected multiset of operators (once
the ``DequantizeLinear`` of int8 constants that ``pimodule quantize`` writes are folded,
:func:`onnx_graph.fold_dequantize`; onnxruntime's dynamic quantization has ``MatMulInteger``
instead of ``MatMul``, an fx estimator other operators altogether), every named weight consumed by the
expected operator in the expected input slot, shapes consistent with one hidden size, and the
scalar constants (LeakyReLU slopes, LayerNorm epsilons, clamps, the scaled sigmoid's exponent,
table lengths, pads) read from the graph itself. Anything else raises :class:`UnsupportedVoice`
with the reason, and the engine plays that file through onnxruntime instead.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from pimodule.core import modelfile
from pimodule.device.voice.graph_synth import check_shapes, read_reverb, read_synth
from pimodule.device.voice.onnx_graph import Graph, UnsupportedVoice, _attrs

STATE_DTYPES = {
    "gru_h": "float32",
    "phase": "float64",
    "prev_f0_hz": "float32",
    "prev_amplitudes": "float32",
    "noise_tail": "float32",
    "noise_position": "int64",
    "reverb_history": "float32",
}
FRAME_INPUTS = ("f0_hz", "loudness_db", "controls")
OPS = Counter(
    {
        "Add": 21,
        "Mul": 18,
        "Reshape": 14,
        "MatMul": 6,
        "Split": 5,
        "Slice": 5,
        "LayerNormalization": 4,
        "LeakyRelu": 4,
        "Mod": 4,
        "Sub": 3,
        "Clip": 2,
        "Concat": 2,
        "Sigmoid": 2,
        "Gemm": 2,
        "Less": 2,
        "Where": 2,
        "ReduceSum": 2,
        "Cast": 2,
        "Gather": 2,
        "Pad": 2,
        "Exp": 1,
        "Log": 1,
        "Tanh": 1,
        "Pow": 1,
        "Div": 1,
        "CumSum": 1,
        "Sin": 1,
        "Conv": 1,
    }
)
REVERB_OPS = Counter({"Add": 1, "Slice": 1, "Concat": 1, "Conv": 1, "Unsqueeze": 1, "Squeeze": 1})


def check_signature(proto, info: modelfile.ModelInfo) -> bool:
    """Metadata, graph inputs/outputs and operators; returns whether the voice has a reverb."""
    if info.kind != "ddsp":
        raise UnsupportedVoice(f"a {info.kind!r} model, not a ddsp voice")
    names = [s.name for s in info.state]
    has_reverb = "reverb_history" in names
    expected = list(STATE_DTYPES)[: 7 if has_reverb else 6]
    if names != expected:
        raise UnsupportedVoice(f"state {names}, expected {expected}")
    for spec in info.state:
        if spec.dtype != STATE_DTYPES[spec.name]:
            raise UnsupportedVoice(f"state {spec.name} has dtype {spec.dtype}")
    g = proto.graph
    want_in = list(FRAME_INPUTS) + names
    want_out = ["audio"] + [n + modelfile.NEXT_SUFFIX for n in names]
    if [i.name for i in g.input] != want_in or [o.name for o in g.output] != want_out:
        raise UnsupportedVoice(
            f"graph inputs/outputs {[i.name for i in g.input]} -> {[o.name for o in g.output]} are not FrameVoice's"
        )
    for node in g.node:
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedVoice(f"operator {node.op_type} from domain {node.domain!r}")
    ops = Counter(n.op_type for n in g.node)
    want_ops = OPS + REVERB_OPS if has_reverb else OPS
    if ops != want_ops:
        extra = dict(ops - want_ops)
        missing = dict(want_ops - ops)
        raise UnsupportedVoice(f"not the FrameVoice graph: operators {extra} unexpected, {missing} missing")
    return has_reverb


def read_tensors(g: Graph, info: modelfile.ModelInfo, has_reverb: bool) -> tuple[dict, dict]:
    """Walk the graph as FrameVoice.forward computes it and read every weight and constant from
    the node that uses it (not by name: the exporter merges equal initializers, e.g. an untrained
    voice's LayerNorm weights). Returns (weights, constants); any mismatch is UnsupportedVoice."""
    t: dict = {}
    c: dict = {"slope": [], "eps": []}
    # controls -> [2^(shift/12), -, harmonic gain, noise gain]; f0 and loudness clamps
    m = g.use("controls", "Mul", "controls")
    t["control_scale"] = g.weight(m, "controls", "control scale", (1, 4)).reshape(-1)
    gains = g.after(g.after(m, "Exp", "controls"), "Split", "controls").output
    if len(gains) != 4:
        raise UnsupportedVoice("controls are not split into four gains")
    m = g.use("f0_hz", "Mul", "pitch shift")
    g.operand(m, gains[0], "pitch shift")
    clip = g.after(m, "Clip", "f0 clamp")
    f0 = clip.output[0]
    if f0 != "prev_f0_hz_next" or len(clip.input) != 3:
        raise UnsupportedVoice("prev_f0_hz_next is not the clamped, shifted f0")
    c["f0_min"], c["f0_max"] = g.scalar(clip.input[1], "f0 clamp"), g.scalar(clip.input[2], "f0 clamp")
    sl = g.use("controls", "Slice", "loudness offset")
    if [g.ints(n, "loudness offset") for n in sl.input[1:]] != [[1], [2], [1], [1]]:
        raise UnsupportedVoice("the loudness offset is not controls[:, 1]")
    add = g.use("loudness_db", "Add", "loudness")
    g.operand(add, sl.output[0], "loudness")
    clip_ld = g.after(add, "Clip", "loudness clamp")
    c["ld_min"], c["ld_max"] = (
        g.scalar(clip_ld.input[1], "loudness clamp"),
        g.scalar(clip_ld.input[2], "loudness clamp"),
    )
    # the two input MLPs as one batch of two
    log = g.use(f0, "Log", "decoder input")
    cat = g.after(log, "Concat", "decoder input")
    g.expect(cat, [log.output[0], clip_ld.output[0]], "decoder input")
    x = g.after(cat, "Reshape", "decoder input").output[0]
    x = _affine(g, x, t, "in_scale", "in_shift")
    x = _affine(g, x, t, "w1", "b1")
    h = t["w1"].shape[-1]
    for layer in (1, 2):
        if layer == 2:
            mm = g.use(x, "MatMul", "w2")
            g.expect(mm, [x, mm.input[1]], "w2")
            t["w2"] = g.const(mm.input[1], "w2")
            x = _affine(g, mm.output[0], t, None, "b2")
        x = _layer_norm(g, x, c, h, None)
        x = _leaky(g, _affine(g, x, t, f"g{layer}", f"be{layer}"), c)
    ab = g.use(x, "Reshape", "GRU input").output[0]
    # GRU step: gates from [a, b] (with out_mlp's [a, b] part) and from h
    mm = g.use(ab, "MatMul", "GRU input")
    g.expect(mm, [ab, mm.input[1]], "GRU input")
    t["w_ab"] = g.const(mm.input[1], "w_ab")
    add = g.after(mm, "Add", "GRU input")
    t["b_ab"] = g.weight(add, mm.output[0], "b_ab", (1, 4 * h))
    gi_rz, gi_n, out_ab = _split(g, add, [2 * h, h, h], "GRU input")
    hv = g.use("gru_h", "Reshape", "GRU state").output[0]
    mm = g.use(hv, "MatMul", "GRU recurrence")
    g.expect(mm, [hv, mm.input[1]], "GRU recurrence")
    t["w_hh"] = g.const(mm.input[1], "w_hh")
    gh_rz, gh_n = _split(g, mm, [2 * h, h], "GRU recurrence")
    add = g.use(gi_rz, "Add", "GRU r z")
    g.expect(add, [gi_rz, gh_rz], "GRU r z")
    r, z = g.after(g.after(add, "Sigmoid", "GRU r z"), "Split", "GRU r z").output
    add = g.use(gh_n, "Add", "GRU n")
    t["b_hn"] = g.weight(add, gh_n, "b_hn", (1, h))
    mul = g.use(r, "Mul", "GRU n")
    g.expect(mul, [r, add.output[0]], "GRU n")
    add = g.use(gi_n, "Add", "GRU n")
    g.expect(add, [gi_n, mul.output[0]], "GRU n")
    n = g.after(add, "Tanh", "GRU n").output[0]
    sub = g.use(hv, "Sub", "GRU update")
    g.expect(sub, [hv, n], "GRU update")
    mul = g.use(z, "Mul", "GRU update")
    g.expect(mul, [z, sub.output[0]], "GRU update")
    add = g.after(mul, "Add", "GRU update")
    g.expect(add, [n, mul.output[0]], "GRU update")
    hn = add.output[0]
    if g.use(hn, "Reshape", "GRU state").output[0] != "gru_h_next":
        raise UnsupportedVoice("gru_h_next is not the GRU's new state")
    # out MLP on [h, a, b] and the projection
    mm = g.use(hn, "MatMul", "out MLP")
    g.expect(mm, [hn, mm.input[1]], "out MLP")
    t["w_x"] = g.const(mm.input[1], "w_x")
    add = g.after(mm, "Add", "out MLP")
    g.expect(add, [mm.output[0], out_ab], "out MLP")
    x = _leaky(g, _layer_norm(g, add.output[0], c, h, t, "ln_out1"), c)
    x = _leaky(g, _layer_norm(g, _gemm(g, x, t, "lin_out2"), c, h, t, "ln_out2"), c)
    sig = g.use(_gemm(g, x, t, "proj"), "Sigmoid", "scaled sigmoid")
    pw = g.after(sig, "Pow", "scaled sigmoid")
    c["pow"] = g.scalar(g.operand(pw, sig.output[0], "scaled sigmoid"), "scaled sigmoid exponent")
    mul = g.after(pw, "Mul", "scaled sigmoid")
    c["sig_scale"] = g.scalar(g.operand(mul, pw.output[0], "scaled sigmoid"), "scaled sigmoid")
    add = g.after(mul, "Add", "scaled sigmoid")
    c["sig_offset"] = g.scalar(g.operand(add, mul.output[0], "scaled sigmoid"), "scaled sigmoid")
    sizes = g.ints(g.after(add, "Split", "decoder outputs").input[1], "decoder outputs")
    if len(sizes) != 3 or sizes[0] != 1 or sum(sizes) != t["proj.weight"].shape[0]:
        raise UnsupportedVoice(f"decoder outputs split as {sizes}, not [amplitude, harmonics, bands]")
    amp, dist, mags = _split(g, add, sizes, "decoder outputs")
    read_synth(g, t, c, f0, gains, amp, dist, mags)
    check_shapes(t, c, info, has_reverb)
    if has_reverb:
        read_reverb(g, t, c)
    return t, c


def _affine(g: Graph, x: str, t: dict, scale: str | None, shift: str) -> str:
    """x * t[scale] + t[shift] (element-wise, constants read from the nodes)."""
    if scale is not None:
        mul = g.use(x, "Mul", scale)
        t[scale] = g.const(g.operand(mul, x, scale), scale)
        x = mul.output[0]
    add = g.use(x, "Add", shift)
    t[shift] = g.const(g.operand(add, x, shift), shift)
    return add.output[0]


def _layer_norm(g: Graph, x: str, c: dict, h: int, t: dict | None, name: str = "") -> str:
    """A LayerNormalization over the last axis: unit scale without bias (input MLPs, whose
    affine part follows as Mul/Add) or with ``name``.weight/.bias; its epsilon is recorded."""
    ln = g.use(x, "LayerNormalization", "layer norm")
    a = _attrs(ln)
    if ln.input[0] != x or a.get("axis", -1) != -1 or a.get("stash_type", 1) != 1:
        raise UnsupportedVoice(f"LayerNormalization with attributes {a}")
    scale = g.const(ln.input[1], "layer norm scale")
    if t is None:
        if len(ln.input) != 2 or scale.shape != (h,) or not np.all(scale == 1):
            raise UnsupportedVoice("input MLP LayerNorm with a scale or bias of its own")
    else:
        if len(ln.input) != 3:
            raise UnsupportedVoice("out MLP LayerNorm without a bias")
        t[name + ".weight"], t[name + ".bias"] = scale, g.const(ln.input[2], "layer norm bias")
    c["eps"].append(float(a.get("epsilon", 1e-5)))
    return ln.output[0]


def _leaky(g: Graph, x: str, c: dict) -> str:
    node = g.use(x, "LeakyRelu", "LeakyReLU")
    c["slope"].append(float(_attrs(node).get("alpha", 0.01)))
    return node.output[0]


def _gemm(g: Graph, x: str, t: dict, name: str) -> str:
    gemm = g.use(x, "Gemm", name)
    a = _attrs(gemm)
    if (
        len(gemm.input) != 3
        or gemm.input[0] != x
        or (a.get("transA", 0), a.get("transB", 0), a.get("alpha", 1.0), a.get("beta", 1.0)) != (0, 1, 1.0, 1.0)
    ):
        raise UnsupportedVoice(f"{name}: Gemm with attributes {a}")
    t[name + ".weight"], t[name + ".bias"] = g.const(gemm.input[1], name), g.const(gemm.input[2], name)
    return gemm.output[0]


def _split(g: Graph, node, sizes: list[int], what: str) -> list[str]:
    split = g.after(node, "Split", what)
    if len(split.input) != 2 or g.ints(split.input[1], what) != sizes or _attrs(split).get("axis") != 1:
        raise UnsupportedVoice(f"{what}: not split into {sizes}")
    return list(split.output)
