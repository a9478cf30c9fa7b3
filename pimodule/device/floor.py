"""``pimodule bench --floor``: what a callback costs on this board before any model arithmetic.

Two numbers bound how cheap the daemon's callback can get, whatever the voice:

- the callback with no model loaded (the model frame is silence): control frame, 16 → 48 kHz
  resampling, ring buffer, fader, guard and the copy to the device's channels, all in Python;
- onnxruntime's own cost per run and per node, timed on chains of trivial ``Add`` nodes bound
  with IOBinding as the engine binds its models (needs the ``onnx`` package to build the graphs;
  skipped on a module without it).

A voice frame costs at least (run + nodes × per-node) on top of its arithmetic; the README's
real-time section reads the aim against these numbers.
"""

from __future__ import annotations

import time

import numpy as np

from pimodule.device.audio import AudioRunner
from pimodule.device.engine import VoiceEngine
from pimodule.device.session import session_options

N_TIMED = 3000


def _percentiles(t_ns: np.ndarray) -> dict:
    t = t_ns / 1e3
    return {"p50_us": float(np.percentile(t, 50)), "p99_us": float(np.percentile(t, 99)), "mean_us": float(t.mean())}


def callback_without_model(block_size: int, rate_hz: int = 48000, n_blocks: int = N_TIMED) -> dict:
    """The daemon's callback (synth mode, moving CV) with no model: everything but onnxruntime."""

    engine = VoiceEngine(device_rate_hz=rate_hz, max_block=block_size)
    runner = AudioRunner(engine, sample_rate_hz=rate_hz, realtime_priority=False)
    out = np.zeros((block_size, 2), np.float32)
    t = np.zeros(n_blocks, np.int64)
    for i in range(n_blocks + 50):
        engine.cv_values[0] = (i % 48) / 24.0 - 1.0
        t0 = time.perf_counter_ns()
        runner.callback(None, out, block_size, None, None)
        if i >= 50:
            t[i - 50] = time.perf_counter_ns() - t0
    return {"what": "callback without a model", "block_size": block_size, **_percentiles(t)}


def _chain_model(n_nodes: int, size: int) -> bytes:
    from onnx import TensorProto, helper

    nodes, prev = [], "x"
    for i in range(n_nodes):
        nodes.append(helper.make_node("Add", [prev, "c"], [f"t{i}"]))
        prev = f"t{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, size])],
        [helper.make_tensor("c", TensorProto.FLOAT, [1], [1e-3])],
    )
    # IR 9: what onnxruntime 1.20 reads (newer onnx writes a newer IR by default)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9).SerializeToString()


def _time_chain(n_nodes: int, size: int, n_runs: int) -> np.ndarray:
    import onnxruntime as ort

    opts = session_options()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node
    sess = ort.InferenceSession(_chain_model(n_nodes, size), opts, providers=["CPUExecutionProvider"])
    x, y = np.zeros((1, size), np.float32), np.zeros((1, size), np.float32)
    binding = sess.io_binding()
    binding.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(x))
    binding.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(y))
    for _ in range(200):
        sess.run_with_iobinding(binding)
    t = np.zeros(n_runs, np.int64)
    for i in range(n_runs):
        t0 = time.perf_counter_ns()
        sess.run_with_iobinding(binding)
        t[i] = time.perf_counter_ns() - t0
    return t


def onnxruntime_dispatch(n_runs: int = N_TIMED) -> list[dict]:
    """Rows: one run of a one-node graph, and the cost of each further node (scalar and 4096-wide
    tensors, the sizes a voice frame works on). Empty without the onnx package."""
    try:
        import onnx  # noqa: F401 - only to build the test graphs
    except ImportError:
        return []
    rows = []
    for size in (1, 4096):
        one, many = _time_chain(1, size, n_runs), _time_chain(101, size, n_runs)
        if size == 1:
            rows.append({"what": "onnxruntime run, 1 node", **_percentiles(one)})
        per_node = (np.percentile(many, 50) - np.percentile(one, 50)) / 100 / 1e3
        rows.append({"what": f"onnxruntime per extra node ({size} floats)", "p50_us": float(per_node)})
    return rows


def measure(block_sizes, rate_hz: int, n_blocks: int) -> list[dict]:
    rows = [callback_without_model(b, rate_hz, n_blocks) for b in block_sizes]
    return rows + onnxruntime_dispatch(n_blocks)


def format_table(rows: list[dict]) -> str:
    head = f"{'floor':<40} {'block':>5} {'p50 us':>8} {'p99 us':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        p99 = f"{r['p99_us']:>8.1f}" if "p99_us" in r else f"{'':>8}"
        lines.append(f"{r['what']:<40} {r.get('block_size', ''):>5} {r['p50_us']:>8.2f} {p99}")
    return "\n".join(lines)
