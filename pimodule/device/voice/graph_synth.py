"""The synth half of the FrameVoice graph walk (:mod:`pimodule.device.voice.graph`): harmonic
amplitudes, f0 ramp and float64 phase, per-sample Nyquist mask, table noise, noise FIR and
overlap-add, the optional learned reverb, and the shape checks of everything read.
"""

from __future__ import annotations

import numpy as np

from pimodule.core import modelfile
from pimodule.device.voice.onnx_graph import Graph, UnsupportedVoice, _attrs


def read_synth(g: Graph, t: dict, c: dict, f0: str, gains: list[str], amp: str, dist: str, mags: str) -> None:
    """Harmonic amplitudes, harmonic synth, table noise, noise FIR and overlap-add."""
    f64, i64 = np.float64, np.int64
    # harmonic amplitudes: harmonics at or above Nyquist dropped, renormalised, harmonic gain
    mk = g.use(f0, "Mul", "Nyquist mask")
    t["k"] = g.const(g.operand(mk, f0, "Nyquist mask"), "harmonic numbers")
    less = g.after(mk, "Less", "Nyquist mask")
    c["nyquist"] = g.scalar(g.operand(less, mk.output[0], "Nyquist mask"), "Nyquist")
    where = g.after(less, "Where", "Nyquist mask")
    g.expect(where, [less.output[0], dist, where.input[2]], "Nyquist mask")
    if g.scalar(where.input[2], "Nyquist mask") != 0:
        raise UnsupportedVoice("masked harmonics are not zero")
    rsum = g.use(where.output[0], "ReduceSum", "distribution sum")
    if g.ints(rsum.input[1], "distribution sum") != [-1] or _attrs(rsum).get("keepdims", 1) != 1:
        raise UnsupportedVoice("the distribution is not summed over harmonics")
    add = g.after(rsum, "Add", "distribution sum")
    c["dist_eps"] = g.scalar(g.operand(add, rsum.output[0], "distribution sum"), "distribution sum")
    mul = g.use(amp, "Mul", "harmonic gain")
    g.operand(mul, gains[2], "harmonic gain")
    div = g.after(mul, "Div", "harmonic amplitudes")
    g.expect(div, [mul.output[0], add.output[0]], "harmonic amplitudes")
    mul = g.use(where.output[0], "Mul", "harmonic amplitudes")
    g.expect(mul, [where.output[0], div.output[0]], "harmonic amplitudes")
    amps = mul.output[0]
    if g.use(amps, "Reshape", "amplitudes").output[0] != "prev_amplitudes_next":
        raise UnsupportedVoice("prev_amplitudes_next is not the harmonic amplitudes")
    # f0 ramp, float64 phase, sines with the per-sample Nyquist mask, amplitude ramp
    sub = g.use(f0, "Sub", "f0 ramp")
    g.expect(sub, [f0, "prev_f0_hz"], "f0 ramp")
    mul = g.after(sub, "Mul", "f0 ramp")
    t["ramp"] = g.const(g.operand(mul, sub.output[0], "f0 ramp"), "ramp")
    add = g.after(mul, "Add", "f0 ramp")
    g.expect(add, ["prev_f0_hz", mul.output[0]], "f0 ramp")
    f0s = add.output[0]
    cast = g.use(f0s, "Cast", "phase")
    mul = g.after(cast, "Mul", "phase")
    t["phase_step"] = g.weight(mul, cast.output[0], "phase step", (), f64)
    cs = g.after(mul, "CumSum", "phase")
    a = _attrs(cs)
    if (
        _attrs(cast).get("to") != 11
        or a.get("exclusive", 0)
        or a.get("reverse", 0)
        or g.ints(cs.input[1], "phase") != [1]
    ):
        raise UnsupportedVoice("the phase is not a float64 forward cumulative sum over samples")
    add = g.after(cs, "Add", "phase")
    g.expect(add, ["phase", cs.output[0]], "phase")
    mod = g.after(add, "Mod", "phase")
    t["two_pi"] = g.weight(mod, add.output[0], "phase wrap", (), f64)
    if _attrs(mod).get("fmod") != 1 or g.use(mod.output[0], "Slice", "phase").output[0] != "phase_next":
        raise UnsupportedVoice("the phase is not wrapped with fmod into phase_next")
    cast = g.use(mod.output[0], "Cast", "sines")
    mul = g.after(cast, "Mul", "sines")
    t["k_col"] = g.const(g.operand(mul, cast.output[0], "sines"), "harmonic numbers")
    sin = g.after(mul, "Sin", "sines")
    mk = g.use(f0s, "Mul", "sample Nyquist mask")
    k_col = g.const(g.operand(mk, f0s, "sample Nyquist mask"), "harmonic numbers")
    less = g.after(mk, "Less", "sample Nyquist mask")
    where = g.after(less, "Where", "sample Nyquist mask")
    g.expect(where, [less.output[0], sin.output[0], where.input[2]], "sample Nyquist mask")
    if (
        _attrs(cast).get("to") != 1
        or not np.array_equal(k_col, t["k_col"])
        or g.scalar(g.operand(less, mk.output[0], "mask"), "mask") != c["nyquist"]
        or g.scalar(where.input[2], "mask") != 0
    ):
        raise UnsupportedVoice("the per-sample Nyquist mask differs from the frame's")
    prev = g.use("prev_amplitudes", "Reshape", "amplitude ramp").output[0]
    sub = g.use(amps, "Sub", "amplitude ramp")
    g.expect(sub, [amps, prev], "amplitude ramp")
    cat = g.use(prev, "Concat", "amplitude ramp")
    g.expect(cat, [prev, sub.output[0]], "amplitude ramp")
    mm = g.after(cat, "MatMul", "harmonic sum")
    g.expect(mm, [cat.output[0], where.output[0]], "harmonic sum")
    mul = g.after(mm, "Mul", "harmonic sum")
    t["ramp_pair"] = g.const(g.operand(mul, mm.output[0], "harmonic sum"), "ramp pair")
    rsum = g.after(mul, "ReduceSum", "harmonic sum")
    if g.ints(rsum.input[1], "harmonic sum") != [0]:
        raise UnsupportedVoice("the harmonic ramp is not summed over its two rows")
    harmonic = rsum.output[0]
    # table noise
    adds = [n for n, _ in g.consumers.get("noise_position", []) if n.op_type == "Add"]
    idx = [n for n in adds if g.const(g.operand(n, "noise_position", "noise"), "noise").size > 1]
    step = [n for n in adds if n not in idx]
    if len(idx) != 1 or len(step) != 1:
        raise UnsupportedVoice("noise position not read as position + 0..hop-1 and advanced")
    t["hop_index"] = g.weight(idx[0], "noise_position", "hop index", (1, t["ramp"].shape[-1]), i64)
    flat = g.after(idx[0], "Reshape", "noise index").output[0]
    tables, gathered = [], []
    for mod in (n for n, _ in g.consumers.get(flat, []) if n.op_type == "Mod"):
        gather = g.after(g.after(mod, "Reshape", "noise index"), "Gather", "noise table")
        table = g.const(gather.input[0], "noise table")
        if (
            _attrs(mod).get("fmod", 0) != 0
            or table.dtype != np.float32
            or table.ndim != 1
            or g.scalar(mod.input[1], "noise index") != table.size
            or _attrs(gather).get("axis", 0) != 0
        ):
            raise UnsupportedVoice("a noise table is not indexed by position modulo its length")
        tables.append(table)
        gathered.append(gather.output[0])
    if len(tables) != 2:
        raise UnsupportedVoice("not two noise tables")
    t["noise_a"], t["noise_b"] = tables
    add = g.use(gathered[0], "Add", "white noise")
    g.expect(add, gathered if add.input[0] == gathered[0] else gathered[::-1], "white noise")
    mod = g.after(step[0], "Mod", "noise position")
    if mod.output[0] != "noise_position_next" or _attrs(mod).get("fmod", 0) != 0:
        raise UnsupportedVoice("noise_position_next is not the advanced position")
    c["pos_step"] = int(g.scalar(g.operand(step[0], "noise_position", "noise"), "noise position"))
    c["period"] = int(g.scalar(mod.input[1], "noise period"))
    pad = g.after(add, "Pad", "noise padding")
    c["noise_pad"] = g.ints(pad.input[1], "noise padding")
    if len(pad.input) != 2 or _attrs(pad).get("mode", b"constant") not in (b"constant", "constant"):
        raise UnsupportedVoice("noise not zero-padded")
    padded = g.after(pad, "Reshape", "noise padding").output[0]
    # FIR from the band magnitudes (noise gain), one correlation, overlap-add with the tail
    mul = g.use(mags, "Mul", "noise gain")
    g.operand(mul, gains[3], "noise gain")
    mm = g.after(mul, "MatMul", "noise FIR")
    g.expect(mm, [mul.output[0], mm.input[1]], "noise FIR")
    t["fir_basis"] = g.const(mm.input[1], "noise FIR basis")
    conv = g.after(g.after(mm, "Reshape", "noise FIR"), "Conv", "noise FIR")
    a = _attrs(conv)
    if (
        conv.input[0] != padded
        or len(conv.input) != 2
        or a.get("group", 1) != 1
        or a.get("strides", [1]) != [1]
        or a.get("dilations", [1]) != [1]
        or a.get("pads", [0, 0]) != [0, 0]
    ):
        raise UnsupportedVoice(f"noise FIR convolution with attributes {a}")
    sl = g.after(conv, "Slice", "noise segments")
    c["noise_slice"] = [g.ints(n, "noise segments") for n in sl.input[1:]]
    segs = g.after(sl, "Reshape", "noise segments").output[0]
    tail = g.after(g.use("noise_tail", "Reshape", "noise tail"), "Pad", "noise tail")
    c["tail_pad"] = g.ints(tail.input[1], "noise tail")
    add = g.use(segs, "Add", "overlap-add")
    g.expect(add, [segs, tail.output[0]], "overlap-add")
    slices = {
        tuple(g.ints(s.input[1], "overlap-add")): s for s, _ in g.consumers[add.output[0]] if s.op_type == "Slice"
    }
    if set(slices) != {(0,), (1,)} or g.after(slices[(1,)], "Reshape", "noise tail").output[0] != "noise_tail_next":
        raise UnsupportedVoice("noise_tail_next is not the overlap-add's remainder")
    out = g.use(harmonic, "Add", "dry audio")
    g.expect(out, [harmonic, slices[(0,)].output[0]], "dry audio")
    c["dry_audio"] = out.output[0]


