"""A model file is data: hostile files are refused by name before anything opens them, and
nothing outside the file is read (a canary file's content never shows up anywhere)."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, external_data_helper, helper, numpy_helper

from pimodule.core.modelfile import ModelFileError
from pimodule.device import modelcheck
from pimodule.device.session import ModelSession, open_model
from pimodule.device.store import ModelStore

EXPORT = Path(__file__).resolve().parents[2] / "export"


@pytest.fixture()
def canary(tmp_path) -> tuple[Path, bytes]:
    """A secret file next to the models folder: its bytes must never appear in any output."""
    secret = f"CANARY-{secrets.token_hex(16)}".encode()
    path = tmp_path / "secret.txt"
    path.write_bytes(secret * 64)
    return path, secret


def _voice(tmp_path, synthetic_voice, name="ok") -> onnx.ModelProto:
    return onnx.load(str(synthetic_voice(tmp_path / f"{name}.onnx")))


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def _external(model: onnx.ModelProto, location: str, length: int = 64) -> onnx.ModelProto:
    """The tone initializer's bytes moved to ``location`` (read as raw uint8)."""
    tensor = next(t for t in model.graph.initializer if t.name == "tone")
    leak = numpy_helper.from_array(np.zeros(length, np.uint8), "leak")
    external_data_helper.set_external_data(leak, location=location, offset=0, length=length)
    leak.data_location = TensorProto.EXTERNAL
    leak.ClearField("raw_data")
    model.graph.initializer.append(leak)
    model.graph.node.append(helper.make_node("Cast", ["leak"], ["leaked"], to=TensorProto.FLOAT))
    model.graph.output.append(helper.make_tensor_value_info("leaked", TensorProto.FLOAT, [length]))
    assert tensor is not None
    return model


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    return _varint((field << 3) | 2) + _varint(len(payload)) + payload


