"""A model file is data: checked here, as bytes, before onnxruntime (or anything else) opens it.

:func:`check_file` reads at most :attr:`Budget.max_file_bytes` (a larger file is refused from
its size, before a byte is read), parses the protobuf with the ``onnx`` package from those
bytes (never from a path, so no external data can be loaded), and refuses, naming what it
refused:

- any tensor (initializer, ``Constant`` value, sparse tensor) whose data lives outside the file
  (``external_data`` entries or ``data_location != DEFAULT``), any string tensor, any string
  attribute that looks like a path;
- operator domains other than the standard one (``""`` / ``ai.onnx``): the shipped voices and
  estimators, the files ``pimodule quantize`` makes (``DequantizeLinear``) and onnxruntime's
  dynamically quantized ones (``DynamicQuantizeLinear``, ``MatMulInteger``) use nothing else; model-local functions; control-flow
  subgraphs (``If``/``Loop``/``Scan`` bodies): none of the project's models has one;
- opsets outside :attr:`Budget.min_opset`..:attr:`Budget.max_opset` (17..21: what the exporter
  writes and onnxruntime 1.20 runs), IR versions above 10;
- graphs beyond the size budget (nodes, initializer bytes), declared input/output/value shapes
  beyond the shape budget (any dimension above 1e6, any tensor above 16 M elements);
- metadata that does not parse or is out of bounds (``pimodule.block_size`` above 131 072, a
  state above 1 M elements, more than 256 controls, over-long or deeply nested JSON).

numpy and the ``onnx`` package only: no onnxruntime here.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from pimodule.core import modelfile
from pimodule.core.modelfile import ModelFileError, ModelInfo

MiB = 1024 * 1024
STANDARD_DOMAINS = ("", "ai.onnx")
STATE_DTYPES = ("float32", "float64", "int64")
_FILE_LIKE = ("/", "\\", "\x00", "..")
KEY_CHAIN = "pimodule.fx.chain"


@dataclass(frozen=True)
class Budget:
    """What a model file may declare before anything loads it."""

    max_file_bytes: int = 64 * MiB
    max_nodes: int = 20000
    max_initializer_bytes: int = 64 * MiB
    max_dim: int = 1_000_000
    max_tensor_elements: int = 16 * MiB  # 64 MiB of float32
    max_block_size: int = 131072  # fx windows are 16 128 samples, voice frames 64
    max_state_elements: int = 1 * MiB
    max_controls: int = 256
    max_metadata_bytes: int = 1 * MiB  # all metadata values together
    max_json_depth: int = 32
    min_opset: int = modelfile.MIN_OPSET
    max_opset: int = 21
    max_ir_version: int = 10
    max_string_attribute: int = 256


DEFAULT_BUDGET = Budget()


@dataclass(frozen=True)
class Checked:
    """What the check read: the parsed metadata and the graph's vital figures."""

    info: ModelInfo
    metadata: dict[str, str]
    n_nodes: int
    initializer_bytes: int
    opsets: dict[str, int]
    inputs: dict[str, tuple] = field(default_factory=dict)
    outputs: dict[str, tuple] = field(default_factory=dict)


def _short(text: object, n: int = 80) -> str:
    return repr(text)[:n]


def read_bounded(path: str | Path, budget: Budget = DEFAULT_BUDGET) -> bytes:
    """The file's bytes; refused (ModelFileError) when empty, not a regular file, or larger than
    the budget: the size is looked at before a byte is read."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise ModelFileError(f"{path.name}: cannot open the model file ({err.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelFileError(f"{path.name}: not a regular file")
        if st.st_size == 0:
            raise ModelFileError(f"{path.name}: empty file (0 bytes)")
        if st.st_size > budget.max_file_bytes:
            raise ModelFileError(
                f"{path.name}: {st.st_size} bytes, larger than the {budget.max_file_bytes} bytes a model may have"
            )
        chunks, left = [], budget.max_file_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, MiB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > budget.max_file_bytes:
        raise ModelFileError(f"{path.name}: grew beyond {budget.max_file_bytes} bytes while it was read")
    return data


def check_file(path: str | Path, budget: Budget = DEFAULT_BUDGET) -> Checked:
    """Read (bounded) and check a model file; ModelFileError naming what was refused."""
    path = Path(path)
    return check_bytes(read_bounded(path, budget), path.name, budget)


def load_checked(path: str | Path, budget: Budget = DEFAULT_BUDGET) -> tuple[bytes, Checked]:
    """The file's bytes (give these to onnxruntime, not the path) and what the check read."""
    path = Path(path)
    data = read_bounded(path, budget)
    return data, check_bytes(data, path.name, budget)