def check_shapes(t: dict, c: dict, info: modelfile.ModelInfo, has_reverb: bool) -> None:
    h, k = t["w1"].shape[-1], t["k"].shape[-1]
    nb, taps = t["fir_basis"].shape
    hop = t["ramp"].shape[-1]
    n_seg = -(-(hop + taps - 1) // hop)
    c.update(hidden=h, harmonics=k, bands=nb, taps=taps, hop=hop, n_seg=n_seg)
    shapes = {
        "w1": (2, 1, h),
        "b1": (2, 1, h),
        "g1": (2, 1, h),
        "be1": (2, 1, h),
        "w2": (2, h, h),
        "b2": (2, 1, h),
        "g2": (2, 1, h),
        "be2": (2, 1, h),
        "w_ab": (2 * h, 4 * h),
        "b_ab": (1, 4 * h),
        "w_hh": (h, 3 * h),
        "b_hn": (1, h),
        "w_x": (h, h),
        "ln_out1.weight": (h,),
        "ln_out1.bias": (h,),
        "lin_out2.weight": (h, h),
        "lin_out2.bias": (h,),
        "ln_out2.weight": (h,),
        "ln_out2.bias": (h,),
        "proj.weight": (1 + k + nb, h),
        "proj.bias": (1 + k + nb,),
        "control_scale": (4,),
        "in_scale": (2, 1, 1),
        "in_shift": (2, 1, 1),
        "k": (1, k),
        "k_col": (k, 1),
        "ramp": (1, hop),
        "ramp_pair": (2, hop),
        "fir_basis": (nb, taps),
    }
    for name, shape in shapes.items():
        if t[name].shape != shape or t[name].dtype != np.float32:
            raise UnsupportedVoice(f"weight {name} is {t[name].dtype} {t[name].shape}, expected float32 {shape}")
    harmonics = np.arange(1, k + 1, dtype=np.float32)
    ramp = np.arange(1, hop + 1, dtype=np.float32) / np.float32(hop)
    if not (
        np.array_equal(t["k"][0], harmonics)
        and np.array_equal(t["k_col"][:, 0], harmonics)
        and np.array_equal(t["ramp"][0], ramp)
        and np.array_equal(t["ramp_pair"][0], np.ones(hop))
        and np.array_equal(t["ramp_pair"][1], ramp)
        and np.array_equal(t["hop_index"][0], np.arange(hop))
    ):
        raise UnsupportedVoice("harmonic numbers, ramp or hop index are not 1..K, (n+1)/hop, 0..hop-1")
    if info.block_size != hop or taps != 2 * (nb - 1) or not 1 <= hop <= 4096 or not 1 <= k <= 256:
        raise UnsupportedVoice(f"block {info.block_size}, hop {hop}, {nb} bands, {taps} taps, {k} harmonics")
    la, lb = t["noise_a"].size, t["noise_b"].size
    if (
        c["pos_step"] != hop
        or c["period"] != la * lb
        or c["noise_pad"] != [taps - 1, n_seg * hop - hop + 1]
        or c["noise_slice"] != [[0], [n_seg * hop], [2], [1]]
        or c["tail_pad"] != [0, 0, 1, 0]
    ):
        raise UnsupportedVoice("noise position step, period, padding or overlap-add not as FrameVoice's")
    if c["dry_audio"] != ("audio" if not has_reverb else c["dry_audio"]):
        raise UnsupportedVoice("audio is not harmonic + noise")
    c["noise_len"] = (la, lb)
    shapes = {
        "gru_h": (1, 1, h),
        "phase": (1, 1),
        "prev_f0_hz": (1, 1),
        "prev_amplitudes": (1, 1, k),
        "noise_tail": (1, n_seg - 1, hop),
        "noise_position": (1, 1),
    }
    for spec in info.state:
        if spec.name in shapes and spec.shape != shapes[spec.name]:
            raise UnsupportedVoice(f"state {spec.name} has shape {spec.shape}, expected {shapes[spec.name]}")


def read_reverb(g: Graph, t: dict, c: dict) -> None:
    """The learned reverb: Conv of [history, dry audio] with a constant kernel (the exporter
    folds ``cat([0], ir).flip(0)`` into one initializer, whatever its name)."""
    cat = g.use("reverb_history", "Concat", "reverb")
    g.expect(cat, ["reverb_history", c["dry_audio"]], "reverb")
    conv = g.after(g.after(cat, "Unsqueeze", "reverb"), "Conv", "reverb")
    kernel = g.const(conv.input[1], "reverb impulse response")
    a = _attrs(conv)
    if (
        kernel.dtype != np.float32
        or kernel.ndim != 3
        or kernel.shape[:2] != (1, 1)
        or len(conv.input) != 2
        or a.get("group", 1) != 1
        or a.get("strides", [1]) != [1]
        or a.get("dilations", [1]) != [1]
        or a.get("pads", [0, 0]) != [0, 0]
    ):
        raise UnsupportedVoice("the reverb is not a plain convolution with a constant impulse response")
    add = g.after(g.after(conv, "Squeeze", "reverb"), "Add", "reverb")
    g.expect(add, [c["dry_audio"], add.input[1]], "reverb")
    hist = g.use(cat.output[0], "Slice", "reverb history")
    n_rev = kernel.shape[-1]
    spec = [g.ints(n, "reverb history") for n in hist.input[1:]]
    if (
        add.output[0] != "audio"
        or hist.output[0] != "reverb_history_next"
        or spec[0] != [c["hop"]]
        or spec[2:] != [[1], [1]]
        or spec[1][0] < n_rev - 1 + c["hop"]
    ):
        raise UnsupportedVoice("the reverb output is not dry + wet with the history's last samples")
    t["reverb_kernel"] = kernel.reshape(-1)
    c["reverb_taps"] = n_rev
