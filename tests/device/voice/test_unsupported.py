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


def test_int8_quantized_voice_is_unsupported(tmp_path):
    from pimodule.laptop.quantize import quantize

    out = tmp_path / "violin-small-int8.onnx"
    quantize(SMALL, out)
    with pytest.raises(UnsupportedVoice, match="MatMulInteger|DynamicQuantizeLinear|operators"):
        read_voice(out)


@pytest.mark.parametrize("name", ["fx", "fx-dry"])
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
