"""Inputs the engine may pass by mistake: NaN and infinities, absurd f0/loudness/controls and a
corrupt state. The kernel must not crash, must let NaN reach its output (the engine's guard
replaces a non-finite block) and must never read or write outside its arrays."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pimodule.device.voice import read_voice
from pimodule.device.voice.kernel import voice_frame

from .conftest import EXPORT

GUARD = 4096  # sentinel elements on each side of every array


def _guarded(arr: np.ndarray, fill) -> tuple[np.ndarray, np.ndarray]:
    """``arr`` copied into the middle of a larger buffer of ``fill``: (buffer, the view)."""
    buf = np.full(arr.size + 2 * GUARD, fill, arr.dtype)
    view = buf[GUARD : GUARD + arr.size]
    view[:] = arr
    return buf, view


def _run(voice, frames, state=None):
    """Run ``frames`` [(f0, loudness, controls)] in guarded buffers; (outputs, buffers, views)."""
    bufs = {}
    bufs["w"], w = _guarded(voice.weights, np.nan)
    bufs["s"], s = _guarded(voice.initial_state() if state is None else state, np.nan)
    bufs["x"], x = _guarded(voice.new_scratch(), np.nan)
    bufs["o"], o = _guarded(np.zeros(voice.block_size, np.float32), np.nan)
    bufs["c"], c = _guarded(voice.default_controls(), np.nan)
    outs = []
    for f0, ld, controls in frames:
        c[:] = controls
        voice_frame(w, voice.layout, c, f0, ld, s, x, o)
        outs.append(o.copy())
    for name, buf in bufs.items():
        assert np.isnan(buf[:GUARD]).all() and np.isnan(buf[-GUARD:]).all(), f"{name}: written outside"
    return np.array(outs), s


@pytest.fixture(scope="module")
def voice():
    return read_voice(EXPORT / "violin-small.onnx")


def _warm(voice):
    return [(220.0, -20.0, voice.default_controls())] * 5


@pytest.mark.parametrize("where", ["f0", "loudness", "pitch_shift", "loudness_offset", "harmonic_gain", "noise_gain"])
def test_nan_input_reaches_the_output(voice, where):
    controls = voice.default_controls()
    f0, ld = 220.0, -20.0
    if where == "f0":
        f0 = np.nan
    elif where == "loudness":
        ld = np.nan
    else:
        controls[["pitch_shift", "loudness_offset", "harmonic_gain", "noise_gain"].index(where)] = np.nan
    outs, state = _run(voice, _warm(voice) + [(f0, ld, controls)] * 2)
    assert np.isfinite(outs[:5]).all()
    assert not np.isfinite(outs[5]).all(), "a NaN input must give a detectably non-finite block"


EXTREMES = [0.0, -5.0, -1e9, 1e-30, 1e9, np.inf, -np.inf]


@pytest.mark.parametrize("f0", EXTREMES)
def test_extreme_f0_is_clamped(voice, f0):
    frames = _warm(voice) + [(f0, ld, voice.default_controls()) for ld in (-1e9, 1e9, -20.0)] * 3
    outs, state = _run(voice, frames)
    assert np.isfinite(outs).all() and np.isfinite(state).all()


@pytest.mark.parametrize("value", [-1e9, 1e9, np.inf, -np.inf])
def test_extreme_controls_stay_in_bounds(voice, value):
    frames = _warm(voice)
    for i in range(4):
        controls = voice.default_controls()
        controls[i] = value
        frames += [(f0, -10.0, controls) for f0 in (0.0, 440.0, 1e9)]
    _run(voice, frames)  # the sentinels are checked; an infinite gain may make inf or NaN


@pytest.mark.parametrize(
    "corrupt",
    [
        {"phase": 1e300},
        {"phase": -1e300},
        {"phase": np.nan},
        {"prev_f0_hz": -1e30},
        {"prev_f0_hz": 1e30},
        {"prev_f0_hz": np.nan},
        {"noise_position": -5},
        {"noise_position": 2**62},
    ],
)
def test_corrupt_state_stays_in_bounds(voice, corrupt):
    states = voice.state_dict(voice.initial_state())
    for name, value in corrupt.items():
        states[name] = np.full(states[name].shape, value, dtype=np.float64)
    vec = voice.pack_state(states)
    if "noise_position" in corrupt:  # an int64 out of range is not representable otherwise
        from pimodule.device.voice import layout as L

        vec[L.segment(voice.layout, "S_POS")[0]] = corrupt["noise_position"]
    _run(voice, _warm(voice), state=vec)


@pytest.mark.slow
def test_no_index_out_of_bounds_with_boundscheck(tmp_path, reverb_voices):
    """The kernel compiled with NUMBA_BOUNDSCHECK=1 (every index checked) on the shipped and
    reverb voices with the sweep, the extremes and a corrupt state: no IndexError."""
    script = textwrap.dedent(f"""
        import numpy as np
        from pimodule.device.voice import read_voice
        from pimodule.device.voice.kernel import voice_frame
        from pimodule.device.voice.verify import sweep
        for path in {[str(EXPORT / "violin.onnx"), str(EXPORT / "flute-small.onnx"), str(reverb_voices["perturbed"])]!r}:
            v = read_voice(path)
            f0, ld, ctrl = sweep(300, v)
            frames = list(zip(f0, ld, ctrl))
            for x in [0.0, -5.0, -1e9, 1e-30, 1e9, np.inf, -np.inf, np.nan]:
                for c in range(4):
                    row = v.default_controls(); row[c] = 1e9 if np.isfinite(x) else x
                    frames += [(x, -1e9, v.default_controls()), (x, 1e9, row), (220.0, x, row)]
            state, scratch, out = v.initial_state(), v.new_scratch(), np.zeros(v.block_size, np.float32)
            for f, l, c in frames:
                voice_frame(v.weights, v.layout, np.asarray(c, np.float32), float(f), float(l), state, scratch, out)
            state[:] = np.nan
            voice_frame(v.weights, v.layout, v.default_controls(), 220.0, -20.0, state, scratch, out)
        print("ok")
    """)
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