def check_bytes(data: bytes, source: str = "model", budget: Budget = DEFAULT_BUDGET) -> Checked:
    """Check a model file's bytes (see the module's docstring)."""
    if not data:
        raise ModelFileError(f"{source}: empty file (0 bytes)")
    if len(data) > budget.max_file_bytes:
        raise ModelFileError(f"{source}: {len(data)} bytes, larger than the {budget.max_file_bytes} bytes allowed")
    try:
        model = onnx.ModelProto()
        model.ParseFromString(data)
    except Exception as err:  # noqa: BLE001 - protobuf raises DecodeError, RecursionError, ...
        raise ModelFileError(
            f"{source}: cannot load it: not an ONNX model (its protobuf does not parse: {type(err).__name__})"
        ) from None
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise ModelFileError(f"{source}: cannot load it: not an ONNX model (no graph)")
    _check_model(model, source, budget)
    metadata = _metadata(model, source, budget)
    info = _info(metadata, source, budget)
    inputs = {vi.name: _shape(vi, source, budget, "input") for vi in model.graph.input}
    outputs = {vi.name: _shape(vi, source, budget, "output") for vi in model.graph.output}
    for vi in model.graph.value_info:
        _shape(vi, source, budget, "value")
    return Checked(
        info=info,
        metadata=metadata,
        n_nodes=len(model.graph.node),
        initializer_bytes=_initializer_bytes(model.graph),
        opsets={o.domain: int(o.version) for o in model.opset_import},
        inputs=inputs,
        outputs=outputs,
    )


# -- the graph ---------------------------------------------------------------------------------
def _check_model(model, source: str, budget: Budget) -> None:
    if model.ir_version > budget.max_ir_version:
        raise ModelFileError(
            f"{source}: IR version {model.ir_version}, this module reads up to {budget.max_ir_version}"
        )
    if len(model.functions):
        raise ModelFileError(f"{source}: model-local functions ({_short(model.functions[0].name)}) are not allowed")
    if not len(model.opset_import):
        raise ModelFileError(f"{source}: declares no opset")
    for opset in model.opset_import:
        if opset.domain not in STANDARD_DOMAINS:
            raise ModelFileError(
                f"{source}: operator domain {_short(opset.domain)} refused (only the standard ONNX domain is allowed)"
            )
        if not budget.min_opset <= opset.version <= budget.max_opset:
            raise ModelFileError(
                f"{source}: opset {opset.version} outside the supported {budget.min_opset}..{budget.max_opset}"
            )
    graph = model.graph
    if len(graph.node) > budget.max_nodes:
        raise ModelFileError(f"{source}: {len(graph.node)} nodes, more than the {budget.max_nodes} allowed")
    for tensor in graph.initializer:
        _check_tensor(tensor, source, budget, "initializer")
    for sparse in graph.sparse_initializer:
        _check_tensor(sparse.values, source, budget, "sparse initializer")
        _check_tensor(sparse.indices, source, budget, "sparse initializer")
    total = _initializer_bytes(graph)
    if total > budget.max_initializer_bytes:
        raise ModelFileError(
            f"{source}: {total} bytes of weights, more than the {budget.max_initializer_bytes} allowed"
        )
    for node in graph.node:
        _check_node(node, source, budget)


def _check_node(node, source: str, budget: Budget) -> None:
    what = f"node {_short(node.name or node.op_type, 40)} ({_short(node.op_type, 40)})"
    if node.domain not in STANDARD_DOMAINS:
        raise ModelFileError(
            f"{source}: {what} is in operator domain {_short(node.domain)}: only the standard ONNX domain is allowed"
        )
    A = onnx.AttributeProto
    for attr in node.attribute:
        if attr.ref_attr_name:
            raise ModelFileError(f"{source}: {what} refers to a function attribute")
        if attr.type in (A.GRAPH, A.GRAPHS) or attr.HasField("g") or len(attr.graphs):
            raise ModelFileError(f"{source}: {what} has a subgraph (control flow is not allowed in a model file)")
        if attr.type == A.TENSOR or attr.HasField("t"):
            _check_tensor(attr.t, source, budget, f"{what} attribute {attr.name}")
        for tensor in attr.tensors:
            _check_tensor(tensor, source, budget, f"{what} attribute {attr.name}")
        if attr.HasField("sparse_tensor"):
            _check_tensor(attr.sparse_tensor.values, source, budget, f"{what} attribute {attr.name}")
            _check_tensor(attr.sparse_tensor.indices, source, budget, f"{what} attribute {attr.name}")
        if len(attr.sparse_tensors):
            raise ModelFileError(f"{source}: {what} has sparse tensor lists")
        for text in [attr.s, *attr.strings]:
            if len(text) > budget.max_string_attribute or any(t.encode() in text for t in _FILE_LIKE):
                raise ModelFileError(
                    f"{source}: {what} attribute {_short(attr.name, 40)} holds a string that looks like a "
                    f"path or is too long ({_short(text[:60])})"
                )


