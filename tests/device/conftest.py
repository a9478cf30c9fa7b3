"""Model files for the runtime tests: small untrained DDSP voices (built with torch, tests only)
and bad variants (corrupt, wrong kind, wrong rate, NaN output) derived from them with onnx."""

from __future__ import annotations

import contextlib
import functools
import shutil
from pathlib import Path

import numpy as np
import pytest


def _edit_metadata(src: Path, dst: Path, **changes: str) -> Path:
    import onnx

    proto = onnx.load(str(src))
    for entry in proto.metadata_props:
        if entry.key in changes:
            entry.value = changes[entry.key]
    onnx.save(proto, str(dst))
    return dst


def _nan_output(src: Path, dst: Path, output: str = "audio") -> Path:
    """The same model with one output (a voice's audio by default) multiplied by NaN: loads fine,
    fails the warm-up check."""
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(str(src))
    graph = proto.graph
    raw = f"{output}_raw"
    for node in graph.node:
        node.output[:] = [raw if o == output else o for o in node.output]
    graph.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan_const"))
    graph.node.append(helper.make_node("Mul", [raw, "nan_const"], [output]))
    onnx.save(proto, str(dst))
    return dst


@pytest.fixture(name="nan_output", scope="session")
def nan_output_fixture():
    """:func:`_nan_output` for tests that make NaN variants of their own model files."""
    return _nan_output


def _variant(src: Path, dst: Path, name: str) -> Path:
    """Another valid voice without a second torch export: the largest weight matrix scaled."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    init = max(
        (i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT),
        key=lambda i: int(np.prod(i.dims)),
    )
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(0.6), init.name))
    for entry in proto.metadata_props:
        if entry.key == "pimodule.name":
            entry.value = name
    onnx.save(proto, str(dst))
    return dst


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A models directory: voice_a.onnx (seed 0), voice_b.onnx (its variant) and bad_*.onnx."""
    from pimodule.laptop.ddsp.export import build_test_model

    d = tmp_path_factory.mktemp("models")
    a = build_test_model(d / "voice_a.onnx", seed=0)
    _variant(a, d / "voice_b.onnx", "test-1")
    (d / "bad_corrupt.onnx").write_bytes(b"\x08\x07garbage, not a protobuf" * 10)
    _edit_metadata(a, d / "bad_kind.onnx", **{"pimodule.kind": "fx"})
    _edit_metadata(a, d / "bad_rate.onnx", **{"pimodule.sample_rate": "22050"})
    _nan_output(a, d / "bad_nan.onnx")
    return d


@contextlib.contextmanager
def _fx_daemon(tmp_path: Path, model: Path, signal: np.ndarray, seconds: float, **fx):
    """A daemon in fx mode with ``model`` as its only estimator (``fx`` overrides the ``[fx]``
    table), playing ``signal`` (mono: L; ``(samples, 2)``: L and R) offline in real time, its OSC
    server and fx threads running; stopped and closed on exit."""
    import threading

    from pimodule.device import daemon as daemon_mod
    from pimodule.device.config import parse_config

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(model, models / model.name)  # a copy: the store refuses links pointing out of it
    cfg = parse_config(
        {
            "osc": {"port": 0},
            "models": {"dir": str(models), "default": ""},
            "engine": {"mode": "fx"},
            "cv": {"backend": "simulated"},
            "fx": {"model": model.stem, "interval_s": 0.1, **fx},
        },
        "test",
    )
    d = daemon_mod.build(cfg)
    thread = threading.Thread(
        target=lambda: d.runner.run_offline(
            seconds, block_size=128, input_signal=signal, should_stop=d.stop_event.is_set
        )
    )
    d.fx.start()
    d.osc.start()
    thread.start()
    try:
        yield d
    finally:
        d.stop_event.set()
        thread.join(30)
        d.close()


@pytest.fixture(name="fx_daemon")
def fx_daemon_fixture(tmp_path):
    """``with fx_daemon(model, signal, seconds, **fx) as d:`` a running fx-mode daemon (above)."""
    return functools.partial(_fx_daemon, tmp_path)


