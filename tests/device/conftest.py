"""Model files for the runtime tests: small untrained DDSP voices (built with torch, tests only)
and bad variants (corrupt, wrong kind, wrong rate, NaN output) derived from them with onnx."""

from __future__ import annotations

import contextlib
import functools
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
    (models / model.name).symlink_to(model)
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