def _check_tensor(tensor, source: str, budget: Budget, where: str) -> None:
    name = _short(tensor.name, 60)
    if len(tensor.external_data) or tensor.data_location != onnx.TensorProto.DEFAULT:
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        raise ModelFileError(
            f"{source}: {where} {name} keeps its data outside the file (external data"
            f"{' at ' + _short(location, 60) if location else ''}): a model file must be self-contained"
        )
    if tensor.data_type == onnx.TensorProto.STRING or len(tensor.string_data):
        raise ModelFileError(f"{source}: {where} {name} is a string tensor (not allowed)")
    n = 1
    for d in tensor.dims:
        if d < 0 or d > budget.max_dim:
            raise ModelFileError(f"{source}: {where} {name} declares dimension {d} (budget {budget.max_dim})")
        n *= int(d)
    if n > budget.max_tensor_elements:
        raise ModelFileError(f"{source}: {where} {name} has {n} elements (budget {budget.max_tensor_elements})")


def _initializer_bytes(graph) -> int:
    total = 0
    for t in graph.initializer:
        total += len(t.raw_data) + 8 * (len(t.int64_data) + len(t.double_data) + len(t.uint64_data))
        total += 4 * (len(t.float_data) + len(t.int32_data))
    return total


def _shape(vi, source: str, budget: Budget, what: str) -> tuple:
    """The declared shape of a graph input/output/value (symbolic dimensions as their names)."""
    tensor_type = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise ModelFileError(f"{source}: {what} {_short(vi.name, 60)} is not a tensor")
    dims, n = [], 1
    for d in tensor_type.shape.dim:
        if d.HasField("dim_value"):
            if not 0 <= d.dim_value <= budget.max_dim:
                raise ModelFileError(
                    f"{source}: {what} {_short(vi.name, 60)} declares dimension {d.dim_value} (budget {budget.max_dim})"
                )
            dims.append(int(d.dim_value))
            n *= int(d.dim_value)
        else:
            dims.append(d.dim_param[:32] or "?")
    if n > budget.max_tensor_elements:
        raise ModelFileError(
            f"{source}: {what} {_short(vi.name, 60)} declares {n} elements (budget {budget.max_tensor_elements})"
        )
    return tuple(dims)


# -- the metadata ------------------------------------------------------------------------------
def _json_depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _metadata(model, source: str, budget: Budget) -> dict[str, str]:
    meta: dict[str, str] = {}
    total = 0
    for entry in model.metadata_props:
        total += len(entry.key) + len(entry.value)
        if total > budget.max_metadata_bytes:
            raise ModelFileError(f"{source}: more than {budget.max_metadata_bytes} bytes of metadata")
        meta[entry.key] = entry.value
    for key in (modelfile.KEY_CONTROLS, modelfile.KEY_STATE, modelfile.KEY_PROVENANCE, KEY_CHAIN):
        if key in meta and _json_depth(meta[key]) > budget.max_json_depth:
            raise ModelFileError(f"{source}: metadata {key} is nested deeper than {budget.max_json_depth}")
    return meta


def _info(meta: dict[str, str], source: str, budget: Budget) -> ModelInfo:
    try:
        info = modelfile.parse_metadata(meta, source)
    except RecursionError:
        raise ModelFileError(f"{source}: malformed pimodule metadata (nested too deep)") from None
    if not 0 < info.block_size <= budget.max_block_size:
        raise ModelFileError(
            f"{source}: pimodule.block_size {info.block_size} outside 1..{budget.max_block_size} samples"
        )
    if len(info.controls) > budget.max_controls:
        raise ModelFileError(f"{source}: {len(info.controls)} controls, more than {budget.max_controls}")
    for spec in info.controls:
        values = (spec.min, spec.max, spec.default)
        if not all(np.isfinite(v) for v in values):
            raise ModelFileError(f"{source}: control {_short(spec.name, 40)} has a non-finite range or default")
    total = 0
    for spec in info.state:
        if spec.dtype not in STATE_DTYPES:
            raise ModelFileError(f"{source}: state {_short(spec.name, 40)} has dtype {_short(spec.dtype, 20)}")
        if not np.isfinite(spec.init):
            raise ModelFileError(f"{source}: state {_short(spec.name, 40)} starts non-finite")
        n = 1
        for d in spec.shape:
            if not 0 < d <= budget.max_dim:
                raise ModelFileError(f"{source}: state {_short(spec.name, 40)} declares dimension {d}")
            n *= d
        total += n
    if total > budget.max_state_elements:
        raise ModelFileError(f"{source}: state of {total} elements, more than {budget.max_state_elements}")
    if KEY_CHAIN in meta:
        try:
            json.loads(meta[KEY_CHAIN])
        except (ValueError, RecursionError):
            raise ModelFileError(f"{source}: metadata {KEY_CHAIN} is not JSON") from None
    return info