# -- synthetic voices for the trust-boundary tests (built with onnx.helper, no torch) -------------
def synthetic_voice(path: Path, behaviour: str = "ok", *, size: int = 512, n_matmuls: int = 6, **meta) -> Path:
    """A minimal voice (``f0_hz``, ``loudness_db``, ``controls`` (1 control) and a ``counter``
    state -> ``audio`` (64 samples), ``counter_next``) that behaves as asked:

    ``ok``: a quiet tone; ``nan_later``: the counter state turns NaN after 100 frames;
    ``slow``: ``n_matmuls`` chained ``size``x``size`` MatMuls a frame (computed from the input, so
    nothing is folded at load); ``hungry``: a 20000x20000 float tensor (1.6 GB) a frame;
    ``hang``: like slow with 40 1024x1024 MatMuls a frame (about 1 s here).
    ``meta`` overrides metadata entries (``{"pimodule.block_size": "100000000"}``)."""
    import json

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value, dtype=np.float32):
        return numpy_helper.from_array(np.asarray(value, dtype), name)

    inits = [
        const("tone", 0.1 * np.sin(2 * np.pi * np.arange(64) / 16)[None, :]),
        const("one", 1.0),
        const("limit", 100.0),
        const("nan", np.nan),
        const("zero", 0.0),
    ]
    nodes = [helper.make_node("Add", ["counter", "one"], ["counter_plus"])]
    if behaviour == "nan_later":
        nodes += [
            helper.make_node("Greater", ["counter", "limit"], ["late"]),
            helper.make_node("Where", ["late", "nan", "counter_plus"], ["counter_next"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["counter_plus"], ["counter_next"]))
    audio_src = "tone"
    if behaviour in ("slow", "hang", "hungry"):
        n, k = {"slow": (size, n_matmuls), "hang": (1024, 40), "hungry": (20000, 1)}[behaviour]
        inits += [const("shape", [n, n], np.int64), const("scale", 1.0 / n)]
        nodes += [
            helper.make_node(
                "ConstantOfShape", ["shape"], ["c"], value=numpy_helper.from_array(np.ones(1, np.float32))
            ),
            helper.make_node("Mul", ["c", "scale"], ["w"]),  # rows sum to 1: the chain stays finite
            helper.make_node("Mul", ["c", "loudness_db"], ["h0"]),
        ]
        for i in range(k):
            nodes.append(helper.make_node("MatMul", [f"h{i}", "w"], [f"h{i + 1}"]))
        nodes += [
            helper.make_node("ReduceSum", [f"h{k}"], ["s"], keepdims=0),
            helper.make_node("Mul", ["s", "zero"], ["s0"]),
            helper.make_node("Add", ["tone", "s0"], ["tone_plus"]),
        ]
        audio_src = "tone_plus"
    nodes.append(helper.make_node("Identity", [audio_src], ["audio"]))
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "voice",
        [
            helper.make_tensor_value_info("f0_hz", f, [1, 1]),
            helper.make_tensor_value_info("loudness_db", f, [1, 1]),
            helper.make_tensor_value_info("controls", f, [1, 1]),
            helper.make_tensor_value_info("counter", f, [1, 1]),
        ],
        [helper.make_tensor_value_info("audio", f, [1, 64]), helper.make_tensor_value_info("counter_next", f, [1, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    controls = [{"name": "gain_db", "unit": "dB", "min": -12.0, "max": 12.0, "default": 0.0, "scale": "lin"}]
    metadata = {
        "pimodule.kind": "ddsp",
        "pimodule.name": path.stem,
        "pimodule.sample_rate": "16000",
        "pimodule.block_size": "64",
        "pimodule.controls": json.dumps(controls),
        "pimodule.state": json.dumps([{"name": "counter", "shape": [1, 1], "dtype": "float32", "init": 0.0}]),
        "pimodule.version": "1",
        "pimodule.provenance": json.dumps({"data": "synthetic", "behaviour": behaviour}),
    } | meta
    helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


@pytest.fixture(name="synthetic_voice", scope="session")
def synthetic_voice_fixture():
    """:func:`synthetic_voice`: small voices that go bad later, are slow, hungry or hang."""
    return synthetic_voice
