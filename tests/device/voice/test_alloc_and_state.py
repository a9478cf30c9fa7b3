"""No allocation per frame (numba's NRT statistics), and the state vector's round trip to and
from onnxruntime's named tensors."""

from __future__ import annotations

import json

import numpy as np

from pimodule.device.voice import layout as L
from pimodule.device.voice import read_voice
from pimodule.device.voice.kernel import voice_frame, voice_frames

from .conftest import EXPORT


def _stats():
    from numba.core.runtime import rtsys

    s = rtsys.get_allocation_stats()
    return np.array([s.alloc, s.free, s.mi_alloc, s.mi_free])


def test_no_allocation_per_frame():
    """Many frames in one call allocate exactly as much as zero frames (numba's boxing of the
    array arguments when called from Python, 8 MemInfo structs per call, none per frame)."""
    from numba.core.runtime import _nrt_python

    _nrt_python.memsys_enable_stats()
    v = read_voice(EXPORT / "violin.onnx")
    n = 200
    f0 = np.geomspace(55, 4000, n).astype(np.float32)
    ld = np.linspace(-90, 0, n).astype(np.float32)
    controls = v.default_controls().reshape(1, 4)
    state, scratch, out = v.initial_state(), v.new_scratch(), np.zeros((n, v.block_size), np.float32)
    voice_frames(v.weights, v.layout, controls, f0, ld, state, scratch, out)  # warm-up
    a = _stats()
    voice_frames(v.weights, v.layout, controls, f0[:0], ld[:0], state, scratch, out[:0])
    b = _stats()
    voice_frames(v.weights, v.layout, controls, f0, ld, state, scratch, out)
    c = _stats()
    assert np.array_equal(c - b, b - a), (b - a, c - b)
    one = np.zeros(v.block_size, np.float32)
    ctrl = controls[0].copy()
    d = _stats()
    for _ in range(n):
        voice_frame(v.weights, v.layout, ctrl, 220.0, -20.0, state, scratch, one)
    per_call = (_stats() - d) / n
    assert per_call[0] == per_call[1] <= 6, per_call  # boxing only, freed at return


def test_frames_equal_frame_by_frame():
    v = read_voice(EXPORT / "flute-small.onnx")
    n = 50
    f0 = np.linspace(100, 900, n).astype(np.float32)
    ld = np.linspace(-60, 0, n).astype(np.float32)
    controls = np.tile(v.default_controls(), (n, 1))
    controls[:, 0] = np.linspace(-24, 24, n)
    s1, s2 = v.initial_state(), v.initial_state()
    out = np.zeros((n, v.block_size), np.float32)
    voice_frames(v.weights, v.layout, controls, f0, ld, s1, v.new_scratch(), out)
    one = np.zeros(v.block_size, np.float32)
    scratch = v.new_scratch()
    for i in range(n):
        voice_frame(v.weights, v.layout, controls[i], float(f0[i]), float(ld[i]), s2, scratch, one)
        assert np.array_equal(one, out[i])
    assert np.array_equal(s1, s2)


def test_state_round_trip_and_initial_values(tmp_path):
    import onnx

    proto = onnx.load(str(EXPORT / "violin-small.onnx"))
    entry = next(p for p in proto.metadata_props if p.key == "pimodule.state")
    specs = json.loads(entry.value)
    for spec in specs:
        spec["init"] = {"noise_position": 12345.0, "prev_f0_hz": 110.0}.get(spec["name"], spec["init"])
    entry.value = json.dumps(specs)
    onnx.save(proto, str(tmp_path / "init.onnx"))
    v = read_voice(tmp_path / "init.onnx")
    states = v.state_dict(v.initial_state())
    assert states["noise_position"].dtype == np.int64 and states["noise_position"][0, 0] == 12345
    assert states["prev_f0_hz"].dtype == np.float32 and states["prev_f0_hz"][0, 0] == 110
    assert states["phase"].dtype == np.float64 and states["gru_h"].shape == (1, 1, 64)
    rng = np.random.default_rng(0)
    random = {
        k: (rng.integers(0, 2**40, a.shape) if a.dtype == np.int64 else rng.standard_normal(a.shape)).astype(a.dtype)
        for k, a in states.items()
    }
    back = v.state_dict(v.pack_state(random))
    for k in random:
        assert back[k].dtype == random[k].dtype and np.array_equal(back[k], random[k]), k


def test_one_weight_array_and_a_consistent_layout():
    v = read_voice(EXPORT / "violin.onnx")
    assert v.weights.dtype == np.float32 and v.weights.flags.c_contiguous and v.layout.dtype == np.int64
    segments = sorted(L.segment(v.layout, n) for n in L.segment_names("W"))
    for (o1, s1), (o2, _) in zip(segments, segments[1:]):
        assert o1 + s1 <= o2
    assert segments[-1][0] + segments[-1][1] <= v.weights.size
    # (out, in) in panels of 4 rows: the GRU's recurrent matrix is the graph's w_hh transposed
    import onnx
    from onnx import numpy_helper

    w_hh = next(
        numpy_helper.to_array(i) for i in onnx.load(str(EXPORT / "violin.onnx")).graph.initializer if i.name == "w_hh"
    )
    off, size = L.segment(v.layout, "W_HH")
    panels = v.weights[off : off + size].reshape(3 * 128 // 4, 128, 4)
    assert np.array_equal(panels.transpose(0, 2, 1).reshape(3 * 128, 128), w_hh.T)
