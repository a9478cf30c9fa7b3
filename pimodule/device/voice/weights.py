"""A FrameVoice ONNX file read into the compiled kernel's flat arrays (numpy + onnx, no torch).

:func:`read_voice` recognises the graph (:mod:`pimodule.device.voice.graph`; anything else raises
:class:`UnsupportedVoice`) and packs every weight into ONE contiguous float32 array with an int64
layout vector (:mod:`pimodule.device.voice.layout`), matrices as (out, in) rows for contiguous dot
products. The voice's state is ONE float64 vector: every state tensor's values (float32, float64,
int64 noise position) are exact in float64; a float64 workspace of the kernel follows them. :meth:`VoiceWeights.state_dict` and
:meth:`VoiceWeights.pack_state` convert to and from onnxruntime's named tensors, so every state
can be compared with the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pimodule.core import modelfile
from pimodule.device.voice import layout as L
from pimodule.device.voice.graph import check_signature, read_tensors
from pimodule.device.voice.onnx_graph import Graph, UnsupportedVoice, fold_dequantize, load

__all__ = ["UnsupportedVoice", "VoiceWeights", "read_voice"]

# state name -> layout segment
STATE_SEGMENTS = {
    "gru_h": "S_GRU",
    "phase": "S_PHASE",
    "prev_f0_hz": "S_PREV_F0",
    "prev_amplitudes": "S_PREV_AMP",
    "noise_tail": "S_TAIL",
    "noise_position": "S_POS",
    "reverb_history": "S_REV",
}


@dataclass(eq=False)
class VoiceWeights:
    """Everything the kernel needs for one voice, sized once at load."""

    path: str
    info: modelfile.ModelInfo
    weights: np.ndarray  # float32, contiguous
    layout: np.ndarray  # int64
    constants: dict = field(repr=False)  # what was read from the graph (for reports and tests)

    @property
    def hidden(self) -> int:
        return int(self.layout[L.D_H])

    @property
    def has_reverb(self) -> bool:
        return int(self.layout[L.D_NREV]) > 0

    @property
    def block_size(self) -> int:
        return int(self.layout[L.D_HOP])

    @property
    def state_size(self) -> int:
        """Length of the state vector: the named state, then the kernel's float64 workspace."""
        return L.round_up(max(sum(L.segment(self.layout, n)) for n in L.segment_names("S")), 4)

    @property
    def scratch_size(self) -> int:
        ends = [sum(L.segment(self.layout, n)) for n in L.segment_names("X")]
        return L.round_up(max(ends), 4)

    def new_scratch(self) -> np.ndarray:
        return np.zeros(self.scratch_size, np.float32)

    def default_controls(self) -> np.ndarray:
        return self.info.controls.defaults().astype(np.float32)

    def initial_state(self) -> np.ndarray:
        """The state vector with the metadata's initial values."""
        return self.pack_state(self.info.initial_state())

    def state_dict(self, vec: np.ndarray) -> dict[str, np.ndarray]:
        """Each named state tensor in onnxruntime's dtype and shape (copies)."""
        out = {}
        for spec in self.info.state:
            off, size = L.segment(self.layout, STATE_SEGMENTS[spec.name])
            out[spec.name] = vec[off : off + size].astype(spec.dtype).reshape(spec.shape)
        return out

    def pack_state(self, states: Mapping[str, np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
        """The state vector from named tensors (every state must be given, with its shape)."""
        vec = np.zeros(self.state_size, np.float64) if out is None else out
        for spec in self.info.state:
            value = np.asarray(states[spec.name])
            if value.shape != tuple(spec.shape):
                raise ValueError(f"state {spec.name}: shape {value.shape}, expected {spec.shape}")
            off, size = L.segment(self.layout, STATE_SEGMENTS[spec.name])
            vec[off : off + size] = value.reshape(-1).astype(np.float64)
        return vec


def read_voice(path: str | Path) -> VoiceWeights:
    """Read a FrameVoice file; :class:`UnsupportedVoice` if it is anything else."""
    proto = load(path)
    folded = fold_dequantize(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    try:
        info = modelfile.parse_metadata(meta, str(path))
    except modelfile.ModelFileError as err:
        raise UnsupportedVoice(str(err)) from err
    has_reverb = check_signature(proto, info)
    graph = Graph(proto)
    tensors, consts = read_tensors(graph, info, has_reverb)
    # the int8 matrices' scales, by the name the walk gave each tensor (it holds the very array)
    scales = {k: folded[n] for k, v in tensors.items() for n in folded if v is graph.inits.get(n)}
    weights, lay = _pack(tensors, consts, scales)
    for spec in info.state:  # the metadata's shapes are the graph's
        if int(np.prod(spec.shape)) != L.segment(lay, STATE_SEGMENTS[spec.name])[1]:
            raise UnsupportedVoice(f"state {spec.name} of shape {spec.shape} does not fit the graph")
    return VoiceWeights(str(path), info, weights, lay, consts)


def _pack(t: dict, c: dict, scales: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    h, k, nb, taps, hop, n_seg = (c[n] for n in ("hidden", "harmonics", "bands", "taps", "hop", "n_seg"))
    hp = L.round_up(h, L.COL_ALIGN)
    nbp = L.round_up(nb, L.COL_ALIGN)
    n_out = 1 + k + nb
    n_outp = L.round_up(n_out, L.ROW_BLOCK)
    n_rev = c.get("reverb_taps", 0)
    la, lb = c["noise_len"]
    dims = {
        "H": h,
        "HP": hp,
        "K": k,
        "NB": nb,
        "NBP": nbp,
        "TAPS": taps,
        "HOP": hop,
        "NSEG": n_seg,
        "NOISE_A": la,
        "NOISE_B": lb,
        "PERIOD": la * lb,
        "NREV": n_rev,
        "NOUT": n_out,
        "NOUTP": n_outp,
    }
    b = L.LayoutBuilder(dims, float(t["phase_step"]), float(t["two_pi"]))
    parts: list[tuple[str, np.ndarray]] = []

    mat = L.panels  # (out, in) zero-padded, as 4-row panels
    c["int8"] = []  # the matrices kept as int8

    def matrix(name: str) -> np.ndarray:
        return _matrix(name, t, scales, (h, hp, n_outp), c["int8"])

    def vec(v: np.ndarray, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        out[: v.size] = v.reshape(-1)
        return out

    const = np.zeros(L.N_CONST, np.float32)
    const[L.C_CTRL_SCALE : L.C_CTRL_SCALE + 4] = t["control_scale"]
    const[L.C_IN_SCALE : L.C_IN_SCALE + 2] = t["in_scale"].reshape(-1)
    const[L.C_IN_SHIFT : L.C_IN_SHIFT + 2] = t["in_shift"].reshape(-1)
    for name, idx in (
        ("f0_min", L.C_F0_MIN),
        ("f0_max", L.C_F0_MAX),
        ("ld_min", L.C_LD_MIN),
        ("ld_max", L.C_LD_MAX),
        ("nyquist", L.C_NYQUIST),
        ("pow", L.C_POW),
        ("sig_scale", L.C_SIG_SCALE),
        ("sig_offset", L.C_SIG_OFFSET),
        ("dist_eps", L.C_DIST_EPS),
    ):
        const[idx] = c[name]
    const[L.C_SLOPE : L.C_SLOPE + 4] = c["slope"]
    const[L.C_EPS : L.C_EPS + 4] = c["eps"]
    parts.append(("W_CONST", const))
    for name in ("w1", "b1", "g1", "be1"):
        parts.append(("W_" + name.upper(), np.concatenate([vec(t[name][m], hp) for m in range(2)])))
    parts.append(("W_W2", matrix("W_W2")))
    for name in ("b2", "g2", "be2"):
        parts.append(("W_" + name.upper(), np.concatenate([vec(t[name][m], hp) for m in range(2)])))
    b_ab = np.zeros(4 * hp, np.float32)
    for q in range(4):
        b_ab[q * hp : q * hp + h] = t["b_ab"][0, q * h : (q + 1) * h]
    parts += [("W_AB", matrix("W_AB")), ("W_BAB", b_ab)]
    parts += [
        ("W_HH", matrix("W_HH")),
        ("W_BHN", vec(t["b_hn"], hp)),
        ("W_X", matrix("W_X")),
        ("W_LN1W", vec(t["ln_out1.weight"], hp)),
        ("W_LN1B", vec(t["ln_out1.bias"], hp)),
        ("W_LIN2", matrix("W_LIN2")),
        ("W_LIN2B", vec(t["lin_out2.bias"], hp)),
        ("W_LN2W", vec(t["ln_out2.weight"], hp)),
        ("W_LN2B", vec(t["ln_out2.bias"], hp)),
        ("W_PROJ", matrix("W_PROJ")),
        ("W_PROJB", vec(t["proj.bias"], n_outp)),
        # FIR g[j] = sum_b mags[b] * fir_basis[b, taps - 1 - j] (the graph's basis is flipped)
        ("W_FIR", mat(t["fir_basis"][:, ::-1].T, taps, nbp)),
        ("W_RAMP", t["ramp"].reshape(-1).copy()),
        ("W_NOISE_A", t["noise_a"].copy()),
        ("W_NOISE_B", t["noise_b"].copy()),
        ("W_REV", t["reverb_kernel"].copy() if n_rev else np.zeros(0, np.float32)),
    ]
    for name, arr in parts:
        b.add(name, arr.size)
    weights = np.zeros(b.total("W"), np.float32)
    for name, arr in parts:
        off, size = L.segment(b.layout, name)
        weights[off : off + size] = arr
    for name, size in (
        ("S_GRU", h),
        ("S_PHASE", 1),
        ("S_PREV_F0", 1),
        ("S_PREV_AMP", k),
        ("S_TAIL", (n_seg - 1) * hop),
        ("S_POS", 1),
        ("S_REV", max(n_rev - 1, 0)),
        ("S_WRAP", hop),
        ("S_C2", hop),
        ("S_S0", hop),
        ("S_S1", hop),
        ("S_ACC_A", hop),
        ("S_ACC_B", hop),
        ("S_PK", k),
        ("S_DK", k),
    ):
        b.add(name, size)
    scratch = {
        "Y1": 2 * hp,
        "Y2": 2 * hp,
        "GI": 4 * hp,
        "GH": 3 * hp,
        "H": hp,
        "O1": hp,
        "O2": hp,
        "P": n_outp,
        "MAGS": nbp,
        "G": taps + 16,
        "Y": n_seg * hop,
        "WHITE": hop,
        "AUDIO": hop,
        "REVX": (n_rev - 1 + hop) if n_rev else 0,
        "KN": hop,
    }
    for name in L._SCRATCH_NAMES:
        b.add("X_" + name, scratch[name])
    return weights, b.layout


# the decoder's matrices and the tensor each is read from (int8 in a file `pimodule quantize` made)
MATRICES = {
    "W_W2": "w2",
    "W_AB": "w_ab",
    "W_HH": "w_hh",
    "W_X": "w_x",
    "W_LIN2": "lin_out2.weight",
    "W_PROJ": "proj.weight",
}


def _kernel_rows(name: str, src: np.ndarray, h: int, hp: int, n_outp: int) -> list[np.ndarray]:
    """The (out, in) matrices, zero-padded, that segment ``name`` holds (two for W_W2)."""
    if name == "W_W2":
        return [_pad(src[m].T, hp, hp) for m in range(2)]
    if name == "W_AB":
        # [a, b] (2H) -> [r, z, n, out] (4H); inputs a at [0, H), b at [HP, HP + H); each output block HP rows
        out = np.zeros((4 * hp, 2 * hp), src.dtype)
        for q in range(4):
            for m in range(2):
                out[q * hp : q * hp + h, m * hp : m * hp + h] = src[m * h : (m + 1) * h, q * h : (q + 1) * h].T
        return [out]
    if name == "W_HH":
        out = np.zeros((3 * hp, hp), src.dtype)
        for q in range(3):
            out[q * hp : q * hp + h, :h] = src[:, q * h : (q + 1) * h].T
        return [out]
    if name == "W_X":
        return [_pad(src.T, hp, hp)]
    return [_pad(src, n_outp if name == "W_PROJ" else hp, hp)]


def _pad(m: np.ndarray, rows: int, cols: int) -> np.ndarray:
    out = np.zeros((rows, cols), m.dtype)
    out[: m.shape[0], : m.shape[1]] = m
    return out


def _matrix(name: str, t: dict, scales: Mapping[str, np.ndarray], dims: tuple, int8: list) -> np.ndarray:
    """Segment ``name`` as float32 panels (:func:`layout.panels`) or, when the file holds the
    matrix as int8 with one scale per kernel row, as int8 rows (4 bytes per float32 element)
    followed by the rows' scales (what ``matvec_q8`` reads). int8 is kept only if ``q * scale`` gives back
    exactly the float32 values onnxruntime computes; otherwise the values are stored as float32."""
    key = MATRICES[name]
    values = _kernel_rows(name, np.asarray(t[key], np.float32), *dims)
    if key in scales:
        packed = [_q8_rows(v, s) for v, s in zip(values, _kernel_rows(name, np.asarray(scales[key]), *dims))]
        if all(p is not None for p in packed):
            int8.append(key)
            return np.concatenate(packed)
    return np.concatenate([L.panels(v, *v.shape) for v in values])


def _q8_rows(values: np.ndarray, scale: np.ndarray) -> np.ndarray | None:
    row = scale.max(axis=1).astype(np.float32)  # padding has scale 0
    if np.any((scale != row[:, None]) & (scale != 0)) or np.any(row < 0):
        return None  # not one scale per row
    safe = np.where(row > 0, row, 1).astype(np.float32)
    q = np.rint(values / safe[:, None])
    if np.abs(q).max(initial=0) > 127 or not np.array_equal((q.astype(np.float32) * row[:, None]), values):
        return None
    return np.concatenate([np.ascontiguousarray(q.astype(np.int8)).reshape(-1).view(np.float32), row])
