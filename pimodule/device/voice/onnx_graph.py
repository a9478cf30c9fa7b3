"""A read-only view of an ONNX graph for recognising one known function: producers, consumers,
initializer values, and the error every recognition step raises (:class:`UnsupportedVoice`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_MODEL_BYTES = 64 * 1024 * 1024


class UnsupportedVoice(Exception):
    """The file is not a FrameVoice graph this kernel reproduces (``reason`` says why)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class Graph:
    """An ONNX graph indexed for the checks: producers, consumers and initializer values."""

    def __init__(self, proto):
        from onnx import numpy_helper

        g = proto.graph
        self.nodes = list(g.node)
        self.inits = {}
        for init in g.initializer:
            if init.data_location == 1 or len(init.external_data):
                raise UnsupportedVoice(f"initializer {init.name!r} has external data")
            self.inits[init.name] = numpy_helper.to_array(init)
        self.consumers: dict[str, list[tuple[object, int]]] = {}
        self.producer = {}
        for node in self.nodes:
            for slot, name in enumerate(node.input):
                self.consumers.setdefault(name, []).append((node, slot))
            for name in node.output:
                self.producer[name] = node

    def const(self, name: str, what: str) -> np.ndarray:
        if name not in self.inits:
            raise UnsupportedVoice(f"{what}: {name!r} is not a constant")
        return self.inits[name]

    def scalar(self, name: str, what: str) -> float:
        value = self.const(name, what)
        if value.size != 1:
            raise UnsupportedVoice(f"{what}: expected one value, got shape {value.shape}")
        return float(value.reshape(()))

    def use(self, tensor: str, op: str, what: str):
        """The one consumer of ``tensor`` that is an ``op`` node."""
        users = [n for n, _ in self.consumers.get(tensor, []) if n.op_type == op]
        if len(users) != 1:
            found = [n.op_type for n, _ in self.consumers.get(tensor, [])]
            raise UnsupportedVoice(f"{what}: expected {tensor!r} to feed one {op}, it feeds {found}")
        return users[0]

    def after(self, node, op: str, what: str):
        return self.use(node.output[0], op, what)

    def operand(self, node, known: str, what: str) -> str:
        """The other input of a two-input ``node`` of which ``known`` is one."""
        if len(node.input) != 2 or known not in node.input:
            raise UnsupportedVoice(f"{what}: {node.op_type} reads {list(node.input)}, not {known!r}")
        return node.input[1] if node.input[0] == known else node.input[0]

    def weight(self, node, known: str, what: str, shape: tuple, dtype=np.float32) -> np.ndarray:
        """The constant input of ``node`` beside ``known``, checked for shape and dtype."""
        value = self.const(self.operand(node, known, what), what)
        if value.shape != tuple(shape) or value.dtype != dtype:
            raise UnsupportedVoice(f"{what}: {value.dtype} {value.shape}, expected {np.dtype(dtype)} {tuple(shape)}")
        return value

    def ints(self, name: str, what: str) -> list[int]:
        return [int(v) for v in np.asarray(self.const(name, what)).reshape(-1)]

    def expect(self, node, inputs: list[str], what: str) -> None:
        if list(node.input) != inputs:
            raise UnsupportedVoice(f"{what}: {node.op_type} reads {list(node.input)}, expected {inputs}")


def load(path: str | Path):
    """The ONNX protobuf, refusing oversized files, unparsable ones and external data."""
    import onnx

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise UnsupportedVoice(f"cannot read {path}: {err}") from err
    if not 0 < size <= MAX_MODEL_BYTES:
        raise UnsupportedVoice(f"implausible model size ({size} bytes)")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises DecodeError and others
        raise UnsupportedVoice(f"not a readable ONNX file ({type(err).__name__}: {err})") from err
    return proto


def fold_dequantize(proto) -> dict[str, np.ndarray]:
    """Replace every ``DequantizeLinear`` of constants (int8 weights, float32 scales per output
    channel or one scale, zero points 0: what ``pimodule quantize`` writes) by the float32
    constant onnxruntime computes from it, ``q * scale``. Returns {name: its scales, broadcast to
    its shape} for the packer, which keeps such matrices as int8 and their scales. ``proto`` is edited in place;
    any other ``DequantizeLinear`` stays and fails the operator check."""
    from onnx import numpy_helper

    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    folded: dict[str, np.ndarray] = {}
    keep = []
    for node in g.node:
        if node.op_type != "DequantizeLinear" or not all(n in inits for n in node.input):
            keep.append(node)
            continue
        q, scale = (numpy_helper.to_array(inits[n]) for n in node.input[:2])
        zero = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 else np.zeros(1, np.int8)
        attrs = _attrs(node)
        axis = int(attrs.get("axis", 1))
        what = f"int8 weight {node.output[0]!r}"
        if q.dtype != np.int8 or scale.dtype != np.float32 or q.ndim < 2 or attrs.get("block_size", 0):
            raise UnsupportedVoice(f"{what}: {q.dtype} values with {scale.dtype} scales, not int8 per channel")
        if np.any(zero != 0) or not np.all(np.isfinite(scale)):
            raise UnsupportedVoice(f"{what}: zero points must be 0 and scales finite")
        axis = axis % q.ndim
        if scale.size != 1 and scale.shape != (q.shape[axis],):
            raise UnsupportedVoice(f"{what}: scales {scale.shape} for axis {axis} of {q.shape}")
        shape = [1] * q.ndim
        shape[axis] = scale.size
        value = q.astype(np.float32) * scale.reshape(shape)
        g.initializer.append(numpy_helper.from_array(value, node.output[0]))
        folded[node.output[0]] = np.broadcast_to(scale.reshape(shape), q.shape)
    del g.node[:]
    g.node.extend(keep)
    return folded