def _deep_protobuf(depth: int) -> bytes:
    """A ModelProto whose graph input's type nests ``depth`` levels (sequence of sequence of ...)."""
    t = b""
    for _ in range(depth // 2):
        t = _ld(4, _ld(1, t))  # TypeProto{sequence_type: {elem_type: t}}
    value_info = _ld(1, b"x") + _ld(2, t)
    return _varint(1 << 3) + _varint(8) + _ld(7, _ld(11, value_info))


def test_the_shipped_models_pass(tmp_path):
    for path in sorted(EXPORT.glob("*.onnx")):
        checked = modelcheck.check_file(path)
        assert checked.info.kind in ("ddsp", "fx") and set(checked.opsets) == {""}


def test_quantized_models_pass(tmp_path):
    """`pimodule quantize` (onnxruntime dynamic quantization) uses only standard operators."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out, src = tmp_path / "q.onnx", tmp_path / "violin-small.onnx"
    # onnxruntime writes a shape-inferred copy beside its input: a copy in tmp_path, not export/
    # (read-only on the emulated Pi, and never to be written by a test)
    shutil.copy(EXPORT / "violin-small.onnx", src)
    quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8)
    model = onnx.load(str(out))
    model.metadata_props.extend(onnx.load(str(EXPORT / "violin-small.onnx")).metadata_props)
    _save(model, out)
    checked = modelcheck.check_file(out)
    assert {n.op_type for n in model.graph.node} >= {"MatMulInteger", "DynamicQuantizeLinear"}
    assert checked.info.kind == "ddsp"


def test_external_data_is_refused_and_nothing_is_read(tmp_path, synthetic_voice, canary, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    secret_path, secret = canary
    models = tmp_path / "models"
    attacks = {
        "passwd": _save(_external(_voice(tmp_path, synthetic_voice), "/etc/passwd"), models / "passwd.onnx"),
        "absolute": _save(_external(_voice(tmp_path, synthetic_voice), str(secret_path)), models / "absolute.onnx"),
        "relative": _save(_external(_voice(tmp_path, synthetic_voice), "../secret.txt"), models / "relative.onnx"),
    }
    # the attack is real: onnxruntime given the path reads the secret and returns it as output
    import onnxruntime as ort

    sess = ort.InferenceSession(str(attacks["relative"]), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros([d or 1 for d in i.shape], np.float32) for i in sess.get_inputs()}
    leaked = sess.run(["leaked"], feeds)[0].astype(np.uint8).tobytes()
    assert leaked.startswith(secret[:32])
    del sess
    outputs = []
    for path in attacks.values():
        with pytest.raises(ModelFileError, match="outside the file") as err:
            modelcheck.check_file(path)
        outputs.append(str(err.value))
        with pytest.raises(ModelFileError, match="outside the file") as err:
            open_model(path)  # the runtime's loader goes through the check
        outputs.append(str(err.value))
        assert ModelSession.peek_kind(path) is None
    assert "/etc/passwd" in outputs[0]  # the refusal names where it pointed
    assert ModelStore(models).list("ddsp") == []  # by kind: none of them is a voice
    seen = "\n".join(outputs) + caplog.text + "".join(capfd.readouterr())
    assert secret.decode() not in seen


def _custom_domain(model):
    model.opset_import.append(helper.make_opsetid("com.evil", 1))
    model.graph.node.append(helper.make_node("ReadFile", ["tone"], ["x"], domain="com.evil"))
    return model


def _custom_domain_node_only(model):
    model.graph.node.append(helper.make_node("Gelu", ["tone"], ["x"], domain="com.microsoft"))
    return model


def _subgraph(model):
    inner = helper.make_graph(
        [helper.make_node("Identity", ["tone"], ["y"])], "inner", [], [helper.make_tensor_value_info("y", 1, [1, 64])]
    )
    outer = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=inner, else_branch=inner)],
        "outer",
        [],
        [helper.make_tensor_value_info("y", 1, [1, 64])],
    )
    model.graph.node.append(helper.make_node("If", ["cond"], ["z"], then_branch=outer, else_branch=inner))
    return model


def _meta(**changes):
    def edit(model):
        for entry in model.metadata_props:
            if entry.key in changes:
                entry.value = changes[entry.key]
        return model

    return edit


def _opset(version):
    def edit(model):
        model.opset_import[0].version = version
        return model

    return edit


def _huge_input(model):
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 10**7
    return model


def _path_attribute(model):
    model.graph.node[0].attribute.append(helper.make_attribute("location", "/etc/passwd"))
    return model


def _string_tensor(model):
    model.graph.initializer.append(helper.make_tensor("words", TensorProto.STRING, [1], [b"/etc/shadow"]))
    return model


def _local_function(model):
    fn = helper.make_function("evil", "f", ["a"], ["b"], [helper.make_node("Identity", ["a"], ["b"])], [])
    model.functions.append(fn)
    return model


@pytest.mark.parametrize(
    "edit, reason",
    [
        (_custom_domain, "operator domain 'com.evil' refused"),
        (_custom_domain_node_only, "operator domain 'com.microsoft'"),
        (_subgraph, "subgraph"),
        (_meta(**{"pimodule.block_size": "100000000"}), "pimodule.block_size 100000000 outside"),
        (_meta(**{"pimodule.block_size": "1000000000000"}), "block_size"),
        (_meta(**{"pimodule.controls": "[" * 5000 + "]" * 5000}), "nested deeper"),
        (_meta(**{"pimodule.state": '[{"name": "s", "shape": [1000000, 1000], "dtype": "float32"}]'}), "state"),
        (_opset(9), "opset 9 outside"),
        (_opset(99), "opset 99 outside"),
        (_huge_input, "declares dimension 10000000"),
        (_path_attribute, "looks like a path"),
        (_string_tensor, "string tensor"),
        (_local_function, "model-local functions"),
    ],
    ids=lambda v: getattr(v, "__name__", "")[:30] if callable(v) else None,
)
def test_hostile_graphs_and_metadata_are_refused_by_name(tmp_path, synthetic_voice, edit, reason):
    path = _save(edit(_voice(tmp_path, synthetic_voice)), tmp_path / "evil.onnx")
    with pytest.raises(ModelFileError, match=reason.replace("(", r"\(").replace("[", r"\[")):
        modelcheck.check_file(path)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "not an ONNX model"),
        (b"#!/bin/sh\nrm -rf /\n", "not an ONNX model"),
        ("truncated", "not an ONNX model"),
        ("deep", "not an ONNX model"),
    ],
    ids=["zero-length", "png", "shell", "truncated", "5000-deep"],
)
def test_broken_files_are_refused(tmp_path, content, reason):
    if content == "truncated":
        data = (EXPORT / "violin-small.onnx").read_bytes()
        content = data[: len(data) // 2]
    elif content == "deep":
        content = _deep_protobuf(5000)
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=reason):
        modelcheck.check_file(path)
    with pytest.raises(ModelFileError):
        open_model(path)


def test_a_too_large_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.onnx"
    with open(path, "wb") as f:
        f.truncate(65 * 1024 * 1024)  # sparse: 65 MiB announced, nothing on disk
    with pytest.raises(ModelFileError, match="larger than the 67108864 bytes"):
        modelcheck.check_file(path)
    with pytest.raises(ModelFileError, match="not a regular file"):
        modelcheck.check_file(Path("/dev/zero"))
    fifo = tmp_path / "fifo.onnx"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match="not a regular file"):  # no hang on a pipe
        modelcheck.check_file(fifo)
