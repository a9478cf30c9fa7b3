"""Files the kernel must refuse (UnsupportedVoice with a reason; the engine then plays them
through onnxruntime or refuses them), and graph edits it must follow or refuse: never a wrong
voice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pimodule.device.voice import UnsupportedVoice, read_voice
from pimodule.device.voice.verify import compare, sweep

from .conftest import EXPORT

SMALL = EXPORT / "violin-small.onnx"


def _load():
    import onnx

    return onnx.load(str(SMALL))


def _save(proto, path):
    import onnx

    onnx.save(proto, str(path))
    return path


def test_dynamically_quantized_voice_is_unsupported(tmp_path):
    """onnxruntime's dynamic quantization (int8 activations too) is not the FrameVoice graph: it
    plays through onnxruntime in the worker."""
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, out = tmp_path / "violin-small.onnx", tmp_path / "dynamic.onnx"
    shutil.copy(SMALL, src)  # onnxruntime writes beside its input: never in export/
    quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8)
    with pytest.raises(UnsupportedVoice, match="MatMulInteger|DynamicQuantizeLinear|operators"):
        read_voice(out)


def _int8(tmp_path):
    from pimodule.laptop.quantize import quantize

    out = tmp_path / "violin-small-int8.onnx"
    quantize(SMALL, out)
    return out


def test_int8_weights_are_read_as_int8_and_match_onnxruntime(tmp_path):
    """`pimodule quantize` keeps the graph and stores its matrices as int8 + scales: the kernel
    reads them as int8 (a quarter of the bytes) and still matches onnxruntime."""
    path = _int8(tmp_path)
    voice, ref = read_voice(path), read_voice(SMALL)
    assert sorted(voice.constants["int8"]) == ["lin_out2.weight", "proj.weight", "w2", "w_ab", "w_hh", "w_x"]
    assert voice.weights.nbytes < 0.5 * ref.weights.nbytes
    result = compare(voice, *sweep(200, voice))
    assert result["audio_rms"] > 0.01 and result["audio"] <= 1e-5 and result["gru_h"] <= 5e-5


def _edit_dequantize(path, tmp_path, edit):
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    inits = {i.name: i for i in proto.graph.initializer}
    node = next(n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == "w_hh")
    edit(proto, node, inits, numpy_helper)
    return _save(proto, tmp_path / "edited.onnx")


def test_int8_with_a_zero_point_is_refused(tmp_path):
    def zero_point(proto, node, inits, nh):
        z = nh.to_array(inits[node.input[2]]).copy()
        z[0] = 3
        inits[node.input[2]].CopyFrom(nh.from_array(z, node.input[2]))

    with pytest.raises(UnsupportedVoice, match="zero points"):
        read_voice(_edit_dequantize(_int8(tmp_path), tmp_path, zero_point))


def test_int8_scaled_along_the_inputs_is_kept_as_float32_and_still_matches(tmp_path):
    """Scales per input column are not one scale per kernel row: that matrix is stored as the
    float32 values onnxruntime computes, the others stay int8."""

    def per_input(proto, node, inits, nh):
        q = nh.to_array(inits[node.input[0]])
        scale = np.linspace(0.5, 1.5, q.shape[0]).astype(np.float32) * float(nh.to_array(inits[node.input[1]]).max())
        inits[node.input[1]].CopyFrom(nh.from_array(scale, node.input[1]))
        inits[node.input[2]].CopyFrom(nh.from_array(np.zeros(q.shape[0], np.int8), node.input[2]))
        for a in node.attribute:
            if a.name == "axis":
                a.i = 0

    voice = read_voice(_edit_dequantize(_int8(tmp_path), tmp_path, per_input))
    assert "w_hh" not in voice.constants["int8"] and "w_ab" in voice.constants["int8"]
    result = compare(voice, *sweep(100, voice))
    assert result["audio"] <= 1e-5 and result["gru_h"] <= 5e-5


@pytest.mark.parametrize("name", ["fx", "fx-dry", "fx-ref"])
def test_effect_estimator_is_unsupported(name):
    with pytest.raises(UnsupportedVoice, match="not a ddsp voice"):
        read_voice(EXPORT / f"{name}.onnx")


def test_truncated_garbage_empty_and_missing_files(tmp_path):
    data = SMALL.read_bytes()
    cases = {
        "truncated.onnx": data[: len(data) // 2],
        "garbage.onnx": b"\x08\x07not a protobuf" * 50,
        "empty.onnx": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UnsupportedVoice):
            read_voice(tmp_path / name)
    with pytest.raises(UnsupportedVoice, match="cannot read"):
        read_voice(tmp_path / "missing.onnx")


def test_external_data_is_refused(tmp_path):
    import onnx

    path = tmp_path / "external.onnx"
    onnx.save_model(
        _load(),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=1024,
    )
    assert (tmp_path / "weights.bin").is_file()
    with pytest.raises(UnsupportedVoice, match="external data"):
        read_voice(path)


def test_extra_node_is_refused(tmp_path, nan_output):
    """The NaN-output variant of tests/device/conftest.py: one more Mul on the audio."""
    with pytest.raises(UnsupportedVoice, match="operators"):
        read_voice(nan_output(SMALL, tmp_path / "nan.onnx"))


def test_rewired_gru_is_refused(tmp_path):
    """h_prev - n swapped to n - h_prev: the same operators, another function."""
    proto = _load()
    sub = next(n for n in proto.graph.node if n.op_type == "Sub" and "view_2" in n.input)
    sub.input[:] = list(sub.input)[::-1]
    with pytest.raises(UnsupportedVoice, match="GRU update"):
        read_voice(_save(proto, tmp_path / "rewired.onnx"))


@pytest.mark.parametrize(
    "key, edit",
    [
        ("pimodule.kind", lambda v: "fx"),
        ("pimodule.state", lambda v: json.dumps(json.loads(v)[:-1])),
        ("pimodule.block_size", lambda v: "128"),
        ("pimodule.version", lambda v: "99"),
    ],
)
def test_inconsistent_metadata_is_refused(tmp_path, key, edit):
    proto = _load()
    entry = next(p for p in proto.metadata_props if p.key == key)
    entry.value = edit(entry.value)
    with pytest.raises(UnsupportedVoice):
        read_voice(_save(proto, tmp_path / "meta.onnx"))


def test_constants_are_read_from_the_graph(tmp_path):
    """Other LeakyReLU slopes and LayerNorm epsilons in the file: the kernel uses them (and still
    matches onnxruntime) instead of assuming 0.1 and 1e-5."""
    from onnx import helper

    proto = _load()
    for node in proto.graph.node:
        if node.op_type in ("LeakyRelu", "LayerNormalization"):
            name = "alpha" if node.op_type == "LeakyRelu" else "epsilon"
            value = 0.3 if name == "alpha" else 1e-2
            kept = [a for a in node.attribute if a.name != name]
            del node.attribute[:]
            node.attribute.extend(kept + [helper.make_attribute(name, value)])
    voice = read_voice(_save(proto, tmp_path / "constants.onnx"))
    assert np.allclose(voice.constants["slope"], 0.3) and np.allclose(voice.constants["eps"], 1e-2)
    result = compare(voice, *sweep(150, voice))
    assert result["audio"] <= 1e-5 and result["gru_h"] <= 5e-5
